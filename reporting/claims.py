"""The claims table: what the literature says (reporting/claims.yaml), next to what this host measured.

Each claim (its fields are described at the top of claims.yaml) is about a kind of platform
(runtime.platform.KINDS) and is checked on every platform of that kind that ran, against the run's
baseline, against a platform of another kind, or against the same platform in a reference variant
(e.g. a noisy neighbour's victim alone), on one metric and variant a scenario emits. Verdicts:
  supported          the ratio's interval lies inside the claim's band (ratio_within), or wholly on
                     the claimed side of 1 (direction)
  contradicted       the interval lies wholly outside the band, or wholly on the other side of 1
  inconclusive       the interval overlaps the band's edge or 1, or there is no interval
  for comparison     an absolute published figure set beside this host's median (no test)
  not testable here  with why: the platform kind did not run, the platform was emulated and the
                     claim needs KVM, it needs two hosts or a NIC, or the metric was not measured
Below 95 % the verdict names the level its interval reached ("supported (at 90 %)").
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import yaml

from bench import stats
from bench.results import SampleRecord
from reporting import platforms as platform_infos
from reporting.summary import samples_frame, unit_values
from runtime.errors import IsolabError
from runtime.platform import KINDS, PlatformInfo
from scenarios import base as scenario_base

CLAIMS_FILE = Path(__file__).with_name("claims.yaml")
TEST_TYPES = ("ratio_within", "direction", "for_comparison")
NEEDS = ("kvm", "two_hosts", "nic")
REQUIRED = ("id", "claim", "source", "published", "setting", "kind", "versus", "scenario", "metric", "variant",
            "test", "testable")
SOURCE_REQUIRED = ("title", "venue", "year", "where", "confidence")

SUPPORTED, CONTRADICTED, INCONCLUSIVE = "supported", "contradicted", "inconclusive"
FOR_COMPARISON, NOT_TESTABLE = "for comparison", "not testable here"


class ClaimsError(IsolabError):
    """claims.yaml does not follow its schema."""


@dataclass(frozen=True)
class Claim:
    id: str
    claim: str
    source: dict[str, object]
    published: dict[str, object]
    setting: dict[str, object]
    kind: str
    versus: str  # "baseline", a kind, or "variant" (the same platform at `reference`)
    scenario: str
    metric: str
    variant: dict[str, object]
    test: dict[str, object]
    needs: tuple[str, ...] = ()
    note: str = ""
    extra: dict[str, object] = field(default_factory=dict)
    reference: dict[str, object] = field(default_factory=dict)  # versus "variant": keys overriding `variant`

    @property
    def citation(self) -> str:
        s = self.source
        parts = [str(s.get("authors") or ""), f"\"{s['title']}\"", f"{s['venue']} {s['year']}", str(s["where"])]
        link = f"doi:{s['doi']}" if s.get("doi") else str(s.get("url") or "")
        return ", ".join(p for p in (*parts, link) if p) + f" [confidence {s['confidence']}]"

    def matches(self, variant: str) -> bool:
        """Whether a stored variant label ('k=v,k=v') has every key and value this claim names."""
        return _pairs_match(variant, self.variant)


def _check(entry: Mapping[str, object], number: int) -> Claim:
    label = f"claims.yaml entry {number} ({entry.get('id', 'no id')})"
    missing = [key for key in REQUIRED if key not in entry]
    if missing:
        raise ClaimsError(f"{label}: missing {', '.join(missing)}")
    source = entry["source"]
    if not isinstance(source, dict) or [k for k in SOURCE_REQUIRED if not source.get(k)]:
        raise ClaimsError(f"{label}: source needs {', '.join(SOURCE_REQUIRED)} (got {source!r})")
    if not (source.get("doi") or source.get("url") or "not identified" in str(source.get("where"))):
        raise ClaimsError(f"{label}: source needs a doi or url")
    if entry["kind"] not in KINDS:
        raise ClaimsError(f"{label}: kind {entry['kind']!r} is not one of {', '.join(KINDS)}")
    versus, reference = entry["versus"], {}
    if isinstance(versus, dict):
        if not isinstance(versus.get("variant"), dict) or not versus["variant"]:
            raise ClaimsError(f"{label}: versus as a mapping needs variant: {{key: value, ...}} (the reference)")
        versus, reference = "variant", dict(versus["variant"])
    elif versus != "baseline" and versus not in KINDS:
        raise ClaimsError(f"{label}: versus {versus!r} is neither 'baseline', a kind nor {{variant: ...}}")
    test = entry["test"]
    if not isinstance(test, dict) or test.get("type") not in TEST_TYPES:
        raise ClaimsError(f"{label}: test.type must be one of {', '.join(TEST_TYPES)}")
    if test["type"] == "ratio_within" and not all(isinstance(test.get(k), int | float) for k in ("expect", "margin")):
        raise ClaimsError(f"{label}: ratio_within needs numeric expect and margin")
    if test["type"] == "direction" and test.get("expect") not in ("lower", "higher"):
        raise ClaimsError(f"{label}: direction needs expect: lower or higher")
    if test["type"] == "for_comparison" and not isinstance(test.get("figure"), int | float):
        raise ClaimsError(f"{label}: for_comparison needs a numeric figure and its unit")
    testable = entry["testable"] if isinstance(entry["testable"], dict) else {}
    needs = tuple(str(n) for n in testable.get("needs") or ())
    unknown = [n for n in needs if n not in NEEDS]
    if unknown:
        raise ClaimsError(f"{label}: unknown testability condition(s) {', '.join(unknown)} (one of {', '.join(NEEDS)})")
    if not isinstance(entry["variant"], dict):
        raise ClaimsError(f"{label}: variant must be a mapping of metadata keys to values")
    return Claim(id=str(entry["id"]), claim=str(entry["claim"]), source=dict(source),
                 published=dict(entry["published"] or {}), setting=dict(entry["setting"] or {}),  # type: ignore[call-overload]
                 kind=str(entry["kind"]), versus=str(versus), reference=reference, scenario=str(entry["scenario"]),
                 metric=str(entry["metric"]), variant=dict(entry["variant"]), test=dict(test), needs=needs,
                 note=str(testable.get("note") or ""))


def load_claims(path: Path = CLAIMS_FILE) -> list[Claim]:
    try:
        entries = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise ClaimsError(f"{path}: cannot read the claims registry: {exc}") from exc
    if not isinstance(entries, list):
        raise ClaimsError(f"{path}: expected a list of claims")
    claims = [_check(entry, number) for number, entry in enumerate(entries, start=1)]
    ids = [c.id for c in claims]
    duplicates = sorted({i for i in ids if ids.count(i) > 1})
    if duplicates:
        raise ClaimsError(f"{path}: duplicate claim id(s) {', '.join(duplicates)}")
    return claims


def scenario_mismatches(claims: list[Claim]) -> list[str]:
    """Claims whose scenario, metric or variant keys no scenario declares (scenario.METRICS)."""
    problems = []
    for claim in claims:
        try:
            module = scenario_base.load(claim.scenario)
        except IsolabError as exc:
            problems.append(f"{claim.id}: {exc}")
            continue
        declared = getattr(module, "METRICS", {})
        if claim.metric not in declared:
            problems.append(f"{claim.id}: scenario {claim.scenario} emits no metric {claim.metric}")
            continue
        keys = set(declared[claim.metric][1])
        extra = sorted((set(map(str, claim.variant)) | set(map(str, claim.reference))) - keys)
        if extra:
            problems.append(f"{claim.id}: {claim.metric} has no variant key(s) {', '.join(extra)}")
    return problems


# -- verdicts -------------------------------------------------------------------------------------------

def _qualified(verdict: str, interval: stats.Interval) -> str:
    if verdict in (SUPPORTED, CONTRADICTED, INCONCLUSIVE) and interval.defined and not interval.reaches():
        return f"{verdict} (at {stats.format_level(interval.level)})"
    return verdict


def judge(claim: Claim, change: stats.Ratio) -> str:
    """The verdict of a ratio test from the ratio's interval (see the module docstring)."""
    iv = change.interval
    if not iv.defined:
        return INCONCLUSIVE
    if claim.test["type"] == "ratio_within":
        expect, margin = float(claim.test["expect"]), float(claim.test["margin"])  # type: ignore[arg-type]
        low, high = expect * (1 - margin), expect * (1 + margin)
        if low <= iv.low and iv.high <= high:
            verdict = SUPPORTED
        elif iv.high < low or iv.low > high:
            verdict = CONTRADICTED
        else:
            verdict = INCONCLUSIVE
    else:
        above, below = iv.low > 1.0, iv.high < 1.0
        wanted = claim.test["expect"] == "higher"
        verdict = SUPPORTED if (above and wanted) or (below and not wanted) else (
            CONTRADICTED if above or below else INCONCLUSIVE)
    return _qualified(verdict, iv)


