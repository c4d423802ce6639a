"""What a run measures: platforms × scenarios × profile × repetitions, validated before anything starts."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from bench import studies
from runtime.errors import SpecError
from runtime.platform import default_platform_names, platform_class, platform_names, validate_platform_names
from scenarios import base as scenario_base
from scenarios.base import SCENARIO_GROUPS, SCENARIOS, expand_scenario_names, validate_scenario_names

DEFAULT_REPETITIONS = {"quick": 3, "full": 10}  # scenarios may ask for more (their REPETITIONS)
# Repetitions extend while any metric's CV is above the target, up to this cap (like Phoronix's
# dynamic run count); the cap is per profile, or twice the requested repetitions. The quick (CI)
# profile does not extend, so that its run time stays predictable.
DEFAULT_MAX_REPETITIONS = {"quick": 3, "full": 30}
DEFAULT_CV_TARGET = 0.05
ACCELERATORS = ("auto", "kvm", "tcg")
ORDERS = ("interleaved", "sequential")
DEFAULT_ORDER = "interleaved"
DEFAULT_SEED = 20261128


def split_names(text: str | None) -> list[str]:
    return [part.strip() for part in (text or "").split(",") if part.strip()]


def expand_platform_names(names: list[str]) -> list[str]:
    """None named: the default platforms; `all`: every registered platform (those unavailable here are
    reported with their reason by the harness)."""
    if not names:
        return default_platform_names()
    if "all" in names:
        return platform_names()
    return names


@dataclass(frozen=True)
class RunConfig:
    platforms: tuple[str, ...] = field(default_factory=lambda: tuple(default_platform_names()))
    scenarios: tuple[str, ...] = SCENARIOS
    profile: str = "quick"
    repetitions: int | None = None  # None: the profile's default
    accel: str = "auto"
    max_repetitions: int | None = None  # None: the profile's cap (or 2 x repetitions)
    cv_target: float = DEFAULT_CV_TARGET
    # interleaved: per scenario, one instance per platform and blocks of one repetition on every platform
    # in a new random order (drift hits every platform alike); sequential: all repetitions of one cell,
    # then the next (the old order)
    order: str = DEFAULT_ORDER
    seed: int = DEFAULT_SEED
    # False when the run named no platforms: a platform with a default_scope then runs only there
    platforms_named: bool = False  # of the block orders: a run's order is reproducible from run.json

    def __post_init__(self) -> None:
        validate_platform_names(self.platforms)
        validate_scenario_names(self.scenarios)
        studies.validate_profile(self.profile)
        if not self.platforms or not self.scenarios:
            raise SpecError("a run needs at least one platform and one scenario")
        if self.repetitions is not None and self.repetitions < 1:
            raise SpecError(f"invalid repetitions {self.repetitions}: must be at least 1")
        if self.max_repetitions is not None and self.max_repetitions < self.reps:
            raise SpecError(f"invalid max repetitions {self.max_repetitions}: below the {self.reps} repetitions asked")
        if not 0 <= self.cv_target < 1:
            raise SpecError(f"invalid CV target {self.cv_target}: expected a fraction such as 0.05")
        if self.order not in ORDERS:
            raise SpecError(f"unknown order {self.order!r}: choose from {', '.join(ORDERS)}")
        if self.accel not in ACCELERATORS:
            raise SpecError(f"unknown accelerator {self.accel!r}: choose from {', '.join(ACCELERATORS)}")

    @property
    def reps(self) -> int:
        """Repetitions every cell gets at least."""
        return self.repetitions or studies.default_repetitions(self.profile, DEFAULT_REPETITIONS)

    @property
    def max_reps(self) -> int:
        """Repetitions a cell may extend to while its CV stays above the target."""
        if self.max_repetitions is not None:
            return self.max_repetitions
        if self.repetitions is not None:
            return 2 * self.repetitions
        return studies.default_max_repetitions(self.profile, DEFAULT_MAX_REPETITIONS)

    def reps_for(self, scenario: str) -> int:
        """Repetitions a cell of `scenario` gets at least: --repetitions, else the scenario's own
        REPETITIONS for the profile (e.g. 6 where 95 % intervals are affordable), else the profile's."""
        if self.repetitions is not None:
            return self.repetitions
        if studies.is_study(self.profile):
            return self.reps
        own = getattr(scenario_base.load(scenario), "REPETITIONS", {})
        return int(own.get(self.profile, DEFAULT_REPETITIONS[self.profile]))

    def max_reps_for(self, scenario: str) -> int:
        """The extension cap of a cell of `scenario` (never below its minimum): --max-repetitions or
        --repetitions when given, else the scenario's own MAX_REPETITIONS for the profile (a costly scenario
        that runs fewer repetitions to fit the budget does not extend past them), else the profile's."""
        if self.max_repetitions is None and self.repetitions is None:
            own = getattr(scenario_base.load(scenario), "MAX_REPETITIONS", {})
            if self.profile in own:
                return max(int(own[self.profile]), self.reps_for(scenario))
        return max(self.max_reps, self.reps_for(scenario))

    def platforms_for(self, scenario: str) -> list[str]:
        """The run's platforms that measure `scenario` (a default run leaves out scoped platforms elsewhere)."""
        if self.platforms_named:
            return list(self.platforms)
        chosen = []
        for name in self.platforms:
            scope = getattr(platform_class(name), "default_scope", None) if name in platform_names() else None
            if scope is None or scenario in SCENARIO_GROUPS.get(scope, ()):
                chosen.append(name)
        return chosen

    def cells(self) -> list[tuple[str, str]]:
        """(platform, scenario) in run order: scenario-major, so platforms alternate per scenario."""
        return [(p, s) for s in self.scenarios for p in self.platforms_for(s)]

    def to_dict(self) -> dict[str, object]:
        return {**asdict(self), "reps": self.reps, "max_reps": self.max_reps,
                "reps_per_scenario": {s: self.reps_for(s) for s in self.scenarios}}

    def reps_text(self) -> str:
        """E.g. '3 repetitions per cell (startup 6), up to 3 while CV > 5%'."""
        own = {s: self.reps_for(s) for s in self.scenarios if self.reps_for(s) != self.reps}
        special = f" ({', '.join(f'{s} {n}' for s, n in own.items())})" if own else ""
        return (f"{self.reps} repetitions per cell{special}, up to {self.max_reps} "
                f"while CV > {100 * self.cv_target:.0f}%")

    @classmethod
    def from_dict(cls, data: dict[str, object]) -> RunConfig:
        return cls(platforms=tuple(data["platforms"]), scenarios=tuple(data["scenarios"]),  # type: ignore[arg-type]
                   profile=str(data["profile"]), repetitions=data.get("repetitions"),  # type: ignore[arg-type]
                   accel=str(data.get("accel", "auto")),
                   max_repetitions=data.get("max_repetitions"),  # type: ignore[arg-type]
                   cv_target=float(data.get("cv_target", DEFAULT_CV_TARGET)),  # type: ignore[arg-type]
                   order=str(data.get("order", "sequential")),  # runs from before interleaving were sequential
                   seed=int(data.get("seed", DEFAULT_SEED)),  # type: ignore[call-overload]
                   platforms_named=bool(data.get("platforms_named", True)))


def parse_selection(platforms: str | None, scenarios: str | None, profile: str, repetitions: int | None,
                    accel: str = "auto", max_repetitions: int | None = None,
                    cv_target: float = DEFAULT_CV_TARGET, order: str = DEFAULT_ORDER,
                    seed: int = DEFAULT_SEED) -> RunConfig:
    named = split_names(platforms)
    study_platforms = None if named else studies.default_platforms(profile)  # a study's own, run in full
    return RunConfig(
        platforms=study_platforms or tuple(expand_platform_names(named)),
        scenarios=(tuple(expand_scenario_names(split_names(scenarios))) or studies.default_scenarios(profile)
                   or SCENARIOS),
        profile=profile, repetitions=repetitions, accel=accel, max_repetitions=max_repetitions,
        cv_target=cv_target, order=order, seed=seed, platforms_named=bool(named or study_platforms),
    )
