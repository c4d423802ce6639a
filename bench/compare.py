"""`python -m bench compare RUN_A RUN_B`: what changed from run A to run B, per platform × metric × variant.

Each side's samples are reduced to one value per repetition (reporting.summary.unit_values); the
change is B ÷ A with the exact Mann-Whitney-inversion interval of bench.stats at its real level,
shown as a delta in percent, and a verdict from the metric's direction: better, worse, or no
detectable change (below 95 % the verdict names the level reached). Rows only one side measured
say so. Platforms are matched by name; a side merged from several hosts is compared per host only
when both sides have that host. Either side may be damaged: what could not be read is listed.
"""

from __future__ import annotations

import html
import math
from pathlib import Path

import pandas as pd

from bench import stats
from bench.dataset import Dataset, load
from reporting.summary import KEYS, direction, higher_is_better, samples_frame, unit_values

COLUMNS = ["host", "platform", *KEYS, "direction", "n_a", "median_a", "n_b", "median_b", "ratio", "ratio_low",
           "ratio_high", "ratio_level", "ratio_method", "delta_pct", "delta_low_pct", "delta_high_pct", "verdict",
           "note"]


def _frame(data: Dataset, pool_hosts: bool) -> pd.DataFrame:
    frame = samples_frame(data.samples, data.hosts)
    if pool_hosts:
        frame["host"] = ""
    return frame


def compare_frame(a: Dataset, b: Dataset) -> pd.DataFrame:
    """One row per host × platform × metric × variant measured in either run."""
    hosts_a, hosts_b = set(a.hosts.values()), set(b.hosts.values())
    per_host = len(hosts_a) > 1 or len(hosts_b) > 1
    frame_a, frame_b = _frame(a, not per_host), _frame(b, not per_host)
    group_keys = ["host", "platform", *KEYS]
    keys = pd.concat([frame_a[group_keys], frame_b[group_keys]]).drop_duplicates().sort_values(group_keys)
    rows = []
    for host, platform, scenario, metric, variant, unit in keys.itertuples(index=False):
        def pick(frame: pd.DataFrame, host: str = host, platform: str = platform, scenario: str = scenario,
                 metric: str = metric, variant: str = variant, unit: str = unit) -> list[float]:
            return unit_values(frame[(frame.host == host) & (frame.platform == platform) & (frame.scenario == scenario)
                                     & (frame.metric == metric) & (frame.variant == variant)
                                     & (frame.unit == unit)])[0]

        values_a, values_b = pick(frame_a), pick(frame_b)
        row: dict[str, object] = {
            "host": host, "platform": platform, "scenario": scenario, "metric": metric, "variant": variant,
            "unit": unit, "direction": direction(metric, unit), "n_a": len(values_a),
            "median_a": stats.summarize(values_a).median if values_a else math.nan, "n_b": len(values_b),
            "median_b": stats.summarize(values_b).median if values_b else math.nan}
        if not values_a or not values_b:
            row.update(verdict="only in " + ("B" if not values_a else "A"), note="")
            rows.append(row)
            continue
        change = stats.ratio(values_b, values_a)
        iv = change.interval
        row.update(ratio=change.point, ratio_low=iv.low, ratio_high=iv.high, ratio_level=iv.level,
                   ratio_method=iv.method, delta_pct=100 * (change.point - 1), delta_low_pct=100 * (iv.low - 1),
                   delta_high_pct=100 * (iv.high - 1),
                   verdict=stats.change_verdict(change, higher_is_better(metric, unit)), note=change.note)
        rows.append(row)
    return pd.DataFrame(rows, columns=COLUMNS)


def _pct(value: object) -> str:
    return "–" if not isinstance(value, float) or math.isnan(value) else f"{value:+.1f} %"


def text_table(frame: pd.DataFrame) -> list[str]:
    """Lines for the terminal: one per row, the delta with its interval and level, and the verdict."""
    lines = []
    for r in frame.to_dict("records"):
        where = f"{r['host']}: " if r["host"] else ""
        head = f"{where}{r['platform']} {r['metric']} [{r['variant']}] ({r['unit']})"
        if r["n_a"] and r["n_b"]:
            level = stats.format_level(float(r["ratio_level"])) if r["ratio_level"] == r["ratio_level"] else "no"
            lines.append(f"{head}: {r['median_a']:.4g} (n={r['n_a']}) -> {r['median_b']:.4g} (n={r['n_b']}), "
                         f"{_pct(r['delta_pct'])} [{_pct(r['delta_low_pct'])}, {_pct(r['delta_high_pct'])}; "
                         f"{level} interval]: {r['verdict']}")
        else:
            lines.append(f"{head}: {r['verdict']}")
    return lines


def write_outputs(frame: pd.DataFrame, a: Dataset, b: Dataset, out_dir: Path) -> tuple[Path, Path]:
    """reports/compare-<A>-vs-<B>.csv and .html (self-contained), written atomically."""
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = f"compare-{a.name}-vs-{b.name}"
    csv_path, html_path = out_dir / f"{stem}.csv", out_dir / f"{stem}.html"
    frame.to_csv(csv_path, index=False)
    problems = [f"A ({a.name}): {p}" for p in a.problems] + [f"B ({b.name}): {p}" for p in b.problems]
    missing = ("<div class=\"banner failed\" id=\"missing\">Missing or unreadable results<ul>"
               + "".join(f"<li>{html.escape(p)}</li>" for p in problems) + "</ul></div>") if problems else ""
    shown = frame.assign(
        delta=frame.delta_pct.map(_pct),
        interval=[f"{_pct(lo)} to {_pct(hi)} ({stats.format_level(float(lv))})" if n_a and n_b else "–"
                  for lo, hi, lv, n_a, n_b in zip(frame.delta_low_pct, frame.delta_high_pct, frame.ratio_level,
                                                  frame.n_a, frame.n_b, strict=True)])
    shown = shown[["host", "platform", "scenario", "metric", "variant", "unit", "direction", "n_a", "median_a", "n_b",
                   "median_b", "delta", "interval", "verdict", "note"]]
    if not shown["host"].astype(bool).any():
        shown = shown.drop(columns=["host"])
    table = shown.style.hide(axis="index").format(precision=4, na_rep="–").to_html()
    document = (f"<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>isolab {html.escape(stem)}"
                f"</title><style>body{{font-family:system-ui,sans-serif;margin:2em}}table{{border-collapse:collapse}}"
                f"td,th{{border:1px solid #ccc;padding:.2em .5em}}.banner{{padding:.6em;border:2px solid #a00}}"
                f"</style></head><body><h1>isolab: {html.escape(a.name)} (A) vs {html.escape(b.name)} (B)</h1>"
                f"{missing}<p>Per platform, metric and variant: B ÷ A as a change in percent, with the interval of "
                f"that change at its real level (exact Mann-Whitney inversion on the repetitions' values), and a "
                f"verdict from the metric's direction.</p>{table}</body></html>")
    tmp = html_path.with_suffix(".html.tmp")
    tmp.write_text(document, encoding="utf-8")
    tmp.replace(html_path)
    return csv_path, html_path


def compare(path_a: Path, path_b: Path) -> tuple[Dataset, Dataset, pd.DataFrame]:
    a, b = load(path_a), load(path_b)
    return a, b, compare_frame(a, b)
