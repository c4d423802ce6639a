"""Figures for the report, drawn offline with matplotlib (Agg): each saved as SVG and PNG under
reports/<run-id>/figures/ and embedded in the HTML as a data URI (self-contained, no id clashes).

Conventions: platforms are named by their label (name and mechanism) in their own colour; whiskers
are the median's interval, labelled with its real level and n; per-repetition values are drawn as dots
beside the median; axes are logarithmic where values span more than a decade; a missing cell is drawn
as a grey "missing" mark, never as zero.
"""

from __future__ import annotations

import base64
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib import ticker

from reporting import formatting
from reporting.overview import AreaRow, median_interval
from runtime.platform import PlatformInfo

LOG_SPAN = 10.0  # values spanning more than this factor get a log axis
MISSING_COLOUR = "#999999"
PERCENTILE = re.compile(r"_p(\d+(?:_\d+)?)$")


@dataclass(frozen=True)
class Figure:
    name: str  # file stem under figures/
    title: str
    alt: str
    data_uri: str  # the SVG, base64, for <img src>
    svg_path: Path
    png_path: Path


def _save(fig: plt.Figure, name: str, title: str, alt: str, out_dir: Path) -> Figure:
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = re.sub(r"[^A-Za-z0-9_.-]+", "-", name).strip("-")
    svg_path, png_path = out_dir / f"{stem}.svg", out_dir / f"{stem}.png"
    fig.savefig(svg_path, format="svg", bbox_inches="tight", metadata={"Date": None})
    fig.savefig(png_path, format="png", bbox_inches="tight", dpi=150)
    plt.close(fig)
    uri = "data:image/svg+xml;base64," + base64.b64encode(svg_path.read_bytes()).decode("ascii")
    return Figure(stem, title, alt, uri, svg_path, png_path)


def _spans_decades(values: Sequence[float]) -> bool:
    positive = [v for v in values if v and v > 0 and math.isfinite(v)]
    return bool(positive) and max(positive) / min(positive) > LOG_SPAN


