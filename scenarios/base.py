"""The scenario contract and the registry of scenario modules.

A scenario module (modelled on PerfKitBenchmarker's benchmark modules) declares:
  NAME: str                    short name used on the command line
  DESCRIPTION: str
  TOOLS: tuple[str, ...]       binaries it needs inside the image
  PROFILES: dict[str, dict]    parameters per profile ("quick" for CI, "full" for papers): data, not code
  METRICS: dict                metric -> (unit, metadata keys of its variant): what it emits (claims,
                               reports and tests read it; instance facts and `instance` are not variant keys)
  REPETITIONS: dict            (optional) minimum repetitions per profile, instead of the harness default
  MAX_REPETITIONS: dict        (optional) extension cap per profile, instead of the harness's
  RANGES: dict[str, Range]     per metric of METRICS, its plausible range and which way is better (data).
                               The harness stores nothing outside it and nothing undeclared (bench.sanity).
  PRECISION_METRICS: tuple     (optional) metrics whose CV decides whether repetitions extend; default:
                               all. Tail latencies are noisy by nature and should not drive the run length.
  instance_spec(params) -> InstanceSpec      (optional; default: InstanceSpec())
  prepare(instance, params) -> None          (optional)
  run(instance, params, raw: RawSink) -> list[Sample]
  cleanup(instance, params) -> None          (optional)
Scenarios that measure instances themselves (startup, footprint) define instead
  run_platform(platform, params, raw) -> list[Sample]
and receive the Platform interface (create(spec) -> Instance) from the harness; they must destroy
what they create. A scenario never imports a platform; it only uses these interfaces.
"""

from __future__ import annotations

import importlib
import math
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from types import ModuleType

from runtime.errors import IsolabError, SpecError
from runtime.platform import Instance
from runtime.spec import ExecResult, InstanceSpec

SCENARIOS = ("cpu", "memory", "disk", "network", "startup", "footprint", "isolation_visibility",
             "isolation_noisy", "isolation_limits")
# Known but not run by default: selected by name (`--scenario hpcc`) or by a study profile (bench.studies).
EXTRA_SCENARIOS = ("hpcc", "compress", "storage")
# Names that select several scenarios at once (`--scenario isolation`).
SCENARIO_GROUPS = {"isolation": tuple(n for n in SCENARIOS if n.startswith("isolation_"))}
PROFILES = ("quick", "full")

RawSink = Callable[[str, str], None]  # (name, text): keep a tool's raw output with the results


class ScenarioError(IsolabError):
    """A scenario could not produce its samples (missing tool, tool failed, output unreadable)."""


@dataclass(frozen=True)
class Sample:
    """One measured value: metric name, value, unit, and what distinguishes it (threads, method...)."""

    metric: str
    value: float
    unit: str
    metadata: dict[str, object] = field(default_factory=dict)


@dataclass(frozen=True)
class Range:
    """What a metric's values may be (its unit is in METRICS): plausible range and which way is better.

    A value must be a finite number, strictly above `minimum` (or equal to it when `zero_ok` and the
    minimum is 0: counts such as retransmits, where none is a real result) and at most `maximum`
    (a physical bound: the memory bus, a link, a sane time limit). `maximum_why` says where the
    bound comes from, for the failure message.
    """

    better: str  # "higher" | "lower" | "none" (a count or an answer, no better side)
    maximum: float = math.inf
    maximum_why: str = ""
    minimum: float = 0.0
    zero_ok: bool = False

    def violation(self, value: object, unit: str = "") -> str | None:
        """Why `value` is not plausible for this metric; None when it is."""
        if isinstance(value, bool) or not isinstance(value, int | float):
            return f"{value!r} is not a number"
        if math.isnan(value):
            return "nan is not a measurement"
        if math.isinf(value):
            return f"{value} is not a measurement"
        if self.zero_ok and value < self.minimum:
            return f"must be >= {self.minimum:g}"
        if not self.zero_ok and value <= self.minimum:
            return f"must be > {self.minimum:g}" + (" (zero means nothing was measured)" if value == 0 else "")
        if value > self.maximum:
            why = f" ({self.maximum_why})" if self.maximum_why else ""
            return f"must be <= {self.maximum:g} {unit}".rstrip() + why
        return None


#: Physical bounds shared by several scenarios (generous: a figure above them is a broken tool, not a fast host).
MEMORY_BUS_MB_S = 1.0e6  # 1 TB/s: above any CPU socket's DRAM bandwidth (12-channel DDR5-6400 is ~0.6 TB/s)
MEMORY_BUS_WHY = "above any memory bus: 1 TB/s"
DAY_S = 86400.0  # no single operation we time may take a day


def validate_scenario_names(names: Sequence[str]) -> list[str]:
    unknown = [n for n in names if n not in SCENARIOS + EXTRA_SCENARIOS]
    if unknown:
        choices = ", ".join((*SCENARIOS, *EXTRA_SCENARIOS, *SCENARIO_GROUPS))
        raise SpecError(f"unknown scenario {', '.join(unknown)}: choose from {choices}")
    return list(names)


def expand_scenario_names(names: Sequence[str]) -> list[str]:
    """Replace group names ('isolation') by their scenarios, keeping order and dropping repeats."""
    expanded: list[str] = []
    for name in names:
        for member in SCENARIO_GROUPS.get(name, (name,)):
            if member not in expanded:
                expanded.append(member)
    return validate_scenario_names(expanded)


def validate_profile(name: str) -> str:
    if name not in PROFILES:
        raise SpecError(f"unknown profile {name!r}: choose from {', '.join(PROFILES)}")
    return name


def load(name: str) -> ModuleType:
    validate_scenario_names([name])
    return importlib.import_module(f"scenarios.{name}")


def params_for(module: ModuleType, profile: str) -> dict[str, object]:
    return dict(module.PROFILES[validate_profile(profile)])


def spec_for(module: ModuleType, params: dict[str, object]) -> InstanceSpec:
    factory = getattr(module, "instance_spec", None)
    return factory(params) if factory else InstanceSpec()


def require_tools(instance: Instance, tools: Sequence[str]) -> None:
    """Fail with one clear line when a tool the scenario needs is not in the image."""
    if not tools:
        return
    probe = instance.exec(["sh", "-c", 'for t in "$@"; do command -v "$t" >/dev/null || echo "$t"; done',
                           "sh", *tools], timeout=60)
    missing = probe.stdout.split()
    if probe.returncode != 0 or missing:
        what = ", ".join(missing) or probe.stderr_tail()
        raise ScenarioError(f"{what}: not found in the image on {instance.platform} "
                            f"(add it to the image recipe and rebuild with 'python -m bench image build --rebuild')")


def check(result: ExecResult, instance: Instance) -> ExecResult:
    """Raise ScenarioError naming the tool and its last words when it exited non-zero."""
    if result.returncode != 0:
        raise ScenarioError(f"{result.argv[0]} exited {result.returncode} on {instance.platform}: "
                            f"{result.stderr_tail() or result.stdout.strip()[-200:]}")
    return result


def destroy_all(instances: Sequence[Instance]) -> float:
    """Destroy these instances at once; the wall seconds until all are gone."""
    begin = time.perf_counter()
    if instances:
        with ThreadPoolExecutor(max_workers=len(instances)) as pool:
            list(pool.map(lambda instance: instance.destroy(), instances))
    return time.perf_counter() - begin
