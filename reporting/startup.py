"""The start-time comparison: every platform that ran, side by side, in one table and one CDF figure.

The table has a row per platform and, per start metric (start-to-exit and ready-for-exec, serial, and
their parallel counterparts where measured), the median with its interval at its real level and n
(the repetition is the unit; from the summary frame, like every other table). The figure draws the
empirical CDF of every single start (each serial instance), one panel per metric, each platform in its
colour and labelled with its PlatformInfo label. Which metrics count as start metrics is data
(`START_METRICS`); the module never names a platform or a scenario.
"""

from __future__ import annotations

import html
from dataclasses import dataclass
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from reporting import export, formatting, plots
from runtime.platform import PlatformInfo

#: metric -> its column heading; serial ones first (the CDF draws these, one panel each).
START_METRICS = {"start_to_exit_s": "start to exit", "startup_ready_s": "ready for exec"}
PARALLEL_METRICS = {"startup_all_exit_s": "all exited (parallel)", "startup_all_ready_s": "all ready (parallel)"}


@dataclass(frozen=True)
class Comparison:
    html: str  # an escaped HTML fragment: the table, then the figure
    figure: plots.Figure | None
    csv: Path
    tex: Path


def _cell(row: pd.Series | None) -> dict[str, str]:
    if row is None:
        return {"median": formatting.MISSING, "interval": formatting.MISSING, "level": "", "n": ""}
    median, unit = formatting.scaled(row["median"], str(row["unit"]))
    low, _ = formatting.scaled(row["ci_low"], str(row["unit"]), row["median"])
    high, _ = formatting.scaled(row["ci_high"], str(row["unit"]), row["median"])
    interval = f"{low}–{high}" if not formatting.is_missing(row["ci_low"]) else formatting.MISSING
    return {"median": f"{median} {unit}", "interval": interval, "level": formatting.level(row["ci_level"]),
            "n": str(int(row["n"]))}


def table_rows(summary: pd.DataFrame, scenario: str, platforms: list[PlatformInfo]
               ) -> tuple[list[tuple[str, str]], list[tuple[PlatformInfo, list[dict[str, str]]]]]:
    """(columns as (metric, heading incl. variant), rows as (platform, one cell per column)); empty when the
    scenario has no start metric."""
    mine = summary[(summary.scenario == scenario)] if not summary.empty else summary
    columns: list[tuple[str, str, str]] = []  # metric, variant, heading
    for metric, heading in {**START_METRICS, **PARALLEL_METRICS}.items():
        for variant in dict.fromkeys(mine[mine.metric == metric]["variant"]) if not mine.empty else ():
            extra = ", ".join(v for v in str(variant).split(",") if not v.startswith("mode="))  # heading says it
            shown = f"{heading}, {extra}" if extra and metric not in START_METRICS else heading
            columns.append((metric, str(variant), shown))
    if not columns:
        return [], []
    rows = []
    for platform in platforms:
        cells = []
        for metric, variant, _ in columns:
            found = mine[(mine.platform == platform.name) & (mine.metric == metric) & (mine.variant == variant)]
            cells.append(_cell(found.iloc[0] if not found.empty else None))
        if any(c["n"] for c in cells):
            rows.append((platform, cells))
    return [(m, h) for m, _, h in columns], rows