def _test_text(claim: Claim) -> str:
    test = claim.test
    if test["type"] == "ratio_within":
        return f"ratio within {float(test['expect']):g} ± {100 * float(test['margin']):g} %"  # type: ignore[arg-type]
    if test["type"] == "direction":
        return f"ratio {'above' if test['expect'] == 'higher' else 'below'} 1 (direction only)"
    return f"for comparison with {test['figure']} {test.get('unit', '')}".strip()


def _find(summary: pd.DataFrame, platform: str, claim: Claim) -> pd.DataFrame:
    if summary.empty:
        return summary
    rows = summary[(summary.platform == platform) & (summary.scenario == claim.scenario)
                   & (summary.metric == claim.metric)]
    return rows[rows.variant.map(claim.matches)].sort_values("variant") if not rows.empty else rows


def _hosts(summary: pd.DataFrame) -> int:
    return summary["host"].nunique() if "host" in summary and not summary.empty else 1


def _why_untestable(claim: Claim, info: PlatformInfo | None, summary: pd.DataFrame) -> str:
    if info is None:
        return f"platform not run: no {claim.kind} platform in this run"
    if "kvm" in claim.needs and info.emulated:
        return f"{info.display_name} emulated ({info.mechanism}): needs KVM"
    if "nic" in claim.needs:
        return "needs a NIC-bound link between two hosts (this suite's traffic stays on one host)"
    if "two_hosts" in claim.needs and _hosts(summary) < 2:
        return "needs runs from two hosts (python -m bench merge)"
    return ""


