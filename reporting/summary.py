"""Tidy samples -> the statistics frame: one row per host × platform × scenario × metric × variant.

The experimental unit is the repetition: every repetition provisions its own instance(s), so its
values are independent of other repetitions' but not of each other. Samples are therefore reduced
first: measurements of one instance (metadata `instance`, an index within the repetition) to their
median, then the instances of one repetition to their median; `n` counts repetitions (of all runs
merged into the dataset), never instances or measurements. Statistics come from `bench.stats`.

Columns of `summary_frame` (the contract with the report's tables, plots and exports):
  host            host the run was measured on ("" when the run did not record it)
  platform, scenario, metric, variant, unit
  direction       "higher" or "lower" is better, "" when neither (counts, fractions)
  n               independent units (repetitions) the statistics use
  n_instances     instances measured (>= n; > n where a repetition runs several)
  n_samples       raw samples before the reduction
  median, mean, stdev, cv                       over the n unit values (cv = stdev / mean)
  ci_low, ci_high, ci_level, ci_method          interval of the median; ci_level is its real
                                                coverage as a fraction (0.75 for n = 3), method e.g.
                                                "order statistic" / "BCa bootstrap" / "single value"
  baseline        the platform ratios are taken against ("" when none ran on this host)
  ratio_to_baseline                             median ÷ baseline median (1.0 on the baseline row)
  ratio_ci_low, ratio_ci_high, ratio_ci_level, ratio_ci_method    interval of that ratio
  ratio_note      why a ratio or its interval is missing or below 95 %
  ratio_to_native  deprecated alias of ratio_to_baseline, kept while older report code reads it
Missing numbers are NaN (a level is 0.0 where no interval exists); the report explains gaps.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import replace

import pandas as pd

from bench import stats
from bench.results import SampleRecord, variant_of
from runtime.platform import PlatformInfo

KEYS = ["scenario", "metric", "variant", "unit"]
INSTANCE_KEY = "instance"  # sample metadata: the instance's index within its repetition
COLUMNS = ["host", "platform", *KEYS, "direction", "n", "n_instances", "n_samples", "median", "mean", "stdev",
           "cv", "ci_low", "ci_high", "ci_level", "ci_method", "baseline", "ratio_to_baseline", "ratio_ci_low",
           "ratio_ci_high", "ratio_ci_level", "ratio_ci_method", "ratio_note", "ratio_to_native"]

# Units whose smaller values are better (times, latencies, memory and disk footprints, retransmits) and
# units that are neither (fractions, counts of things a run chose); every other unit is a rate.
LOWER_IS_BETTER_UNITS = frozenset({"s", "ms", "µs", "us", "ns", "MiB", "segments"})
NO_DIRECTION_UNITS = frozenset({"fraction of bytes read", "yes/no", "cpus"})
HIGHER_IS_BETTER_UNITS = frozenset({"instances"})


def direction(metric: str, unit: str) -> str:
    """'higher' or 'lower' (is better), or '' when the metric has no better side."""
    if unit in NO_DIRECTION_UNITS:
        return ""
    if unit in LOWER_IS_BETTER_UNITS:
        return "lower"
    return "higher"


def higher_is_better(metric: str, unit: str) -> bool | None:
    found = direction(metric, unit)
    return None if not found else found == "higher"


def samples_frame(samples: list[SampleRecord], hosts: Mapping[str, str] | None = None) -> pd.DataFrame:
    """One row per sample: host (from `hosts`, run_id -> host), run_id, platform, keys, repetition,
    instance (-1 when the sample does not say), value."""
    hosts = hosts or {}
    columns = ["host", "run_id", "platform", *KEYS, "repetition", "instance", "value"]
    rows = []
    for s in samples:
        instance = s.metadata.get(INSTANCE_KEY, -1) if isinstance(s.metadata, dict) else -1
        rows.append({"host": hosts.get(s.run_id, ""), "run_id": s.run_id, "platform": s.platform,
                     "scenario": s.scenario, "metric": s.metric, "variant": s.variant or variant_of(s.metadata),
                     "unit": s.unit,
                     "repetition": s.repetition, "instance": instance if isinstance(instance, int) else -1,
                     "value": s.value})
    return pd.DataFrame(rows, columns=columns)


def unit_values(group: pd.DataFrame) -> tuple[list[float], int]:
    """(one value per repetition, number of instances): measurements of an instance to their median,
    then instances of a repetition to theirs."""
    if group.empty:
        return [], 0
    per_instance = group.groupby(["run_id", "repetition", "instance"], sort=True)["value"].median()
    per_unit = per_instance.groupby(level=["run_id", "repetition"], sort=True).median()
    return [float(v) for v in per_unit.tolist()], int(per_instance.size)


def baseline_variant_candidates(variant: str) -> list[str]:
    """The baseline's variant to compare a variant with: itself, else with its network mode replaced by
    `host` (the baseline has only the host's network stack, the reference for every network mode)."""
    candidates = [variant]
    parts = variant.split(",")
    if any(p.startswith("network=") and p != "network=host" for p in parts):
        candidates.append(",".join("network=host" if p.startswith("network=") else p for p in parts))
    return candidates


def baseline_group(frame: pd.DataFrame, baseline: str, scenario: str, metric: str, variant: str,
                   host: str | None = None) -> pd.DataFrame:
    rows = frame[(frame.platform == baseline) & (frame.scenario == scenario) & (frame.metric == metric)]
    if host is not None and "host" in rows:
        rows = rows[rows.host == host]
    for candidate in baseline_variant_candidates(variant):
        found = rows[rows.variant == candidate]
        if not found.empty:
            return found
    return rows.iloc[0:0]


def baseline_values(frame: pd.DataFrame, baseline: str, scenario: str, metric: str, variant: str) -> list[float]:
    """The baseline's unit values (one per repetition) for this metric and variant, [] when absent."""
    return unit_values(baseline_group(frame, baseline, scenario, metric, variant))[0]


def _interval_columns(prefix: str, interval: stats.Interval) -> dict[str, object]:
    return {f"{prefix}_low": interval.low, f"{prefix}_high": interval.high, f"{prefix}_level": float(interval.level),
            f"{prefix}_method": interval.method}


def summary_frame(samples: list[SampleRecord], baseline: str | None = None,
                  hosts: Mapping[str, str] | None = None) -> pd.DataFrame:
    """Statistics per host × platform × metric × variant; ratios to `baseline` (a platform name chosen by
    the caller from the platforms' own descriptions) measured on the same host."""
    frame = samples_frame(samples, hosts)
    rows = []
    for (host, platform, scenario, metric, variant, unit), group in frame.groupby(["host", "platform", *KEYS],
                                                                                  sort=True):
        values, instances = unit_values(group)
        summary = stats.summarize(values)
        row: dict[str, object] = {
            "host": host, "platform": platform, "scenario": scenario, "metric": metric, "variant": variant,
            "unit": unit, "direction": direction(metric, unit), "n": summary.n, "n_instances": instances,
            "n_samples": len(group), "median": summary.median, "mean": summary.mean, "stdev": summary.stdev,
            "cv": summary.cv, **_interval_columns("ci", summary.interval), "baseline": "",
            "ratio_to_baseline": math.nan, **_interval_columns("ratio_ci", stats.Interval.undefined()),
            "ratio_note": ""}
        if baseline is not None:
            base_group = baseline_group(frame, baseline, scenario, metric, variant, host)
            base = unit_values(base_group)[0]
            if platform == baseline:
                row.update({"baseline": baseline, "ratio_to_baseline": 1.0})
            elif base:
                change = stats.ratio(values, base)
                row.update({"baseline": baseline, "ratio_to_baseline": change.point,
                            **_interval_columns("ratio_ci", change.interval), "ratio_note": change.note})
            else:
                row["ratio_note"] = f"{baseline} has no {metric} [{variant}] on this host"
        row["ratio_to_native"] = row["ratio_to_baseline"]
        rows.append(row)
    return pd.DataFrame(rows, columns=COLUMNS)


def by_host(summary: pd.DataFrame, infos: Mapping[str, PlatformInfo]) -> tuple[pd.DataFrame, dict[str, PlatformInfo]]:
    """For a dataset from several hosts: every host × platform as a platform of its own, named
    '<platform> @ <host>' (label, display name likewise), so that tables and plots that loop over
    platforms show one column per host and never pool hosts. Ratios were already taken per host."""
    if summary.empty:
        return summary, dict(infos)
    renamed = summary.assign(platform=[f"{p} @ {h}" if h else p for p, h in zip(summary.platform, summary.host,
                                                                                   strict=True)])
    views: dict[str, PlatformInfo] = {}
    for name, host in summary[["platform", "host"]].drop_duplicates().itertuples(index=False):
        info = infos.get(name)
        key = f"{name} @ {host}" if host else name
        if info is None:
            continue
        shown = f"{info.display_name} @ {host}" if host else info.display_name
        views[key] = replace(info, name=key, display_name=shown)
    return renamed, views


def pairwise_mann_whitney(samples: list[SampleRecord], pairs: list[tuple[str, str]],
                          hosts: Mapping[str, str] | None = None) -> pd.DataFrame:
    """Two-sided Mann-Whitney U for each pair of platforms, per metric and variant measured on both, on
    the unit values (one per repetition). `mann_whitney_p` is NaN when n cannot reach p < 0.05; `test`
    then says so ("n too small for p < 0.05 (3 vs 3: smallest possible p = 0.1)")."""
    frame = samples_frame(samples, hosts)
    rows = []
    for a, b in pairs:
        for (host, scenario, metric, variant, unit), group in frame.groupby(["host", *KEYS], sort=True):
            first = unit_values(group[group.platform == a])[0]
            second = unit_values(group[group.platform == b])[0]
            if first and second:
                result = stats.mann_whitney(first, second)
                rows.append({"host": host, "platform_a": a, "platform_b": b, "scenario": scenario, "metric": metric,
                             "variant": variant, "unit": unit, "n_a": len(first), "n_b": len(second),
                             "median_a": stats.summarize(first).median, "median_b": stats.summarize(second).median,
                             "mann_whitney_p": math.nan if result.p is None else result.p, "test": result.text})
    return pd.DataFrame(rows)
