"""The sanity layer between a scenario's samples and the store: every value is checked before any is kept.

A scenario declares each metric it emits in its METRICS table (unit, variant keys) and the metric's
plausible range in RANGES (scenarios.base.Range). A repetition whose samples include one value outside
its metric's range, one metric the scenario did not declare (or declared without a range), or a unit
other than the declared one is rejected as a whole: its other
figures came from the same tool runs, which the bad one shows to be broken. The cell then fails with
a reason naming the metric, the value and the rule.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from types import ModuleType

from scenarios.base import Range, Sample, ScenarioError


class ImplausibleSample(ScenarioError):
    """A repetition produced a value that cannot be a measurement; nothing of it is stored."""


Declared = Mapping[str, tuple[str, Range | None]]  # metric -> (unit, range)


def declared_metrics(module: ModuleType) -> Declared:
    """metric -> (unit from METRICS, Range from RANGES or None)."""
    metrics = getattr(module, "METRICS", None)
    if not isinstance(metrics, Mapping) or not metrics:
        raise ScenarioError(f"scenario {module.__name__} declares no METRICS table: its samples cannot be checked")
    ranges = getattr(module, "RANGES", None) or {}
    return {name: (str(entry[0]), ranges.get(name)) for name, entry in metrics.items()}


def problems(declared: Declared, samples: Sequence[Sample]) -> list[str]:
    """One line per sample that must not be stored (empty when every sample is plausible)."""
    found = []
    for sample in samples:
        label = f"{sample.metric}" + (f" [{_variant(sample)}]" if sample.metadata else "")
        where = f"{label} = {sample.value!r} {sample.unit}"
        if sample.metric not in declared:
            found.append(f"{where}: metric not declared by the scenario (declared: {', '.join(sorted(declared))})")
            continue
        unit, plausible = declared[sample.metric]
        if sample.unit != unit:
            found.append(f"{where}: unit {sample.unit!r} is not the declared {unit!r}")
        elif plausible is None:
            found.append(f"{where}: the scenario declares no plausible range (RANGES) for it")
        elif why := plausible.violation(sample.value, unit):
            found.append(f"{where}: {why}")
    return found


def check_repetition(module: ModuleType, samples: Sequence[Sample]) -> list[Sample]:
    """`samples` unchanged when all are plausible; otherwise ImplausibleSample naming every bad one."""
    declared = declared_metrics(module)
    if not samples:
        raise ImplausibleSample("the repetition produced no samples at all")
    bad = problems(declared, samples)
    if bad:
        more = f" (and {len(bad) - 3} more)" if len(bad) > 3 else ""
        raise ImplausibleSample(f"implausible result, repetition discarded ({len(samples)} samples, none stored): "
                                + "; ".join(bad[:3]) + more)
    return list(samples)


def _variant(sample: Sample) -> str:
    return ",".join(f"{k}={sample.metadata[k]}" for k in sorted(sample.metadata))
