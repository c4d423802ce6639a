"""Tidy samples -> the summary table: per platform × scenario × metric × variant statistics.

Columns: n, median, mean, stdev, cv, ci_low, ci_high (95% bootstrap CI of the median), and, where
a baseline platform is given, ratio_to_native (the ratio to that baseline; the column keeps its old
name) with its CI; and Mann-Whitney p per metric for chosen pairs of platforms.
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
    """The baseline's variant to compare a variant with: itself, else with its network mode replaced by
    `host` (the baseline has only the host's network stack, the reference for every network mode)."""
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


def summary_frame(samples: list[SampleRecord], baseline: str | None = None) -> pd.DataFrame:
    """Statistics per platform × metric × variant; ratios only when `baseline` names a platform."""
    frame = samples_frame(samples)
    rows = []
    for (platform, scenario, metric, variant, unit), group in frame.groupby(["platform", *KEYS], sort=True):
        values = group["value"].tolist()
        summary = stats.summarize(values)
        row = {"platform": platform, "scenario": scenario, "metric": metric, "variant": variant, "unit": unit,
               "n": summary.n, "median": summary.median, "mean": summary.mean, "stdev": summary.stdev,
               "cv": summary.cv, "ci_low": summary.ci_low, "ci_high": summary.ci_high,
               "ratio_to_native": math.nan, "ratio_ci_low": math.nan, "ratio_ci_high": math.nan}
        base = baseline_values(frame, baseline, scenario, metric, variant) if baseline is not None else []
        if base and platform != baseline:
            row["ratio_to_native"], row["ratio_ci_low"], row["ratio_ci_high"] = stats.ratio_ci(values, base)
        elif base:
            row["ratio_to_native"] = row["ratio_ci_low"] = row["ratio_ci_high"] = 1.0
        rows.append(row)
    return pd.DataFrame(rows)


def pairwise_mann_whitney(samples: list[SampleRecord], pairs: list[tuple[str, str]]) -> pd.DataFrame:
    """Mann-Whitney p for each pair of platforms, per metric and variant measured on both."""
    frame = samples_frame(samples)
    rows = []
    for a, b in pairs:
        for (scenario, metric, variant, unit), group in frame.groupby(KEYS, sort=True):
            first = group[group.platform == a]["value"].tolist()
            second = group[group.platform == b]["value"].tolist()
            if first and second:
                rows.append({"platform_a": a, "platform_b": b, "scenario": scenario, "metric": metric,
                             "variant": variant, "unit": unit, "median_a": stats.summarize(first).median,
                             "median_b": stats.summarize(second).median,
                             "mann_whitney_p": stats.mann_whitney_p(first, second)})
    return pd.DataFrame(rows)