def cdf_figure(samples: pd.DataFrame, scenario: str, platforms: list[PlatformInfo], out_dir: Path
               ) -> plots.Figure | None:
    """Empirical CDF of every serial start, one panel per start metric, every platform in its colour."""
    rows = samples[(samples.scenario == scenario) & samples.metric.isin(list(START_METRICS))]
    metrics = [m for m in START_METRICS if m in set(rows.metric)]
    if not metrics:
        return None
    fig, axes = plt.subplots(1, len(metrics), figsize=(5.2 * len(metrics), 3.4), squeeze=False, sharey=True)
    log_axis = plots._spans_decades(rows["value"].tolist())
    for ax, metric in zip(axes[0], metrics, strict=True):
        mine = rows[rows.metric == metric]
        unit = str(mine["unit"].iloc[0])
        factor, shown = (1000.0, "ms") if unit == "s" and float(mine["value"].max()) < 1 else (1.0, unit)
        for platform in platforms:
            values = np.sort(mine[mine.platform == platform.name]["value"].to_numpy()) * factor
            if values.size == 0:
                continue
            ax.step(values, np.arange(1, values.size + 1) / values.size, where="post", color=platform.colour,
                    label=f"{platform.label} (n = {values.size} starts)")
        if log_axis:
            ax.set_xscale("log")
            plots._log_ticks(ax.xaxis)
        ax.set_xlabel(f"{START_METRICS[metric]} ({shown}{', log' if log_axis else ''})")
        ax.set_ylim(0, 1.02)
        ax.set_title(f"{metric}: every serial start", fontsize=8)
        plots._style(ax)
    axes[0][0].set_ylabel("fraction ≤ x")
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, fontsize=7, frameon=False, loc="upper center", ncol=min(3, max(1, len(labels))),
               bbox_to_anchor=(0.5, 0.0))
    fig.tight_layout()
    return plots._save(fig, f"{scenario}-start-cdf", "start times: CDF of every start per platform",
                       "empirical CDF of start-to-exit and ready-for-exec times per platform", out_dir)


def comparison(summary: pd.DataFrame, samples: pd.DataFrame, scenario: str, platforms: list[PlatformInfo],
               figures_dir: Path, tables_dir: Path) -> Comparison | None:
    """The table and the CDF as an HTML fragment, plus the figure's files and the table as CSV and LaTeX;
    None when the scenario measured no start metric."""
    columns, rows = table_rows(summary, scenario, platforms)
    if not rows:
        return None
    headings = [h for _, h in columns]
    flat = [{"platform": p.name, "platform_label": p.label,
             **{f"{h} {k}": c[k] for h, c in zip(headings, cells, strict=True) for k in c}}
            for p, cells in rows]
    csv = export.write_csv(pd.DataFrame(flat), tables_dir / f"{scenario}-start.csv")
    tex = export.write_latex(export.latex_table(
        ["platform", *[f"{h} ({k})" for h in headings for k in ("median", "interval", "level", "n")]],
        [[p.label, *[c[k] for c in cells for k in ("median", "interval", "level", "n")]] for p, cells in rows],
        "Start times per platform: median, interval of the median with its level, n repetitions",
        f"{scenario}-start"), tables_dir / f"{scenario}-start.tex")
    figure = cdf_figure(samples, scenario, platforms, figures_dir)
    parts = ["<h3>start times, side by side</h3>",
             "<p class=\"meta\">Same workload on every platform, measured in the same run: <b>start to exit</b> "
             "(a fresh instance whose command is <code>/bin/true</code>, until it exited and was removed, through "
             "the platform's one-shot path where it has one, else create + exec + destroy) and <b>ready for "
             "exec</b> (create until a first <code>/bin/true</code> answered). Median of the repetitions, the "
             "interval of the median at its real level, n repetitions.</p>",
             "<div class=\"scroll\"><table class=\"results\"><thead><tr><th rowspan=\"2\">platform</th>"]
    parts += [f"<th colspan=\"4\">{html.escape(h)}</th>" for h in headings]
    parts.append("</tr><tr>" + "<th>median</th><th>interval</th><th>level</th><th>n</th>" * len(headings)
                 + "</tr></thead><tbody>")
    for platform, cells in rows:
        parts.append(f"<tr><td>{html.escape(platform.label)}</td>" + "".join(
            f"<td class=\"num\">{html.escape(c['median'])}</td><td class=\"num\">{html.escape(c['interval'])}</td>"
            f"<td>{html.escape(c['level'])}</td><td class=\"num\">{html.escape(c['n'])}</td>" for c in cells)
            + "</tr>")
    parts.append("</tbody></table></div>")
    if figure is not None:
        parts.append(f"<figure><img src=\"{figure.data_uri}\" alt=\"{html.escape(figure.alt)}\"><figcaption>"
                     f"{html.escape(figure.title)} — files: {html.escape(figure.name)}.svg, "
                     f"{html.escape(figure.name)}.png</figcaption></figure>")
    return Comparison("\n".join(parts), figure, csv, tex)
