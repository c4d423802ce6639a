"""Plots for the report, rendered offline with matplotlib (Agg) and embedded as inline SVG."""

from __future__ import annotations

import io

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import pandas as pd

from bench import stats
from reporting import platforms as platform_infos
from runtime.platform import PlatformInfo


def _svg(fig: plt.Figure) -> str:
    buffer = io.StringIO()
    fig.savefig(buffer, format="svg", bbox_inches="tight", metadata={"Date": None})
    plt.close(fig)
    text = buffer.getvalue()
    return text[text.find("<svg"):]


def medians_with_ci(group: pd.DataFrame, metric: str, unit: str, infos: dict[str, PlatformInfo]) -> str:
    """Grouped bars: one group per variant, one bar per platform (its own colour), whiskers: interval of the median."""
    variants = sorted(set(group.variant))
    platforms = platform_infos.ordered(infos, group.platform)
    width = 0.8 / max(len(platforms), 1)
    fig, ax = plt.subplots(figsize=(min(14.0, max(4.0, 1.1 * len(variants) + 2)), 3.2))
    for i, platform in enumerate(platforms):
        rows = group[group.platform == platform].set_index("variant")
        xs, heights, low, high, labels = [], [], [], [], []
        for j, variant in enumerate(variants):
            if variant not in rows.index:
                continue
            r = rows.loc[variant]
            xs.append(j + (i - (len(platforms) - 1) / 2) * width)
            heights.append(r["median"])
            low.append(r["median"] - r["ci_low"])
            high.append(r["ci_high"] - r["median"])
            labels.append(int(r["n"]))
        legend = infos[platform].label if platform in infos else platform
        ax.bar(xs, heights, width=width, yerr=[low, high], capsize=3, label=legend,
               color=platform_infos.colour(infos, platform))
    labels = [v.replace(",", "\n") if len(variants) <= 3 else v for v in variants]
    ax.set_xticks(range(len(variants)), labels, fontsize=7, rotation=0 if len(variants) <= 3 else 35,
                  ha="center" if len(variants) <= 3 else "right")
    ax.set_ylabel(unit)
    levels = sorted({stats.format_level(float(v)) for v in group.get("ci_level", [])})
    ax.set_title(f"{metric} — median, interval of the median ({', '.join(levels) or 'no'} level)", fontsize=9)
    ax.legend(fontsize=7, frameon=False)
    ax.spines[["top", "right"]].set_visible(False)
    return _svg(fig)
