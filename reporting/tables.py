"""The report's tables in long format: one row per metric × variant × platform, with every gap explained.

`long_table` turns the statistics frame (reporting.summary) into plain numbers (the CSV export) and
`display_rows` into formatted cells for the template (text, hover reason, inline style, rowspan) and
the LaTeX export. Metrics keep the order the scenario emitted them; platforms the run's order with
the baseline first. A platform with no row for a metric × variant gets an em dash and the reason
from cells.jsonl (failed or skipped cell), or "not measured in this variant".
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field

import pandas as pd

from reporting import colour, formatting
from reporting.summary import direction
from runtime.platform import PlatformInfo

LONG_COLUMNS = ["scenario", "metric", "variant", "unit", "direction", "platform", "platform_label", "mechanism",
                "emulated", "n", "median", "interval_low", "interval_high", "interval_level", "interval_method", "cv",
                "ratio_to_baseline", "ratio_low", "ratio_high", "ratio_level", "ratio_method", "cost_ratio", "note"]


def _get(row: Mapping[str, object], *names: str, default: object = math.nan) -> object:
    """The first of `names` the statistics frame provides with a value (columns differ between versions)."""
    for name in names:
        found = row.get(name)
        if isinstance(found, str) and found:
            return found
        if found is not None and not isinstance(found, str) and not formatting.is_missing(found):
            return found
    return default


def long_table(summary: pd.DataFrame, scenario: str, platforms: list[PlatformInfo], metric_order: list[str],
               gap_reasons: Mapping[tuple[str, str], str]) -> pd.DataFrame:
    """Numbers only (no formatting): what the CSV carries and what the display rows are made from."""
    rows = summary[summary.scenario == scenario] if not summary.empty else summary
    records: list[dict[str, object]] = []
    if rows.empty:
        return pd.DataFrame(columns=LONG_COLUMNS)
    keys = rows[["metric", "variant", "unit"]].drop_duplicates()
    order = {m: i for i, m in enumerate(metric_order)}
    keys = keys.assign(_o=keys["metric"].map(lambda m: order.get(m, len(order)))).sort_values(
        ["_o", "metric"], kind="stable")
    in_scenario = set(rows["platform"])
    for metric, variant, unit in keys[["metric", "variant", "unit"]].itertuples(index=False):
        group = rows[(rows.metric == metric) & (rows.variant == variant) & (rows.unit == unit)]
        for platform in platforms:
            if platform.name not in in_scenario and (platform.name, scenario) not in gap_reasons:
                continue  # neither measured nor tried here: not a gap of this table
            match = group[group.platform == platform.name]
            better = direction(metric, unit)
            base = {"scenario": scenario, "metric": metric, "variant": variant, "unit": unit, "direction": better,
                    "platform": platform.name, "platform_label": platform.label, "mechanism": platform.mechanism,
                    "emulated": platform.emulated}
            if match.empty:
                reason = gap_reasons.get((platform.name, scenario))
                if reason is None:  # ran this scenario, just not this variant: one note under the table
                    continue
                records.append({**base, "n": 0, "note": reason})
                continue
            r = match.iloc[0].to_dict()
            ratio = _get(r, "ratio_to_baseline", "ratio_to_native")
            records.append({
                **base, "n": int(r["n"]), "median": r["median"], "interval_low": r.get("ci_low", math.nan),
                "interval_high": r.get("ci_high", math.nan),
                "interval_level": _get(r, "ci_level", "level"),
                "interval_method": _get(r, "ci_method", "method", default=""),
                "cv": r.get("cv", math.nan), "ratio_to_baseline": math.nan if platform.baseline else ratio,
                "ratio_low": math.nan if platform.baseline else _get(r, "ratio_ci_low"),
                "ratio_high": math.nan if platform.baseline else _get(r, "ratio_ci_high"),
                "ratio_level": math.nan if platform.baseline else _get(r, "ratio_ci_level", "ratio_level"),
                "ratio_method": "" if platform.baseline else _get(r, "ratio_ci_method", default=""),
                "cost_ratio": math.nan if platform.baseline else formatting.cost_ratio(float(ratio), better),  # type: ignore[arg-type]
                "note": "" if platform.baseline else str(r.get("ratio_note") or ""),
            })
    frame = pd.DataFrame.from_records(records, columns=LONG_COLUMNS)
    return frame


@dataclass
class DisplayCell:
    text: str
    title: str = ""
    style: str = ""
    missing: bool = False


@dataclass
class DisplayRow:
    metric: str
    variant: str
    unit: str
    platform: PlatformInfo
    cells: dict[str, DisplayCell] = field(default_factory=dict)
    rowspan: int = 0  # > 0 on the first platform row of a metric × variant


DISPLAY_COLUMNS = ("median", "interval", "n", "cv", "ratio", "ratio interval")


def level_text(level: object, method: object) -> str:
    if formatting.is_missing(level):
        return f"level not recorded{f' ({method})' if method else ''}"
    return f"{formatting.level(level)} interval{f', {method}' if method else ''}"


def display_rows(table: pd.DataFrame, platforms: list[PlatformInfo]) -> list[DisplayRow]:
    by_name = {p.name: p for p in platforms}
    baseline_name = next((p.name for p in platforms if p.baseline), "the baseline")
    out: list[DisplayRow] = []
    previous: tuple[str, str, str] | None = None
    for r in table.to_dict("records"):
        platform = by_name[str(r["platform"])]
        row = DisplayRow(str(r["metric"]), str(r["variant"]), str(r["unit"]), platform)
        key = (row.metric, row.variant, row.unit)
        if key != previous:
            row.rowspan = int(((table.metric == row.metric) & (table.variant == row.variant)
                               & (table.unit == row.unit)).sum())
            previous = key
        unit = row.unit
        if int(r["n"]) == 0:
            reason = str(r["note"])
            for column in DISPLAY_COLUMNS:
                row.cells[column] = DisplayCell(formatting.MISSING, title=reason, missing=True)
            row.cells["median"] = DisplayCell(formatting.MISSING, title=reason, missing=True)
            out.append(row)
            continue
        level = level_text(r["interval_level"], r["interval_method"])
        row.cells["median"] = DisplayCell(formatting.value(r["median"], unit))
        row.cells["interval"] = DisplayCell(formatting.interval(r["interval_low"], r["interval_high"], unit),
                                            title=level)
        row.cells["level"] = DisplayCell(formatting.level(r["interval_level"]), title=level)
        row.cells["n"] = DisplayCell(str(int(r["n"])))
        row.cells["cv"] = DisplayCell(formatting.percent(r["cv"]))
        if platform.baseline:
            row.cells["ratio"] = DisplayCell("1 (baseline)", title="the baseline every ratio is taken against")
            row.cells["ratio interval"] = DisplayCell("")
        elif formatting.is_missing(r["ratio_to_baseline"]):
            reason = str(r["note"]) or "no ratio: the baseline has no value for this metric and variant"
            row.cells["ratio"] = DisplayCell(formatting.MISSING, title=reason, missing=True)
            row.cells["ratio interval"] = DisplayCell(formatting.MISSING, title=reason, missing=True)
        else:
            colourable, why = formatting.ratio_is_colourable(unit, r["ratio_to_baseline"], r["ratio_low"],
                                                             r["ratio_high"])
            better = f"{r['direction']} is better" if r["direction"] else "no better side"
            if colourable and formatting.is_missing(r["cost_ratio"]):
                colourable, why = False, "no better side: neither higher nor lower is better"
            style = colour.cell_style(float(r["cost_ratio"])) if colourable else ""
            shade = "worse than" if float(r["cost_ratio"]) > 1 else "better than"
            title = f"{platform.name} ÷ {baseline_name}; {better}; " + (
                f"shaded: {shade} the baseline" if colourable else why)
            if r["note"]:
                title += f"; {r['note']}"
            row.cells["ratio"] = DisplayCell(formatting.ratio(r["ratio_to_baseline"]) + "×", title=title, style=style)
            row.cells["ratio interval"] = DisplayCell(
                formatting.interval(r["ratio_low"], r["ratio_high"], "") if not formatting.is_missing(r["ratio_low"])
                else formatting.MISSING, title=level_text(r["ratio_level"], r["ratio_method"]))
        out.append(row)
    return out


def variant_gaps(summary: pd.DataFrame, scenario: str, platforms: list[PlatformInfo],
                 gap_reasons: Mapping[tuple[str, str], str]) -> list[str]:
    """Notes for platforms that ran a scenario but not every variant of it (e.g. a network mode they lack)."""
    rows = summary[summary.scenario == scenario] if not summary.empty else summary
    if rows.empty:
        return []
    variants = list(dict.fromkeys(rows["variant"]))
    notes = []
    for platform in platforms:
        mine = set(rows[rows.platform == platform.name]["variant"])
        if not mine or (platform.name, scenario) in gap_reasons:
            continue
        lacking = [v for v in variants if v not in mine]
        if lacking:
            shown = ", ".join(lacking[:6]) + (f" and {len(lacking) - 6} more" if len(lacking) > 6 else "")
            notes.append(f"{platform.label} did not run {len(lacking)} variant(s) of this scenario "
                         f"({shown}); its rows are left out there")
    return notes
