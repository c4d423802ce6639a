"""The calibration section: is our runtime's figure what a production runtime of its kind gives?

Which platform is "ours" and which are the references comes from each platform's PlatformInfo.role
(runtime.platform.ROLE_OURS / ROLE_REFERENCE), never from a name. For every metric of the calibrated
areas (CALIBRATED_AREAS: the scenario's name up to its first `_`, as in reporting.overview), every
variant, every platform of role "ours" and every reference measured on the same host: ours ÷ reference.

The ratio and its interval come from bench.stats at their real level:
- interleaved runs (samples carry `block`): the ratio paired within blocks (`stats.paired_ratio`, one
  ratio per block that measured both, its median with the order-statistic interval: 3 blocks give
  [min, max] at 75 %), since a block's pair shares the host's moment;
- otherwise the ratio of medians of one value per repetition (`stats.ratio`, the Mann-Whitney
  inversion: 3 vs 3 reaches 90 %).

A row of ours is flagged "differs from every reference" when each reference's interval excludes 1 on
the same side (ours above all of them, or below all of them): our figure lies outside what every
production runtime gave, beyond each interval, at the lowest of their levels (said with it). Ours
between two references, or within one reference's interval, is not flagged.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass

import pandas as pd

from bench import stats
from bench.results import SampleRecord, variant_of
from reporting import formatting
from reporting.overview import area_of
from reporting.summary import direction, samples_frame, unit_values
from runtime.platform import ROLE_OURS, ROLE_REFERENCE, PlatformInfo

CALIBRATED_AREAS = ("cpu", "memory", "disk", "network")
Key = tuple[str, str, str, str, str]  # host, scenario, metric, variant, unit

CSV_COLUMNS = ["host", "scenario", "metric", "variant", "unit", "direction", "ours", "ours_label", "reference",
               "reference_label", "ratio", "interval_low", "interval_high", "interval_level", "interval_method",
               "n", "paired", "ours_median", "reference_median", "differs_from_every_reference", "verdict", "note"]


@dataclass(frozen=True)
class Comparison:
    """Ours ÷ one reference for one metric × variant on one host."""

    key: Key
    ours: PlatformInfo
    reference: PlatformInfo
    ratio: stats.Ratio
    n: int  # blocks (paired) or the smaller number of repetitions (unpaired)
    paired: bool
    ours_median: float
    reference_median: float

    @property
    def side(self) -> int:
        """+1: ours higher beyond the interval, -1: lower beyond it, 0: within it or no interval."""
        iv = self.ratio.interval
        if not iv.defined or not iv.excludes(1.0):
            return 0
        return 1 if iv.low > 1.0 else -1


@dataclass(frozen=True)
class Row:
    """One metric × variant of one platform of ours: its comparison with every reference, and the verdict."""

    key: Key
    ours: PlatformInfo
    comparisons: tuple[Comparison, ...]

    @property
    def differs_from_every_reference(self) -> bool:
        sides = {c.side for c in self.comparisons}
        return bool(self.comparisons) and len(sides) == 1 and 0 not in sides

    @property
    def verdict(self) -> str:
        if not self.differs_from_every_reference:
            return ""
        higher = self.comparisons[0].side > 0
        better = direction(self.key[2], self.key[4])
        judged = "" if not better else (" (better)" if (better == "higher") == higher else " (worse)")
        level = min(c.ratio.interval.level for c in self.comparisons)
        refs = ", ".join(c.reference.display_name for c in self.comparisons)
        return (f"{self.ours.display_name} is {'higher' if higher else 'lower'}{judged} than every reference "
                f"({refs}) beyond each interval (lowest level {stats.format_level(level)})")


def _blocks(samples: list[SampleRecord], hosts: Mapping[str, str]) -> dict[tuple[Key, str], dict[int, float]]:
    """(key, platform) -> block -> value (median of the block's samples); blocks of different runs apart."""
    raw: dict[tuple[Key, str], dict[tuple[str, int], list[float]]] = defaultdict(lambda: defaultdict(list))
    for s in samples:
        block = s.metadata.get("block") if isinstance(s.metadata, dict) else None
        if isinstance(block, int) and not isinstance(block, bool):
            key = (hosts.get(s.run_id, ""), s.scenario, s.metric, s.variant or variant_of(s.metadata), s.unit)
            raw[(key, s.platform)][(s.run_id, block)].append(s.value)
    ids: dict[tuple[str, int], int] = {}
    out: dict[tuple[Key, str], dict[int, float]] = {}
    for where, blocks in raw.items():
        out[where] = {ids.setdefault(b, len(ids)): float(pd.Series(v).median()) for b, v in blocks.items()}
    return out


def comparisons(samples: list[SampleRecord], infos: Mapping[str, PlatformInfo],
                hosts: Mapping[str, str] | None = None) -> list[Row]:
    """Every calibration row, in the order metrics were measured; [] without ours or without a reference."""
    hosts = hosts or {}
    ours = [i for i in infos.values() if i.role == ROLE_OURS]
    references = [i for i in infos.values() if i.role == ROLE_REFERENCE]
    wanted = [s for s in samples if area_of(s.scenario) in CALIBRATED_AREAS]
    if not ours or not references or not wanted:
        return []
    frame = samples_frame(wanted, hosts)
    blocks = _blocks(wanted, hosts)
    groups = {(k[0], k[1], k[2], k[3], k[4], k[5]): g
              for k, g in frame.groupby(["host", "platform", "scenario", "metric", "variant", "unit"], sort=False)}
    rows = []
    for mine in ours:
        for (host, platform, scenario, metric, variant, unit), group in groups.items():
            if platform != mine.name:
                continue
            key: Key = (host, scenario, metric, variant, unit)
            values = unit_values(group)[0]
            found = []
            for ref in references:
                other = groups.get((host, ref.name, scenario, metric, variant, unit))
                if other is None:
                    continue
                theirs = unit_values(other)[0]
                mine_blocks, ref_blocks = blocks.get((key, mine.name), {}), blocks.get((key, ref.name), {})
                common = set(mine_blocks) & set(ref_blocks)
                if len(common) >= 2:
                    ratio, n, paired = stats.paired_ratio(mine_blocks, ref_blocks), len(common), True
                else:
                    ratio, n, paired = stats.ratio(values, theirs), min(len(values), len(theirs)), False
                found.append(Comparison(key, mine, ref, ratio, n, paired, stats.summarize(values).median,
                                        stats.summarize(theirs).median))
            if found:
                rows.append(Row(key, mine, tuple(found)))
    return rows


def frame(rows: list[Row]) -> pd.DataFrame:
    """Numbers only, one line per comparison: the CSV export."""
    records = []
    for row in rows:
        for c in row.comparisons:
            host, scenario, metric, variant, unit = c.key
            iv = c.ratio.interval
            records.append({"host": host, "scenario": scenario, "metric": metric, "variant": variant, "unit": unit,
                            "direction": direction(metric, unit), "ours": c.ours.name, "ours_label": c.ours.label,
                            "reference": c.reference.name, "reference_label": c.reference.label,
                            "ratio": c.ratio.point, "interval_low": iv.low, "interval_high": iv.high,
                            "interval_level": iv.level, "interval_method": iv.method, "n": c.n, "paired": c.paired,
                            "ours_median": c.ours_median, "reference_median": c.reference_median,
                            "differs_from_every_reference": row.differs_from_every_reference,
                            "verdict": row.verdict, "note": c.ratio.note})
    return pd.DataFrame.from_records(records, columns=CSV_COLUMNS)


def _cell(c: Comparison) -> dict[str, str]:
    r, iv = c.ratio, c.ratio.interval
    if not math.isfinite(r.point):
        return {"ratio": formatting.MISSING, "interval": r.note, "level": "", "title": r.note, "side": ""}
    interval = f"{formatting.ratio(iv.low)}–{formatting.ratio(iv.high)}" if iv.defined else formatting.MISSING
    how = f"{'paired within' if c.paired else 'unpaired over'} {c.n} {'blocks' if c.paired else 'repetitions'}"
    return {"ratio": formatting.ratio(r.point) + "×", "interval": interval,
            "level": f"{stats.format_level(iv.level)}" if iv.defined else "no interval",
            "title": f"{c.ours.name} ÷ {c.reference.name}: {iv.label}, {how}" + (f"; {r.note}" if r.note else ""),
            "side": {1: "higher", -1: "lower", 0: ""}[c.side]}


def view(rows: list[Row]) -> dict[str, object] | None:
    """What the template shows: one table per platform of ours, a column group per reference."""
    if not rows:
        return None
    tables = []
    for mine in dict.fromkeys(r.ours for r in rows):
        mine_rows = [r for r in rows if r.ours == mine]
        refs = list(dict.fromkeys(c.reference for r in mine_rows for c in r.comparisons))
        show_host = len({r.key[0] for r in mine_rows}) > 1
        body = []
        for r in mine_rows:
            by_ref = {c.reference: _cell(c) for c in r.comparisons}
            host, scenario, metric, variant, unit = r.key
            body.append({"scenario": scenario + (f" @ {host}" if show_host else ""), "metric": metric,
                         "variant": variant, "unit": unit, "cells": [by_ref.get(ref) for ref in refs],
                         "verdict": r.verdict})
        flagged = [b for b in body if b["verdict"]]
        tables.append({"ours": mine, "references": refs, "rows": body, "flagged": flagged})
    kind = next(iter(dict.fromkeys(r.ours.kind for r in rows)))
    # a ratio from a single block or value has a point but no interval (level 0): not an interval to rate
    levels = [c.ratio.interval.level for r in rows for c in r.comparisons
              if c.ratio.interval.defined and c.ratio.interval.level > 0]
    lowest = min(levels, default=0.0)
    chance = "" if not levels or lowest >= stats.CONFIDENCE else (
        f"The lowest level here is {stats.format_level(lowest)}: such an interval misses the true ratio "
        f"{stats.format_level(1 - lowest)} of the time, so over {len(levels)} ratios some rows are flagged by "
        "chance alone; more repetitions (the full profile) raise the level before a flag is taken for a defect.")
    return {"kind": kind, "areas": ", ".join(CALIBRATED_AREAS), "tables": tables, "chance": chance}


def latex_rows(rows: list[Row]) -> list[list[object]]:
    out: list[list[object]] = []
    for row in rows:
        for c in row.comparisons:
            cell = _cell(c)
            out.append([row.key[2], row.key[3], c.ours.label, c.reference.label, cell["ratio"], cell["interval"],
                         cell["level"], c.n, "yes" if row.differs_from_every_reference else ""])
    return out


LATEX_HEADER = ["metric", "variant", "ours", "reference", "ratio", "interval", "level", "n", "differs from all"]