def _row(claim: Claim, platform: str, measured: str, verdict: str, why: str) -> dict[str, object]:
    if verdict == NOT_TESTABLE and why:
        verdict, why = f"{NOT_TESTABLE} ({why})", ""
    return {"id": claim.id, "claim": claim.claim, "source": claim.citation,
            "published": ", ".join(f"{k} {v}" for k, v in claim.published.items()),
            "setting": ", ".join(f"{k}: {v}" for k, v in claim.setting.items() if v is not None),
            "platform": platform, "test": _test_text(claim), "this host": measured, "verdict": verdict,
            "why": why or claim.note}


def _versus_kind(claim: Claim, info: PlatformInfo, other: PlatformInfo, frame: pd.DataFrame,
                 host: str, variant: str) -> stats.Ratio:
    def values(name: str) -> list[float]:
        rows = frame[(frame.platform == name) & (frame.scenario == claim.scenario) & (frame.metric == claim.metric)
                     & (frame.variant == variant) & (frame.host == host)]
        return unit_values(rows)[0]

    return stats.ratio(values(info.name), values(other.name))


def versus_variant(claim: Claim, info: PlatformInfo, frame: pd.DataFrame, host: str, variant: str) -> stats.Ratio:
    """The platform at `variant` ÷ the same platform at the claim's reference variant (e.g. alone)."""
    rows = frame[(frame.platform == info.name) & (frame.scenario == claim.scenario) & (frame.metric == claim.metric)
                 & (frame.host == host)]
    wanted = {**claim.variant, **claim.reference}
    reference = rows[rows.variant.map(lambda v: _pairs_match(v, wanted))]
    return stats.ratio(unit_values(rows[rows.variant == variant])[0], unit_values(reference)[0])


