"""The answer at the top of the report: what each platform costs (and protects) on this host, per area.

Per area (the scenario's name up to its first `_`: cpu, memory, disk, network, startup, footprint,
isolation) and platform: the geometric mean, over the area's metrics, of the direction-normalised
(reporting.summary.direction)
ratio to the baseline, where > 1 always means "costs more / does worse than the baseline".

Its interval: each repetition r gives one area index, the geometric mean over the area's metrics of
cost(median of the platform's rep-r values / median of the baseline's rep-r values), the r-th
repetition of each side in run and repetition order. Repetitions use
different instances, so these per-repetition indices are independent draws; the point is their median
and the interval is bench.stats' interval of that median at its real level (order statistic below 50
values: n = 3 gives [min, max], a 75 % interval). Metrics whose ratios are not
costs (counts, fractions) and metrics the baseline lacks are left out, and the row says how many were used.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from bench import stats
from bench.results import SampleRecord
from reporting import formatting
from reporting.summary import baseline_variant_candidates, direction
from runtime.platform import PlatformInfo


def area_of(scenario: str) -> str:
    return scenario.split("_", 1)[0]


@dataclass(frozen=True)
class MedianInterval:
    """A median over n independent units with its interval (bench.stats: real level and method)."""

    point: float
    interval: stats.Interval
    n: int

    @property
    def low(self) -> float:
        return self.interval.low

    @property
    def high(self) -> float:
        return self.interval.high

    @property
    def level(self) -> float:
        return self.interval.level

    @property
    def method(self) -> str:
        return self.interval.method

    @property
    def label(self) -> str:
        """E.g. '75 % interval (n = 3)'."""
        if not self.interval.defined or self.level <= 0:
            return f"no interval (n = {self.n})"
        return f"{stats.format_level(self.level)} interval (n = {self.n})"


def median_interval(values: Sequence[float]) -> MedianInterval:
    data = [float(v) for v in values]
    point = float(np.median(data)) if data else math.nan
    return MedianInterval(point, stats.median_interval(data), len(data))


@dataclass
class AreaRow:
    area: str
    platform: PlatformInfo
    cost: MedianInterval
    metrics_used: int
    metrics_left_out: list[str] = field(default_factory=list)


def _per_rep_medians(frame: pd.DataFrame) -> dict[tuple[str, int], float]:
    """One value per repetition (the unit): its instances' values reduced to their median, as the summary does."""
    keys = ["run_id", "repetition"] if "run_id" in frame else ["repetition"]
    return {tuple(k) if isinstance(k, tuple) else ("", int(k)): float(np.median(g["value"]))  # type: ignore[misc]
            for k, g in frame.groupby(keys)}


def _host_of(samples: pd.DataFrame, platform: str) -> str:
    rows = samples[samples.platform == platform]
    return str(rows["host"].iloc[0]) if "host" in rows and not rows.empty else ""


def area_costs(samples: pd.DataFrame, platforms: list[PlatformInfo]) -> list[AreaRow]:
    """One AreaRow per (area, non-baseline platform) with at least one comparable metric; each platform is
    compared with the baseline measured on its own host (a merged fleet has one baseline per host)."""
    baselines = [p for p in platforms if p.baseline]
    if not baselines or samples.empty:
        return []
    frame = samples.assign(area=samples["scenario"].map(area_of))
    rows: list[AreaRow] = []
    areas = list(dict.fromkeys(frame["area"]))
    for area in areas:
        in_area = frame[frame.area == area]
        for platform in platforms:
            if platform.baseline:
                continue
            host = _host_of(frame, platform.name)
            baseline = next((b for b in baselines if _host_of(frame, b.name) == host), baselines[0])
            base = in_area[in_area.platform == baseline.name]
            mine = in_area[in_area.platform == platform.name]
            if mine.empty:
                continue
            per_rep: dict[int, list[float]] = {}
            used, left_out = 0, []
            for (metric, variant, unit), group in mine.groupby(["metric", "variant", "unit"], sort=False):
                better = direction(metric, unit)
                if unit in formatting.UNCOLOURED_RATIO_UNITS or not better:
                    left_out.append(f"{metric} ({unit}: not a cost)")
                    continue
                base_rows = base[(base.metric == metric) & (base.unit == unit)]
                base_group = pd.DataFrame()
                for candidate in baseline_variant_candidates(variant):
                    base_group = base_rows[base_rows.variant == candidate]
                    if not base_group.empty:
                        break
                if base_group.empty:
                    left_out.append(f"{metric} [{variant}] (no baseline)")
                    continue
                # the i-th repetition of the platform with the i-th of the baseline (in run and repetition
                # order): independent units either way, and runs of a merged dataset pair up too
                a = [v for _, v in sorted(_per_rep_medians(group).items())]
                b = [v for _, v in sorted(_per_rep_medians(base_group).items())]
                pairs = [(i, x, y) for i, (x, y) in enumerate(zip(a, b, strict=False)) if x > 0 and y > 0]
                if not pairs:
                    left_out.append(f"{metric} [{variant}] (zero or unpaired values)")
                    continue
                used += 1
                for i, x, y in pairs:
                    per_rep.setdefault(i, []).append(math.log(formatting.cost_ratio(x / y, better)))
            if not per_rep:
                continue
            indices = [math.exp(sum(logs) / len(logs)) for logs in per_rep.values()]
            rows.append(AreaRow(area, platform, median_interval(indices), used, left_out))
    return rows


