"""Profiles: the built-in `quick` and `full`, and study profiles read from data files (bench/profiles/<name>.toml).

A study profile re-runs a published comparison's workloads the paper's way and is selected like a built-in
one (`--profile felter2015`). Its file says, per scenario, the paper's parameters (`params`, laid over the
built-in `base_profile`'s) and every field this host forces to differ from the paper (`scaled`: field,
paper, here, why), which the report prints; the scenarios it runs by default (`scenarios`); its
repetitions; and the rows of the paper's table it reproduces (`rows`: a claim of reporting/claims.yaml,
optionally measured on another scenario / metric / variant than the claim's own, and `untestable` when
no platform of this suite can measure it). Layout:

  [study]       title, authors, venue, year, doi, url, source_commit, base_profile, repetitions,
                max_repetitions, scenarios, platforms (the paper's kinds of platform, run when none are
                named), not_covered (rows of the paper this profile leaves out, why)
  [scenarios.<name>]  params = {...};  skip_emulated = "why" (the scenario's cells are skipped on an
                emulated platform, e.g. a TCG VM: its figures could not be compared with the paper's
                KVM guests, and measuring them would cost more than the run's budget);
                [[scenarios.<name>.scaled]]  field, paper, here, why
  [[rows]]      claim, label, and optional scenario, metric, variant, note, differs, untestable
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from types import ModuleType

from runtime.errors import SpecError

BUILTIN_PROFILES = ("quick", "full")
PROFILES_DIR = Path(__file__).with_name("profiles")
STUDY_REQUIRED = ("title", "authors", "venue", "year", "url", "base_profile", "repetitions", "scenarios")


@dataclass(frozen=True)
class Scaled:
    """A parameter this host runs differently from the paper, and why."""

    scenario: str
    field: str
    paper: object
    here: object
    why: str


@dataclass(frozen=True)
class Row:
    """One row of the paper's table: a claim of the registry, measured on `scenario`/`metric`/`variant`."""

    claim: str
    label: str
    scenario: str | None = None
    metric: str | None = None
    variant: dict[str, object] | None = None
    note: str = ""
    differs: str = ""  # a setting of this row that differs from the paper's beyond its scenario's `scaled`
    untestable: str = ""  # why no platform of this suite can measure the row


@dataclass(frozen=True)
class Study:
    name: str
    meta: dict[str, object]
    params: dict[str, dict[str, object]]  # scenario -> parameters laid over the base profile's
    scaled: tuple[Scaled, ...]
    rows: tuple[Row, ...]
    path: Path
    not_covered: tuple[str, ...] = field(default_factory=tuple)
    skip_emulated: dict[str, str] = field(default_factory=dict)  # scenario -> why it is not run emulated

    @property
    def platforms(self) -> tuple[str, ...] | None:
        """The platforms the study runs when none are named (None: the suite's defaults)."""
        names = self.meta.get("platforms")
        return tuple(str(n) for n in names) if names else None  # type: ignore[attr-defined]

    @property
    def base_profile(self) -> str:
        return str(self.meta["base_profile"])

    @property
    def scenarios(self) -> tuple[str, ...]:
        return tuple(str(s) for s in self.meta["scenarios"])  # type: ignore[attr-defined]

    @property
    def repetitions(self) -> int:
        return int(self.meta["repetitions"])  # type: ignore[call-overload]

    @property
    def max_repetitions(self) -> int:
        return int(self.meta.get("max_repetitions", self.repetitions))  # type: ignore[call-overload]

    @property
    def citation(self) -> str:
        m = self.meta
        return f"{m['authors']}, \"{m['title']}\", {m['venue']} {m['year']}" + (f", doi:{m['doi']}" if m.get("doi")
                                                                                else "")

    def scaled_for(self, scenario: str) -> list[Scaled]:
        return [s for s in self.scaled if s.scenario == scenario]


def study_names() -> list[str]:
    return sorted(p.stem for p in PROFILES_DIR.glob("*.toml"))


def profile_names() -> list[str]:
    return [*BUILTIN_PROFILES, *study_names()]


def validate_profile(name: str) -> str:
    if name not in profile_names():
        raise SpecError(f"unknown profile {name!r}: choose from {', '.join(profile_names())}")
    return name


def is_study(name: str) -> bool:
    return name not in BUILTIN_PROFILES and name in study_names()


