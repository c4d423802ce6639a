"""The interleaved design in the report: drift over blocks and ratios paired within blocks.

For every scenario measured interleaved (its samples carry `block`): per metric and variant, each
platform's value per block (a figure, block on the x axis), the baseline's drift (Theil-Sen slope
with its interval; significant drift is said beside the ratios it affects), and each platform's ratio
to the baseline paired within blocks next to the unpaired ratio of medians. Built from samples and
blocks.jsonl (how idle instances were quieted and the host CPU they used meanwhile); empty when the
run was sequential.
"""

from __future__ import annotations

import html
import json
from collections import defaultdict
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from bench import stats
from bench.results import SampleRecord
from reporting.plots import Figure, _save, _style
from runtime.platform import PlatformInfo

Key = tuple[str, str, str, str]  # scenario, metric, variant, unit


def by_block(samples: list[SampleRecord]) -> dict[Key, dict[str, dict[int, float]]]:
    """(scenario, metric, variant, unit) -> platform -> block -> value (median of the block's samples)."""
    values: dict[Key, dict[str, dict[int, list[float]]]] = defaultdict(lambda: defaultdict(lambda: defaultdict(list)))
    for s in samples:
        block = s.metadata.get("block")
        if isinstance(block, int) and s.unit != "yes/no":
            values[(s.scenario, s.metric, s.variant, s.unit)][s.platform][block].append(s.value)
    return {key: {p: {b: sorted(v)[len(v) // 2] for b, v in blocks.items()} for p, blocks in per.items()}
            for key, per in values.items()}


def _quiet_summary(run_dir: Path) -> str:
    path = run_dir / "blocks.jsonl"
    if not path.exists():
        return ""
    how: dict[str, str] = {}
    worst: dict[str, float] = defaultdict(float)
    for line in path.read_text().splitlines():
        try:
            block = json.loads(line)
        except ValueError:
            continue
        how.update(block.get("quiet") or {})
        scenario = str(block.get("scenario"))
        for turn in block.get("turns") or []:
            worst[scenario] = max(worst[scenario], float(turn.get("quiet_cpu_s", 0)))
    if not how:
        return ""
    ways = "; ".join(f"{html.escape(p)}: {html.escape(w)}" for p, w in sorted(how.items()))
    most = max(worst.values(), default=0.0)
    return (f"<p class=\"meta\">While one platform was measured the others were quiet — {ways}. The most host "
            f"CPU time the quiet instances used during any one measurement: {most:.3f} s.</p>")


def _figure(key: Key, per_platform: dict[str, dict[int, float]], infos: dict[str, PlatformInfo],
            out_dir: Path) -> Figure:
    scenario, metric, variant, unit = key
    fig, ax = plt.subplots(figsize=(6.4, 2.6))
    for name, blocks in per_platform.items():
        info = infos.get(name)
        xs = sorted(blocks)
        ax.plot(xs, [blocks[b] for b in xs], marker="o", linewidth=1, color=info.colour if info else "#777777",
                label=info.label if info else name)
    ax.set_xlabel("block (one repetition of every platform, random order)")
    ax.set_ylabel(unit)
    ax.set_title(f"{metric} [{variant}] over blocks", fontsize=9)
    ax.legend(fontsize=7, frameon=False)
    _style(ax)
    return _save(fig, f"drift-{scenario}-{metric}-{variant}", f"{metric} [{variant}] per block",
                 f"{metric} ({unit}) per block for each platform", out_dir)


def section(samples: list[SampleRecord], run_dir: Path, infos: dict[str, PlatformInfo], figures_dir: Path) -> str:
    """The 'drift and paired ratios' section as an HTML fragment ('' for a sequential run)."""
    table = by_block(samples)
    if not table:
        return ""
    baseline = next((name for name, info in infos.items() if info.baseline), None)
    rows, figures = [], []
    for key in sorted(table):
        per = table[key]
        scenario, metric, variant, _unit = key
        base = per.get(baseline or "", {})
        reference = stats.drift(base) if base else None
        for name, blocks in sorted(per.items()):
            if name == baseline or not base:
                continue
            paired = stats.paired_ratio(blocks, base)
            unpaired = stats.ratio(list(blocks.values()), list(base.values()))
            flag = " (baseline drifts: prefer the paired ratio)" if reference and reference.significant else ""
            rows.append("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in (
                scenario, metric, variant, infos[name].label if name in infos else name,
                _ratio_text(paired), _ratio_text(unpaired), (reference.text if reference else "—") + flag)) + "</tr>")
        if len(figures) < 24:  # one figure per metric variant, enough to see drift without drowning the page
            figures.append(_figure(key, per, infos, figures_dir))
    base_label = html.escape(infos[baseline].label if baseline in infos else "the baseline")
    head = "".join(f"<th>{h}</th>" for h in ("scenario", "metric", "variant", "platform", f"÷ {base_label}, paired",
                                              "÷ unpaired (ratio of medians)", f"drift of {base_label}"))
    images = "".join(f'<figure><img src="{f.data_uri}" alt="{html.escape(f.alt)}"><figcaption>'
                     f"{html.escape(f.title)}</figcaption></figure>" for f in figures)
    return ("<h2>drift and paired ratios (interleaved blocks)</h2>"
            "<p class=\"meta\">Each block measured every platform once, in a new random order. The paired ratio is "
            "the median of the per-block ratios (drift between blocks cancels) with an order-statistic interval "
            "at its real level; the unpaired ratio of medians is shown for comparison. Drift: Theil-Sen slope of "
            "the baseline's values over blocks, relative to its median.</p>"
            + _quiet_summary(run_dir)
            + f'<div class="scroll"><table id="drift-table"><thead><tr>{head}</tr></thead><tbody>{"".join(rows)}'
            "</tbody></table></div>" + images)


def _ratio_text(r: stats.Ratio) -> str:
    if r.point != r.point:  # nan
        return f"— ({r.note})" if r.note else "—"
    if not r.interval.defined:
        return f"{r.point:.3f} ({r.interval.label})"
    return f"{r.point:.3f} [{r.interval.low:.3f}–{r.interval.high:.3f}, {r.interval.label}]"