@dataclass(frozen=True)
class Headline:
    platform: PlatformInfo
    metric: str
    label: str
    median: float
    unit: str
    interval: MedianInterval


def headline_numbers(samples: pd.DataFrame, platforms: list[PlatformInfo],
                     metrics: Sequence[tuple[str, str]]) -> list[Headline]:
    """Absolute figures per platform: (metric, label) pairs, first variant of each. The unit of repetition is
    the repetition, so several values within one repetition are reduced to their median first."""
    out = []
    for metric, label in metrics:
        rows = samples[samples.metric == metric]
        for platform in platforms:
            mine = rows[rows.platform == platform.name]
            if mine.empty:
                continue
            first_variant = mine["variant"].iloc[0]
            mine = mine[mine.variant == first_variant]
            interval = median_interval(list(_per_rep_medians(mine).values()))
            out.append(Headline(platform, metric, label, interval.point, str(mine["unit"].iloc[0]), interval))
    return out


def sentence(rows: list[AreaRow], headlines: list[Headline], platforms: list[PlatformInfo],
             protects: list[Protection]) -> str:
    """Sentences generated from the data: per platform its cost per area and its headline figures."""
    baseline = next((p for p in platforms if p.baseline), None)
    if baseline is None or not rows:
        return "No platform could be compared with a baseline in this run."
    levels = sorted({r.cost.label for r in rows})
    parts = [f"Cost relative to {baseline.label} (> 1 costs more; {', '.join(levels)} in the table below):"]
    for platform in platforms:
        mine = [r for r in rows if r.platform.name == platform.name]
        figures = [h for h in headlines if h.platform.name == platform.name]
        if not mine and not figures:
            continue
        text = platform.display_name
        if platform.mechanism and platform.mechanism not in platform.display_name:
            text += f" ({platform.mechanism})"
        if mine:
            text += " " + ", ".join(f"{r.area} {formatting.ratio(r.cost.point)}×" for r in mine)
        if figures:
            shown = []
            for h in figures:
                amount, unit = formatting.scaled(h.median, h.unit)
                shown.append(f"{h.label} {amount} {unit}")
            text += ("; " if mine else " ") + ", ".join(shown)
        if platform.emulated:
            text += " (emulated: not hardware-virtualisation figures)"
        parts.append(text + ".")
    worst = max((r for r in rows), key=lambda r: r.cost.point)
    parts.append(f"Largest cost: {worst.platform.label} on {worst.area}, {formatting.ratio(worst.cost.point)}× "
                 f"[{formatting.ratio(worst.cost.low)}–{formatting.ratio(worst.cost.high)}].")
    if protects:
        parts.append("Protection: " + "; ".join(
            f"{p.platform.label} exposed {p.exposed} of {p.questions} host objects probed" for p in protects) + ".")
    else:
        parts.append("What each platform lets an instance see of the host was not measured in this run "
                     "(the visibility audit did not run).")
    return " ".join(parts)


@dataclass(frozen=True)
class Protection:
    """What a platform let an instance reach of the host: questions answered `exposed` out of those asked."""

    platform: PlatformInfo
    exposed: int
    questions: int


def isolation_counts(samples: Sequence[SampleRecord], platforms: list[PlatformInfo],
                     unit: str = "yes/no", metric: str = "exposed") -> list[Protection]:
    """Per platform: how many isolation questions any repetition answered `exposed` (1), out of all asked."""
    answers: dict[str, dict[str, float]] = {}
    for s in samples:
        if s.unit == unit and s.metric == metric:
            question = f"{s.scenario}:{s.metadata.get('question')}"
            seen = answers.setdefault(s.platform, {})
            seen[question] = max(seen.get(question, 0.0), float(s.value))
    return [Protection(p, int(sum(v == 1.0 for v in answers[p.name].values())), len(answers[p.name]))
            for p in platforms if p.name in answers]
