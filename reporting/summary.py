"""Tidy samples -> the summary table: per platform × scenario × metric × variant statistics.

Columns: n, median, mean, stdev, cv, ci_low, ci_high (95% bootstrap CI of the median), and, where
a native baseline exists, ratio_to_native with its CI; container vs vm Mann-Whitney p per metric.
"""

from __future__ import annotations

import math

import pandas as pd

from bench import stats
from bench.results import SampleRecord

KEYS = ["scenario", "metric", "variant", "unit"]


def samples_frame(samples: list[SampleRecord]) -> pd.DataFrame:
    columns = ["platform", *KEYS, "repetition", "value"]
    rows = [{"platform": s.platform, "scenario": s.scenario, "metric": s.metric, "variant": s.variant,
             "unit": s.unit, "repetition": s.repetition, "value": s.value} for s in samples]
    return pd.DataFrame(rows, columns=columns)


def baseline_variant_candidates(variant: str) -> list[str]:
    """The native variant to compare a variant with: itself, else with its network mode replaced by
    `host` (native has only the host's network stack, the baseline for every network mode)."""
    candidates = [variant]
    parts = variant.split(",")
    if any(p.startswith("network=") and p != "network=host" for p in parts):
        candidates.append(",".join("network=host" if p.startswith("network=") else p for p in parts))
    return candidates


def baseline_values(frame: pd.DataFrame, baseline: str, scenario: str, metric: str, variant: str) -> list[float]:
    rows = frame[(frame.platform == baseline) & (frame.scenario == scenario) & (frame.metric == metric)]
    for candidate in baseline_variant_candidates(variant):
        values = rows[rows.variant == candidate]["value"].tolist()
        if values:
            return values
    return []


def summary_frame(samples: list[SampleRecord], baseline: str = "native") -> pd.DataFrame:
    frame = samples_frame(samples)
    rows = []
    for (platform, scenario, metric, variant, unit), group in frame.groupby(["platform", *KEYS], sort=True):
        values = group["value"].tolist()
        summary = stats.summarize(values)
        row = {"platform": platform, "scenario": scenario, "metric": metric, "variant": variant, "unit": unit,
               "n": summary.n, "median": summary.median, "mean": summary.mean, "stdev": summary.stdev,
               "cv": summary.cv, "ci_low": summary.ci_low, "ci_high": summary.ci_high,
               "ratio_to_native": math.nan, "ratio_ci_low": math.nan, "ratio_ci_high": math.nan}
        base = baseline_values(frame, baseline, scenario, metric, variant)
        if base and platform != baseline:
            row["ratio_to_native"], row["ratio_ci_low"], row["ratio_ci_high"] = stats.ratio_ci(values, base)
        elif base:
            row["ratio_to_native"] = row["ratio_ci_low"] = row["ratio_ci_high"] = 1.0
        rows.append(row)
    return pd.DataFrame(rows)


def container_vs_vm(samples: list[SampleRecord]) -> pd.DataFrame:
    """Mann-Whitney p for container vs vm, per metric and variant (empty when either is absent)."""
    frame = samples_frame(samples)
    rows = []
    for (scenario, metric, variant, unit), group in frame.groupby(KEYS, sort=True):
        ct = group[group.platform == "container"]["value"].tolist()
        vm = group[group.platform == "vm"]["value"].tolist()
        if ct and vm:
            rows.append({"scenario": scenario, "metric": metric, "variant": variant, "unit": unit,
                         "container_median": stats.summarize(ct).median, "vm_median": stats.summarize(vm).median,
                         "mann_whitney_p": stats.mann_whitney_p(ct, vm)})
    return pd.DataFrame(rows)