@cache
def load_study(name: str) -> Study:
    """The study profile `name`, checked; a malformed file is one SpecError naming the file and the field."""
    from scenarios import base as scenario_base

    path = PROFILES_DIR / f"{name}.toml"
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise SpecError(f"profile {name}: cannot read {path}: {exc}") from exc
    meta = data.get("study")
    if not isinstance(meta, dict):
        raise SpecError(f"profile {name}: {path} has no [study] table")
    missing = [key for key in STUDY_REQUIRED if key not in meta]
    if missing:
        raise SpecError(f"profile {name}: [study] lacks {', '.join(missing)} ({path})")
    if meta["base_profile"] not in BUILTIN_PROFILES:
        raise SpecError(f"profile {name}: base_profile must be one of {', '.join(BUILTIN_PROFILES)}")
    scenario_base.validate_scenario_names([str(s) for s in meta["scenarios"]])
    if meta.get("platforms"):
        from runtime.platform import validate_platform_names

        validate_platform_names([str(n) for n in meta["platforms"]])
    params: dict[str, dict[str, object]] = {}
    scaled: list[Scaled] = []
    skip_emulated: dict[str, str] = {}
    for scenario, section in (data.get("scenarios") or {}).items():
        scenario_base.validate_scenario_names([scenario])
        unknown_keys = sorted(set(section) - {"params", "scaled", "skip_emulated"})
        if unknown_keys:
            raise SpecError(f"profile {name}: [scenarios.{scenario}] has unknown key(s) {', '.join(unknown_keys)} "
                            f"({path})")
        if "skip_emulated" in section:
            if not str(section["skip_emulated"]).strip():
                raise SpecError(f"profile {name}: [scenarios.{scenario}] skip_emulated needs its reason ({path})")
            skip_emulated[scenario] = str(section["skip_emulated"])
        params[scenario] = dict(section.get("params") or {})
        unknown = sorted(set(params[scenario]) - set(scenario_base.load(scenario).PROFILES[meta["base_profile"]]))
        if unknown:
            raise SpecError(f"profile {name}: scenario {scenario} has no parameter(s) {', '.join(unknown)} ({path})")
        for entry in section.get("scaled") or []:
            try:
                scaled.append(Scaled(scenario, str(entry["field"]), entry["paper"], entry["here"], str(entry["why"])))
            except KeyError as exc:
                raise SpecError(f"profile {name}: a scaled entry of {scenario} lacks {exc} ({path})") from exc
    rows = []
    for entry in data.get("rows") or []:
        if "claim" not in entry or "label" not in entry:
            raise SpecError(f"profile {name}: every [[rows]] entry needs claim and label ({path})")
        unknown = sorted(set(entry) - set(Row.__dataclass_fields__))
        if unknown:
            raise SpecError(f"profile {name}: row {entry['claim']} has unknown field(s) {', '.join(unknown)} ({path})")
        rows.append(Row(**entry))
    return Study(name, dict(meta), params, tuple(scaled), tuple(rows), path,
                 tuple(str(s) for s in meta.get("not_covered") or ()), skip_emulated)


def params_for(module: ModuleType, profile: str) -> dict[str, object]:
    """The scenario's parameters under `profile`: its own PROFILES entry, or a study's over its base profile."""
    validate_profile(profile)
    if not is_study(profile):
        return dict(module.PROFILES[profile])
    study = load_study(profile)
    return {**module.PROFILES[study.base_profile], **study.params.get(module.NAME, {})}


def default_repetitions(profile: str, builtin: dict[str, int]) -> int:
    return load_study(profile).repetitions if is_study(profile) else builtin[profile]


def default_max_repetitions(profile: str, builtin: dict[str, int]) -> int:
    return load_study(profile).max_repetitions if is_study(profile) else builtin[profile]


def default_scenarios(profile: str) -> tuple[str, ...] | None:
    """The scenarios a study profile runs when none are named (None: the suite's defaults)."""
    return load_study(profile).scenarios if is_study(profile) else None


def default_platforms(profile: str) -> tuple[str, ...] | None:
    """The platforms a study profile runs when none are named (None: the suite's defaults)."""
    return load_study(profile).platforms if is_study(profile) else None


def emulated_skip_reason(profile: str, scenario: str, emulated: bool, label: str) -> str | None:
    """Why a study profile does not run `scenario` on a platform (`label`) whose figures are emulated, or None
    when it runs there (a built-in profile runs everything everywhere)."""
    if not emulated or not is_study(profile):
        return None
    why = load_study(profile).skip_emulated.get(scenario)
    return f"not testable here (emulated): {label}; {why}" if why else None