def _pairs_match(variant: str, wanted: Mapping[str, object]) -> bool:
    pairs = dict(part.split("=", 1) for part in variant.split(",") if "=" in part)
    return all(pairs.get(str(k)) == str(v) for k, v in wanted.items())


def claims_frame(summary: pd.DataFrame, infos: dict[str, PlatformInfo],
                 samples: list[SampleRecord] | None = None, hosts: Mapping[str, str] | None = None,
                 claims: list[Claim] | None = None) -> pd.DataFrame:
    """One row per claim and platform of its kind that ran (one 'not testable here' row if none did).
    `samples` (and `hosts`, run_id -> host) are needed for claims against another kind than the baseline."""
    claims = load_claims() if claims is None else claims
    base = platform_infos.baseline(infos)
    frame = samples_frame(samples or [], hosts)
    records = []
    for claim in claims:
        candidates = [i for i in infos.values() if i.kind == claim.kind and not i.baseline]
        if not candidates:
            records.append(_row(claim, f"({claim.kind}: none ran)", "–", NOT_TESTABLE,
                                _why_untestable(claim, None, summary)))
            continue
        for info in candidates:
            rows = _find(summary, info.name, claim)
            why = _why_untestable(claim, info, summary)
            if rows.empty:
                ran = not summary.empty and bool(((summary.platform == info.name)
                                                  & (summary.scenario == claim.scenario)).any())
                wanted = ",".join(f"{k}={v}" for k, v in claim.variant.items()) or "any variant"
                missing = (f"{claim.metric} [{wanted}] was not measured on {info.name}" if ran else
                           f"scenario {claim.scenario} has no samples on {info.name} in this run")
                records.append(_row(claim, info.label, "not measured in this run", NOT_TESTABLE, why or missing))
                continue
            for _, row in rows.drop_duplicates("host").iterrows():
                records.append(_judged(claim, info, row, base, infos, frame, why))
    return pd.DataFrame(records)


def _judged(claim: Claim, info: PlatformInfo, row: pd.Series, base: str | None, infos: dict[str, PlatformInfo],
            frame: pd.DataFrame, why: str) -> dict[str, object]:
    where = f" on {row['host']}" if row.get("host") else ""
    label = info.label + where
    median = (f"median {row['median']:.4g} {row['unit']} [{row['ci_low']:.4g}–{row['ci_high']:.4g}, "
              f"{stats.format_level(float(row['ci_level']))} interval], n = {int(row['n'])}")
    if claim.test["type"] == "for_comparison":
        return _row(claim, label, f"{median}; published {claim.test['figure']} {claim.test.get('unit', '')}",
                    NOT_TESTABLE if why else FOR_COMPARISON, why)
    if claim.versus == "baseline":
        change = stats.Ratio(float(row["ratio_to_baseline"]),
                             stats.Interval(float(row["ratio_ci_low"]), float(row["ratio_ci_high"]),
                                            float(row["ratio_ci_level"]), str(row["ratio_ci_method"])),
                             str(row.get("ratio_note") or ""))
        against = base or "the baseline"
    elif claim.versus == "variant":
        change = versus_variant(claim, info, frame, str(row.get("host", "")), str(row["variant"]))
        against = ",".join(f"{k}={v}" for k, v in claim.reference.items())
    else:
        others = [i for i in infos.values() if i.kind == claim.versus and not i.baseline]
        if not others:
            return _row(claim, label, median, NOT_TESTABLE, f"platform not run: no {claim.versus} platform to compare")
        change = _versus_kind(claim, info, others[0], frame, str(row.get("host", "")), str(row["variant"]))
        against = others[0].name
    if math.isnan(change.point):
        return _row(claim, label, median, NOT_TESTABLE, why or change.note or f"{against} has no such measurement")
    iv = change.interval
    interval = (f"[{iv.low:.3f}–{iv.high:.3f}, {stats.format_level(iv.level)} interval]" if iv.defined
                else "[no interval]")
    measured = f"{info.name} ÷ {against} = {change.point:.3f} {interval}; {median}"
    return _row(claim, label, measured, NOT_TESTABLE if why else judge(claim, change), why)
