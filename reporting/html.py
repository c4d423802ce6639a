"""Build `reports/<run-id>.html`: one self-contained file (inline CSS and images) that works offline.

Sections: banners (emulated platforms, weaker confinement, failed/skipped cells), what ran,
per-scenario tables styled with pandas Styler (median with its interval at its real level, n, CV,
ratio to the baseline with its interval), plots with interval whiskers, significance between
platforms of different kinds, and the environment. Which platforms ran, their order, colours and
baseline come from reporting.platforms. The summary also goes out as CSV and LaTeX next to the HTML.
The report reads stored results only; it never parses tool output.
"""

from __future__ import annotations

import html
import json
import math
import os
from pathlib import Path

import pandas as pd

from bench import stats
from bench.dataset import Dataset, load
from bench.results import RunStore
from reporting import isolation, noisy, platforms, plots
from reporting.claims import claims_frame
from reporting.summary import by_host, pairwise_mann_whitney, summary_frame
from runtime.platform import PlatformInfo

CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,sans-serif;margin:2em auto;max-width:1200px;color:#222;
line-height:1.4;padding:0 1em}
h1{margin-bottom:.2em} h2{border-bottom:1px solid #ccc;padding-bottom:.2em;margin-top:1.6em}
table{border-collapse:collapse;margin:.6em 0;font-size:.9em} th,td{border:1px solid #ddd;padding:.25em .6em}
th{background:#f3f3f3;text-align:left} td{font-variant-numeric:tabular-nums}
.banner{padding:.8em 1em;margin:1em 0;border-radius:4px;font-weight:600}
.banner.emulated{background:#fff3cd;border:2px solid #d39e00}
.banner.failed{background:#fde2e1;border:2px solid #c0392b}
.banner.skipped{background:#eef;border:1px solid #77a}
.meta{color:#555;font-size:.9em} pre{background:#f7f7f7;padding:.8em;overflow-x:auto;font-size:.8em}
.plot{margin:.5em 0}
"""


def reports_root() -> Path:
    return Path(os.environ.get("ISOLAB_REPORTS_DIR", "reports"))


def _fmt(value: float, digits: int = 4) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    return f"{value:.{digits}g}"


def platform_banners(env: dict[str, object], infos: dict[str, PlatformInfo]) -> str:
    """A loud banner per emulated platform and per platform that ran with weaker confinement."""
    parts = []
    for info in platforms.emulated(infos):
        reason = html.escape(str(platforms.platform_facts(env, info.name).get("accelerator_reason", "")))
        parts.append(f'<div class="banner emulated">⚠ {html.escape(info.display_name)} ({html.escape(info.name)}): '
                     f'{html.escape(info.mechanism)} — its figures were <em>emulated</em>, not '
                     f'hardware-accelerated. They are NOT hardware-virtualisation (KVM) figures and must not '
                     f'be cited as such. {reason}</div>')
    for name, warning in platforms.confinement_warnings(env).items():
        parts.append(f'<div class="banner emulated">⚠ {html.escape(name)} ran with weaker confinement than '
                     f'its production default: {html.escape(warning)}</div>')
    return "".join(parts)


def _platforms_line(infos: dict[str, PlatformInfo]) -> str:
    """How each platform isolated or accelerated here (from its own description)."""
    labels = [f"{html.escape(i.display_name)} ({html.escape(i.label)})" for i in infos.values()]
    return f'<p class="meta">Platforms as they ran here: {"; ".join(labels)}.</p>' if labels else ""


def _problems_banner(problems: list[str]) -> str:
    """What could not be read from the results directory (bench.dataset), so the reader knows what is missing."""
    if not problems:
        return ""
    items = "".join(f"<li>{html.escape(p)}</li>" for p in problems)
    return f'<div class="banner failed" id="missing">Missing or unreadable results<ul>{items}</ul></div>'


def _outcome_banners(dataset: Dataset) -> str:
    outcomes = {(o.outcome.platform, o.outcome.scenario): o.outcome for o in dataset.outcomes}
    parts = []
    failed = [o for o in outcomes.values() if o.status == "failed"]
    skipped = [o for o in outcomes.values() if o.status == "skipped"]
    noted = [o for o in outcomes.values() if o.status == "ok" and o.reason]
    if failed:
        items = "".join(f"<li>{html.escape(o.platform)} × {html.escape(o.scenario)}: {html.escape(o.reason)} "
                        f"({o.repetitions} repetitions kept)</li>" for o in failed)
        parts.append(f'<div class="banner failed">Failed cells<ul>{items}</ul></div>')
    if skipped:
        items = "".join(f"<li>{html.escape(o.platform)} × {html.escape(o.scenario)}: {html.escape(o.reason)}</li>"
                        for o in skipped)
        parts.append(f'<div class="banner skipped">Skipped cells<ul>{items}</ul></div>')
    if noted:
        items = "".join(f"<li>{html.escape(o.platform)} × {html.escape(o.scenario)}: {html.escape(o.reason)}</li>"
                        for o in noted)
        parts.append(f'<div class="banner skipped">Notes on completed cells<ul>{items}</ul></div>')
    return "".join(parts)


LOWER_IS_BETTER_UNITS = {"s", "ms", "µs", "us", "ns", "MiB", "segments", "fraction of bytes read"}


def lower_is_better(unit: str) -> bool:
    """Times, latencies, memory and disk footprints, retransmits: smaller is better."""
    return unit in LOWER_IS_BETTER_UNITS


def ratio_color(ratio: float, lower_better: bool) -> str:
    """Green where the platform does better than the baseline, red where worse (log scale, ±2x saturates)."""
    if pd.isna(ratio) or ratio <= 0:
        return ""
    score = math.log2(ratio) * (-1 if lower_better else 1)
    red, green, blue = (int(255 * c) for c in matplotlib_cmap(0.5 + max(-1.0, min(1.0, score)) / 2)[:3])
    return f"background-color: #{red:02x}{green:02x}{blue:02x}"


def matplotlib_cmap(x: float) -> tuple[float, ...]:
    from matplotlib import colormaps

    return colormaps["RdYlGn"](x)


def _scenario_table(summary: pd.DataFrame, infos: dict[str, PlatformInfo]) -> str:
    """One row per metric/variant; per platform 'median [CI]' plus n, CV and ratio to the baseline."""
    names = platforms.ordered(infos, summary.platform)
    base = platforms.baseline(infos)
    rows = []
    for (metric, variant, unit), group in summary.groupby(["metric", "variant", "unit"], sort=True):
        row: dict[str, object] = {"metric": metric, "variant": variant, "unit": unit}
        for platform in names:
            match = group[group.platform == platform]
            if match.empty:
                row[f"{platform} median [interval]"] = "–"
                row[f"{platform} n / CV"] = "–"
                continue
            r = match.iloc[0].to_dict()
            median, low, high = _fmt(r["median"]), _fmt(r["ci_low"]), _fmt(r["ci_high"])
            level = stats.format_level(float(r["ci_level"]))
            row[f"{platform} median [interval]"] = f"{median} [{low}–{high}] ({level})"
            row[f"{platform} n / CV"] = f"{int(r['n'])} / {_fmt(100 * r['cv'], 2)}%"
            if base is None or platform == base:
                continue
            row[f"{platform} ÷ {base}"] = r["ratio_to_native"]
            if not math.isnan(r["ratio_ci_low"]):
                row[f"{platform} ÷ {base} interval"] = (f"{r['ratio_ci_low']:.3f}–{r['ratio_ci_high']:.3f} "
                                                       f"({stats.format_level(float(r['ratio_ci_level']))})")
        rows.append(row)
    frame = pd.DataFrame(rows)
    ratio_suffix = f"÷ {base}"
    frame = frame.reindex(columns=[c for c in frame.columns if base is None or not c.endswith(ratio_suffix) or
                                   frame[c].notna().any()])
    ratio_cols = [c for c in frame.columns if base is not None and c.endswith(ratio_suffix)]
    lower_better = frame["unit"].map(lower_is_better)

    def shade(column: pd.Series) -> list[str]:
        return [ratio_color(v, low) for v, low in zip(column, lower_better, strict=True)]

    styler = (frame.style.hide(axis="index").format(na_rep="–")
              .format({c: lambda v: "–" if pd.isna(v) else f"{v:.3f}" for c in ratio_cols})
              .apply(shade, subset=ratio_cols)
              .set_table_attributes('class="summary"'))
    return styler.to_html()


def _env_section(env: dict[str, object]) -> str:
    host = env.get("host", {}) or {}
    cpu = env.get("cpu", {}) or {}
    rows = {
        "host kernel": host.get("kernel"), "OS": host.get("os"), "CPU": cpu.get("model"),
        "logical CPUs": cpu.get("logical_cpus"), "memory": f"{int(env.get('memory_bytes', 0)) / 2**30:.1f} GiB",
        "cgroups": json.dumps(env.get("cgroup")), "image": json.dumps(env.get("image")),
        "isolab revision": json.dumps(env.get("isolab")), "command line": " ".join(env.get("command_line", [])),
        "captured at": env.get("captured_at"),
    }
    table = "".join(f"<tr><th>{html.escape(k)}</th><td>{html.escape(str(v))}</td></tr>" for k, v in rows.items())
    full = html.escape(json.dumps(env, indent=2, sort_keys=True))
    return (f"<table>{table}</table><details><summary>full env.json</summary><pre>{full}</pre></details>")


def _repetitions_text(config: dict[str, object]) -> str:
    reps, cap = config.get("reps"), config.get("max_reps", config.get("reps"))
    own = {s: n for s, n in (config.get("reps_per_scenario") or {}).items() if n != reps}  # type: ignore[union-attr]
    if own:
        reps = f"{reps} ({', '.join(f'{s}: {n}' for s, n in own.items())})"
    if cap == config.get("reps"):
        return f"{reps} repetitions per cell"
    target = 100 * float(config.get("cv_target", 0.05))  # type: ignore[arg-type]
    return f"{reps} to {cap} repetitions per cell (extended while CV &gt; {target:.0f}%)"


def build(source: RunStore | Dataset | Path, out_dir: Path | None = None) -> Path:
    """The report of a run or merged dataset; what cannot be read is listed in the report, not raised."""
    out_dir = out_dir or reports_root()
    out_dir.mkdir(parents=True, exist_ok=True)
    data = source if isinstance(source, Dataset) else load(source.path if isinstance(source, RunStore) else source)
    env, info, samples = data.env, data.info, data.samples
    config = info.get("config") if isinstance(info.get("config"), dict) else {}
    infos = platforms.platform_infos(data.platforms_env,
                                     [*config.get("platforms", []), *sorted({s.platform for s in samples})])
    base = platforms.baseline(infos)
    magnitudes = [s for s in samples if not isolation.is_boolean(s.unit)]  # yes/no answers: the matrix only
    summary = summary_frame(magnitudes, base, data.hosts) if magnitudes else pd.DataFrame()
    parts = [f"<h1>isolab report — run {html.escape(data.name)}</h1>",
             f'<p class="meta">profile {html.escape(str(config.get("profile")))}, '
             f'{_repetitions_text(config)}, '
             f'platforms {", ".join(config.get("platforms", []))}, '
             f'scenarios {", ".join(config.get("scenarios", []))}; run status: '
             f'{html.escape(str(info.get("status")))}; started {info.get("started_at")}, '
             f'finished {info.get("finished_at", "–")}</p>',
             _problems_banner(data.problems), _platforms_line(infos), platform_banners(env, infos),
             _outcome_banners(data)]
    if summary.empty:
        parts.append("<p>No samples were measured in this run.</p>")
    else:
        base_name = html.escape(base or "a baseline")
        parts.append(f"<p class=\"meta\">Each cell: median of the repetitions with an interval of the median at "
                     f"its real confidence level (distribution-free order-statistic interval: n = 3 gives 75 %, "
                     f"n = 6 96.875 %), n repetitions and coefficient of variation; ratio to {base_name} is the "
                     f"ratio of medians with an interval at its real level (higher-is-better metrics: &lt;1 means "
                     f"slower than {base_name}; "
                     f"for times and latencies &gt;1 means slower). The baseline has only the host's network "
                     f"stack, so every network mode is compared with its host network.</p>")
        claims = claims_frame(summary, infos, samples, data.hosts)
        parts.append("<h2>claims: the literature next to this host</h2>")
        parts.append(claims.style.hide(axis="index").to_html())
        if summary["host"].nunique() > 1:  # a fleet: one column per host × platform, hosts never pooled
            parts.append(f"<p class=\"meta\">Hosts: {html.escape(', '.join(sorted(set(summary.host))))}. "
                         "Each platform is shown per host; ratios compare platforms on the same host.</p>")
            summary, infos = by_host(summary, infos)
        for scenario, group in summary.groupby("scenario", sort=True):
            parts.append(f"<h2>{html.escape(str(scenario))}</h2>")
            parts.append(_scenario_table(group, infos))
            for (metric, unit), metric_group in group.groupby(["metric", "unit"], sort=True):
                parts.append(f'<div class="plot">{plots.medians_with_ci(metric_group, metric, unit, infos)}</div>')
        versus = pairwise_mann_whitney(magnitudes, platforms.contrasting_pairs(infos), data.hosts)
        if not versus.empty:
            parts.append("<h2>platforms of different kinds, pairwise (Mann-Whitney U, two-sided)</h2>")
            parts.append(versus.style.hide(axis="index").format(precision=4).to_html())
        summary.to_csv(out_dir / f"{data.name}.csv", index=False)
        (out_dir / f"{data.name}.tex").write_text(
            summary.drop(columns=["ci_method", "ratio_ci_method", "ratio_note", "ratio_to_native"], errors="ignore")
            .style.hide(axis="index").format(precision=4).to_latex(hrules=True))
    parts.append(isolation.section(samples, data.path, infos))
    parts.append(noisy.section(samples, data.path, infos))
    parts.append("<h2>environment</h2>" + _env_section(env))
    document = (f"<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>isolab {data.name}"
                f"</title><style>{CSS}</style></head><body>{''.join(parts)}</body></html>")
    target = out_dir / f"{data.name}.html"
    tmp = target.with_suffix(".html.tmp")
    tmp.write_text(document, encoding="utf-8")
    tmp.replace(target)
    return target