def _log_ticks(axis: matplotlib.axis.Axis) -> None:
    """Plain numbers (0.5, 2, 100) on a log axis instead of 5×10⁻¹ and 10²."""
    axis.set_major_locator(ticker.LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    axis.set_major_formatter(ticker.FuncFormatter(lambda v, _: formatting.number(v, 2)))
    axis.set_minor_formatter(ticker.NullFormatter())


def _style(ax: plt.Axes) -> None:
    ax.spines[["top", "right"]].set_visible(False)
    ax.grid(axis="y", color="#e5e5e5", linewidth=0.6)
    ax.set_axisbelow(True)


def overview_figure(rows: list[AreaRow], areas: list[str], platforms: list[PlatformInfo], out_dir: Path) -> Figure:
    """Cost ratio (> 1: costs more than the baseline) per area and platform, log axis, interval whiskers."""
    measured = {r.platform.name for r in rows}
    shown = [p for p in platforms if not p.baseline and p.name in measured]
    fig, ax = plt.subplots(figsize=(7.5, 1.0 + len(areas) * (0.2 + 0.18 * max(1, len(shown)))))
    offsets = np.linspace(-0.25, 0.25, len(shown)) if len(shown) > 1 else [0.0]
    levels = set()
    for offset, platform in zip(offsets, shown, strict=True):
        for y, area in enumerate(areas):
            row = next((r for r in rows if r.area == area and r.platform.name == platform.name), None)
            if row is None:
                ax.plot([1.0], [y + offset], marker="x", color=MISSING_COLOUR)
                ax.annotate("missing", (1.0, y + offset), xytext=(6, 0), textcoords="offset points",
                            color=MISSING_COLOUR, fontsize=7, va="center")
                continue
            c = row.cost
            levels.add(c.label)
            ax.errorbar([c.point], [y + offset], xerr=[[c.point - c.low], [c.high - c.point]], fmt="o",
                        color=platform.colour, capsize=3, markersize=5,
                        label=platform.label if y == 0 or area == areas[0] else None)
    ax.axvline(1.0, color="#444444", linewidth=0.8)
    ax.set_xscale("log")
    _log_ticks(ax.xaxis)
    ax.set_yticks(range(len(areas)), areas)
    ax.invert_yaxis()
    ax.set_xlabel("cost ratio to the baseline (log; > 1 costs more, direction-normalised)")
    ax.set_title("Cost per area — whiskers: " + "; ".join(sorted(levels)) if levels else "Cost per area", fontsize=9)
    handles, labels = ax.get_legend_handles_labels()
    unique = dict(zip(labels, handles, strict=True))
    ax.legend(unique.values(), unique.keys(), fontsize=7, frameon=False, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    ax.grid(axis="x", color="#e5e5e5", linewidth=0.6, which="both")
    ax.spines[["top", "right"]].set_visible(False)
    alt = "; ".join(f"{r.platform.label} {r.area}: {formatting.ratio(r.cost.point)}× "
                    f"[{formatting.ratio(r.cost.low)}–{formatting.ratio(r.cost.high)}, {r.cost.label}]" for r in rows)
    return _save(fig, "overview-cost-per-area", "Cost per area and platform", alt, out_dir)


def metric_figure(samples: pd.DataFrame, scenario: str, metric: str, unit: str, platforms: list[PlatformInfo],
                  out_dir: Path, variants: list[str] | None = None) -> Figure:
    """Per variant and platform: every repetition as a dot, the median as a bar tick, its interval as whiskers."""
    rows = samples[(samples.scenario == scenario) & (samples.metric == metric) & (samples.unit == unit)]
    variants = variants or list(dict.fromkeys(rows["variant"]))
    present = [p for p in platforms if p.name in set(rows.platform)] or platforms
    width = 0.8 / max(len(present), 1)
    fig, ax = plt.subplots(figsize=(min(14.0, max(4.5, 1.0 * len(variants) * max(1, len(present)) / 2 + 2)), 3.4))
    rng = np.random.default_rng(0)
    levels: set[str] = set()
    labelled: set[str] = set()
    log_axis = _spans_decades(rows["value"].tolist())
    floor = rows["value"][rows["value"] > 0].min() if log_axis else 0.0
    for i, platform in enumerate(present):
        mine = rows[rows.platform == platform.name]
        for j, variant in enumerate(variants):
            x = j + (i - (len(present) - 1) / 2) * width
            cell = mine[mine.variant == variant]
            if cell.empty:
                ax.plot([x], [floor if log_axis else 0], marker="x", color=MISSING_COLOUR, markersize=6)
                ax.annotate("missing", (x, floor if log_axis else 0), fontsize=6, color=MISSING_COLOUR, rotation=90,
                            ha="center", va="bottom", xytext=(0, 4), textcoords="offset points")
                continue
            per_rep = cell.groupby("repetition")["value"].median().tolist()
            interval = median_interval(per_rep)
            levels.add(interval.label)
            jitter = rng.uniform(-width * 0.18, width * 0.18, size=len(cell))
            ax.scatter(x - width * 0.22 + jitter, cell["value"], s=9, color=platform.colour, alpha=0.55,
                       edgecolors="none", zorder=3)
            ax.errorbar([x + width * 0.12], [interval.point], yerr=[[interval.point - interval.low],
                                                                   [interval.high - interval.point]],
                        fmt="_", markersize=12, color=platform.colour, capsize=3, zorder=4,
                        label=None if platform.label in labelled else platform.label)
            labelled.add(platform.label)
    if log_axis:
        ax.set_yscale("log")
        _log_ticks(ax.yaxis)
    labels = [v.replace(",", "\n") for v in variants]
    ax.set_xticks(range(len(variants)), labels, fontsize=6.5,
                  rotation=0 if len(variants) <= 4 else 35, ha="center" if len(variants) <= 4 else "right")
    ax.set_ylabel(f"{unit}{' (log)' if log_axis else ''}")
    level_text = "; ".join(sorted(levels)) or "no interval"
    ax.set_title(f"{metric} — dots: repetitions; ticks: median; whiskers: {level_text}", fontsize=8)
    ax.legend(fontsize=7, frameon=False, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    _style(ax)
    alt = f"{metric} in {unit} per variant and platform; whiskers {level_text}"
    return _save(fig, f"{scenario}-{metric}", f"{metric} ({unit})", alt, out_dir)


def cdf_figure(samples: pd.DataFrame, scenario: str, metric: str, platforms: list[PlatformInfo],
               out_dir: Path) -> Figure | None:
    """Empirical CDF of every measured value of `metric` per platform (log x when they span decades)."""
    rows = samples[(samples.scenario == scenario) & (samples.metric == metric)]
    if rows.empty:
        return None
    unit = str(rows["unit"].iloc[0])
    fig, ax = plt.subplots(figsize=(6.5, 3.2))
    for platform in platforms:
        values = np.sort(rows[rows.platform == platform.name]["value"].to_numpy())
        if values.size == 0:
            continue
        ax.step(values, np.arange(1, values.size + 1) / values.size, where="post", color=platform.colour,
                label=f"{platform.label} (n = {values.size} values)")
    if _spans_decades(rows["value"].tolist()):
        ax.set_xscale("log")
        _log_ticks(ax.xaxis)
    ax.set_xlabel(unit)
    ax.set_ylabel("fraction ≤ x")
    ax.set_ylim(0, 1.02)
    ax.set_title(f"{metric}: empirical CDF of every start", fontsize=8)
    ax.legend(fontsize=7, frameon=False, loc="lower right")
    _style(ax)
    return _save(fig, f"{scenario}-{metric}-cdf", f"{metric}: CDF", f"empirical CDF of {metric} per platform",
                 out_dir)


def phases_figure(samples: pd.DataFrame, scenario: str, metric: str, platforms: list[PlatformInfo],
                  out_dir: Path) -> Figure | None:
    """Median duration of each start phase, stacked per platform (one panel each: their scales differ)."""
    rows = samples[(samples.scenario == scenario) & (samples.metric == metric)]
    present = [p for p in platforms if p.name in set(rows.platform)]
    if not present:
        return None
    unit = str(rows["unit"].iloc[0])
    fig, axes = plt.subplots(len(present), 1, figsize=(7.5, 0.6 + 0.85 * len(present)), squeeze=False)
    cmap = plt.get_cmap("tab20")
    every_phase = list(dict.fromkeys(rows["variant"]))
    colour_of = {phase: cmap(k % 20) for k, phase in enumerate(every_phase)}  # one colour per phase everywhere
    for ax, platform in zip(axes[:, 0], present, strict=True):
        mine = rows[rows.platform == platform.name]
        phases = list(dict.fromkeys(mine["variant"]))
        medians = [float(mine[mine.variant == phase]["value"].median()) for phase in phases]
        factor, shown = formatting.scale_for(sum(medians), unit)
        left = 0.0
        for phase, median in zip(phases, medians, strict=True):
            ax.barh([0], [median * factor], left=left, color=colour_of[phase], edgecolor="white",
                    label=phase.removeprefix("phase="))
            left += median * factor
        ax.set_yticks([0], [platform.label], fontsize=7)
        ax.tick_params(axis="x", labelsize=7)
        ax.set_xlabel(shown, fontsize=7, labelpad=1)
        ax.legend(fontsize=6, frameon=False, loc="center left", bbox_to_anchor=(1.01, 0.5))
        ax.spines[["top", "right"]].set_visible(False)
    fig.suptitle(f"{metric}: median of each phase, stacked (each platform on its own scale)", fontsize=8)
    fig.tight_layout()
    return _save(fig, f"{scenario}-{metric}-phases", "start phases", "start phases stacked per platform", out_dir)


def percentile_metrics(metrics: Sequence[str]) -> dict[str, list[tuple[float, str]]]:
    """Group `prefix_pNN` metrics: prefix -> [(percentile, metric)], only where at least two percentiles exist."""
    groups: dict[str, list[tuple[float, str]]] = {}
    for metric in metrics:
        match = PERCENTILE.search(metric)
        if match:
            groups.setdefault(metric[: match.start()], []).append((float(match.group(1).replace("_", ".")), metric))
    return {k: sorted(v) for k, v in groups.items() if len(v) >= 2}


def percentiles_figure(samples: pd.DataFrame, scenario: str, prefix: str, series: list[tuple[float, str]],
                       platforms: list[PlatformInfo], out_dir: Path, max_panels: int = 8) -> Figure | None:
    """Latency percentiles (median over repetitions) against the percentile, per variant and platform."""
    metrics = [m for _, m in series]
    rows = samples[(samples.scenario == scenario) & samples.metric.isin(metrics)]
    if rows.empty:
        return None
    unit = str(rows["unit"].iloc[0])
    variants = list(dict.fromkeys(rows["variant"]))[:max_panels]
    cols = min(4, len(variants))
    nrows = math.ceil(len(variants) / cols)
    fig, axes = plt.subplots(nrows, cols, figsize=(3.0 * cols, 2.5 * nrows), squeeze=False, sharey=True)
    percents = [p for p, _ in series]
    for index, variant in enumerate(variants):
        ax = axes[index // cols][index % cols]
        for platform in platforms:
            ys = []
            for metric in metrics:
                cell = rows[(rows.platform == platform.name) & (rows.metric == metric) & (rows.variant == variant)]
                ys.append(float(cell["value"].median()) if not cell.empty else math.nan)
            if all(math.isnan(y) for y in ys):
                continue
            ax.plot(range(len(percents)), ys, marker="o", markersize=3, color=platform.colour, label=platform.label)
        ax.set_xticks(range(len(percents)), [f"p{p:g}" for p in percents], fontsize=7)
        ax.set_yscale("log")
        _log_ticks(ax.yaxis)
        ax.set_title(variant.replace(",", ", "), fontsize=6.5)
        _style(ax)
    for index in range(len(variants), nrows * cols):
        axes[index // cols][index % cols].axis("off")
    axes[0][0].set_ylabel(f"{unit} (log)")
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, fontsize=7, frameon=False, loc="lower center", ncol=max(1, len(labels)),
               bbox_to_anchor=(0.5, -0.04))
    fig.suptitle(f"{prefix}: latency percentiles (median over repetitions; missing cells absent)", fontsize=8)
    fig.tight_layout()
    return _save(fig, f"{scenario}-{prefix}-percentiles", f"{prefix} percentiles",
                 f"{prefix} latency percentiles per variant and platform", out_dir)
