"""Build `reports/<run-id>.html`, one self-contained page (inline CSS, figures as data URIs) that works
offline, and `reports/<run-id>/` beside it: every figure as SVG and PNG, every table as CSV and LaTeX.

This module gathers the run (stored results only; it never parses tool output) into a context and
renders templates/report.html.j2 with jinja2 (autoescaped). Sections, top to bottom: banners (emulated
platforms, failed and skipped cells), the summary (cost per area, headline numbers, a generated
sentence, a figure), the claims table, one section per scenario (long-format table and figures),
pairwise tests when the statistics provide them, the environment, and the list of exported files.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path

import jinja2
import markupsafe
import pandas as pd

from bench.dataset import Dataset, Outcome, load
from bench.results import RunStore
from reporting import (
    calibration,
    colour,
    drift,
    export,
    formatting,
    isolation,
    noisy,
    overview,
    platforms,
    plots,
    reproduction,
    startup,
    storage,
    tables,
)
from reporting.claims import claims_frame
from reporting.summary import by_host, pairwise_mann_whitney, samples_frame, summary_frame
from runtime.platform import PlatformInfo

TEMPLATES = Path(__file__).parent / "templates"
HEADLINES = (("startup_ready_s", "start time"), ("idle_pss_mib", "idle memory per instance"))
PHASE_METRIC_HINT = "phase="  # variants of a start-phase metric are `phase=<name>`


def reports_root() -> Path:
    return Path(os.environ.get("ISOLAB_REPORTS_DIR", "reports"))


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES), autoescape=True,
                             undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    env.filters["value"] = formatting.value
    env.filters["ratio"] = formatting.ratio
    return env


def banners(env: Mapping[str, object], views: list[PlatformInfo]) -> list[dict[str, str]]:
    """A loud banner per emulated platform, per platform with weaker confinement than its production
    default, and per platform that was not available; a quiet one per hardware-accelerated platform."""
    out = []
    for view in views:
        facts = platforms.platform_facts(env, view.name)
        if facts and not facts.get("available", True):
            out.append({"kind": "skipped", "text": f"{view.label} not measured: {facts.get('reason', 'unavailable')}"})
            continue
        reason = str(facts.get("accelerator_reason", "") or "")
        if view.emulated:
            out.append({"kind": "emulated", "platform": f"{view.display_name} ({view.label})", "reason": reason})
        elif facts.get("accelerator"):
            out.append({"kind": "hardware", "text": f"{view.display_name} ({view.label}): accelerator "
                                                    f"{str(facts['accelerator']).upper()} (hardware virtualization). "
                                                    f"{reason}"})
    label = {v.name: v.label for v in views}
    for name, warning in platforms.confinement_warnings(env).items():
        out.append({"kind": "confinement", "text": f"⚠ {label.get(name, name)} ran with weaker confinement than "
                                                   f"its production default: {warning}"})
    return out


def gap_reasons(outcomes: list[Outcome], measured: set[tuple[str, str]], merged: bool) -> dict[tuple[str, str], str]:
    """(platform, scenario) -> why it has no numbers: its failed/skipped outcome's reason. A cell another run
    of a merged dataset did measure is not a gap (its failures still show in the banner, with their run)."""
    reasons: dict[tuple[str, str], list[str]] = {}
    for o in outcomes:
        cell = (o.outcome.platform, o.outcome.scenario)
        if o.outcome.status in ("failed", "skipped") and cell not in measured:
            where = f" (run {o.run_id})" if merged else ""
            reasons.setdefault(cell, []).append(f"{o.outcome.status}{where}: {o.outcome.reason}")
    return {cell: " / ".join(texts) for cell, texts in reasons.items()}


def _repetitions_text(config: Mapping[str, object]) -> str:
    reps, cap = config.get("reps"), config.get("max_reps", config.get("reps"))
    if isinstance(reps, list):  # a merged dataset: the repetitions of each run
        return f"{' / '.join(str(r) for r in reps) or formatting.MISSING} repetitions per cell (per run)"
    own = {s: n for s, n in (config.get("reps_per_scenario") or {}).items() if n != reps}  # type: ignore[union-attr]
    if own:
        reps = f"{reps} ({', '.join(f'{s}: {n}' for s, n in own.items())})"
    if cap == config.get("reps"):
        return f"{reps} repetitions per cell"
    target = 100 * float(config.get("cv_target", 0.05))  # type: ignore[arg-type]
    return f"{reps} to {cap} repetitions per cell (extended while CV > {target:.0f} %)"


def _frame_table(frame: pd.DataFrame) -> dict[str, object]:
    """A generic DataFrame as header + formatted rows (numbers per formatting, missing as an em dash)."""
    def cell(v: object) -> str:
        if isinstance(v, str):
            return v
        if isinstance(v, bool):
            return "yes" if v else "no"
        return formatting.number(v) if not formatting.is_missing(v) else formatting.MISSING
    return {"header": [str(c) for c in frame.columns],
            "rows": [[cell(v) for v in row] for row in frame.itertuples(index=False)]}


CLAIM_MAIN = ("id", "claim", "platform", "test", "this host", "verdict")
CLAIM_DETAIL = ("source", "published", "setting", "why")


def _claims_view(claims: pd.DataFrame) -> dict[str, object] | None:
    """The claims table, narrow enough to read: the claim with its source, platform, test, this host's figure and
    the verdict as columns; what the literature published and in which setting folded under each claim."""
    if claims.empty:
        return None
    if not set(CLAIM_MAIN) <= set(claims.columns):
        return {"generic": _frame_table(claims)}
    rows = []
    for record in claims.to_dict("records"):
        detail = [(k, str(record[k])) for k in CLAIM_DETAIL if k in record and str(record[k]).strip()]
        rows.append({**{k: str(record[k]) for k in CLAIM_MAIN}, "detail": detail,
                     "verdict_class": str(record["verdict"]).split(" ")[0].strip("(").lower()})
    return {"rows": rows}


def _env_rows(env: Mapping[str, object]) -> list[tuple[str, str]]:
    host = env.get("host", {}) or {}
    cpu = env.get("cpu", {}) or {}
    memory = env.get("memory_bytes")
    return [
        ("host kernel", str(host.get("kernel", formatting.MISSING))),  # type: ignore[union-attr]
        ("OS", str(host.get("os", formatting.MISSING))),  # type: ignore[union-attr]
        ("CPU", str(cpu.get("model", formatting.MISSING))),  # type: ignore[union-attr]
        ("logical CPUs", str(cpu.get("logical_cpus", formatting.MISSING))),  # type: ignore[union-attr]
        ("memory", f"{int(memory) / 2**30:.1f} GiB" if memory else formatting.MISSING),  # type: ignore[call-overload]
        ("cgroups", json.dumps(env.get("cgroup"))), ("image", json.dumps(env.get("image"))),
        ("isolab revision", json.dumps(env.get("isolab"))),
        ("command line", " ".join(env.get("command_line", []) or [])),  # type: ignore[arg-type]
        ("captured at", str(env.get("captured_at", formatting.MISSING))),
    ]


def _overview_cell(r: overview.AreaRow) -> dict[str, str]:
    c = r.cost
    span = formatting.COLOUR_RATIO_SPAN
    colourable = 1 / span <= c.point <= span and not (c.low <= 1 <= c.high)
    left_out = "; ".join(dict.fromkeys(r.metrics_left_out))
    return {"cost": formatting.ratio(c.point) + "×",
            "interval": f"{formatting.ratio(c.low)}–{formatting.ratio(c.high)}",
            "level": c.label, "style": colour.cell_style(c.point) if colourable else "",
            "title": f"{c.label}, {c.method}; {r.metrics_used} metric(s) used"
                     + (f"; left out: {left_out}" if left_out else "")}


def _overview_matrix(rows: list[overview.AreaRow], areas: list[str], views: list[PlatformInfo]) -> dict[str, object]:
    """One row per area, one column pair (cost, interval) per compared platform; a gap says why."""
    compared = [v for v in views if not v.baseline and any(r.platform.name == v.name for r in rows)]
    matrix = []
    for area in areas:
        cells = []
        for view in compared:
            row = next((r for r in rows if r.area == area and r.platform.name == view.name), None)
            cells.append(_overview_cell(row) if row else None)
        if any(cells):
            levels = sorted({c["level"] for c in cells if c})
            matrix.append({"area": area, "cells": cells, "levels": ", ".join(levels)})
    return {"platforms": [v.label for v in compared], "rows": matrix}


def _headline(h: overview.Headline) -> dict[str, str]:
    median, unit = formatting.scaled(h.median, h.unit)
    low, _ = formatting.scaled(h.interval.low, h.unit, h.median)
    high, _ = formatting.scaled(h.interval.high, h.unit, h.median)
    return {"platform": h.platform.label, "label": h.label, "median": median, "unit": unit,
            "interval": f"{low}–{high}", "level": h.interval.label}


def _scenario_figures(samples: pd.DataFrame, scenario: str, platforms: list[PlatformInfo],
                      figures_dir: Path) -> list[plots.Figure]:
    rows = samples[samples.scenario == scenario]
    figures: list[plots.Figure] = []
    metrics = list(dict.fromkeys(rows["metric"]))
    percentile_groups = plots.percentile_metrics(metrics)
    in_percentile_plots = {m for series in percentile_groups.values() for _, m in series}
    for metric in metrics:
        if metric in in_percentile_plots:
            continue  # drawn in the percentile figure below
        mine = rows[rows.metric == metric]
        variants = list(dict.fromkeys(mine["variant"]))
        if all(v.startswith(PHASE_METRIC_HINT) for v in variants):
            figure = plots.phases_figure(samples, scenario, metric, platforms, figures_dir)
        else:
            for unit in dict.fromkeys(mine["unit"]):
                figures.append(plots.metric_figure(samples, scenario, metric, str(unit), platforms, figures_dir))
            figure = None
            if metric.endswith("_ready_s") and metric not in startup.START_METRICS:  # a start time: its CDF
                figure = plots.cdf_figure(samples, scenario, metric, platforms, figures_dir)
        if figure is not None:
            figures.append(figure)
    for prefix, series in percentile_groups.items():
        figure = plots.percentiles_figure(samples, scenario, prefix, series, platforms, figures_dir)
        if figure is not None:
            figures.append(figure)
    return figures


def build(source: RunStore | Dataset | Path, out_dir: Path | None = None) -> Path:
    """The report of a run or merged dataset (bench.dataset); what cannot be read is listed, not raised."""
    out_dir = out_dir or reports_root()
    out_dir.mkdir(parents=True, exist_ok=True)
    data = source if isinstance(source, Dataset) else load(source.path if isinstance(source, RunStore) else source)
    run_dir = out_dir / data.name
    figures_dir, tables_dir = run_dir / "figures", run_dir / "tables"
    env, info = data.env, data.info
    config: Mapping[str, object] = info.get("config") if isinstance(info.get("config"), dict) else {}  # type: ignore[assignment]
    samples_list = data.samples
    magnitudes = [s for s in samples_list if not isolation.is_boolean(s.unit)]  # yes/no answers: the matrix only
    outcomes = [o.outcome for o in data.outcomes]
    samples = samples_frame(magnitudes, data.hosts)
    seen = sorted({s.platform for s in samples_list} | {o.platform for o in outcomes})
    infos = platforms.platform_infos(data.platforms_env, [*(config.get("platforms", []) or []), *seen])  # type: ignore[list-item]
    baseline_name = platforms.baseline(infos)
    summary = summary_frame(magnitudes, baseline_name, data.hosts) if magnitudes else pd.DataFrame()
    hosts = sorted(set(summary["host"])) if not summary.empty else []
    shown_infos = dict(infos)
    plain_summary = summary
    if len(hosts) > 1:  # a fleet: every host × platform is a platform of its own; hosts are never pooled
        summary, shown_infos = by_host(summary, infos)
        samples = samples.assign(platform=[f"{p} @ {h}" if h else p
                                           for p, h in zip(samples.platform, samples.host, strict=True)])
    views = sorted(shown_infos.values(), key=lambda i: not i.baseline)  # baseline first, then the run's order
    baseline = next((v for v in views if v.baseline), None)
    reasons = gap_reasons(data.outcomes, {(s.platform, s.scenario) for s in magnitudes}, data.merged)
    every_failure = gap_reasons(data.outcomes, set(), data.merged)  # partly measured cells too, for the notes
    metric_order = list(dict.fromkeys(samples["metric"]))
    answers_only = {s.scenario for s in samples_list if isolation.is_boolean(s.unit)} - set(samples["scenario"])
    scenario_order = [s for s in dict.fromkeys([*(config.get("scenarios", []) or []), *samples["scenario"]])  # type: ignore[list-item]
                      if s not in answers_only]  # yes/no scenarios: the isolation matrix, not a table

    csv_files: list[Path] = []
    tex_files: list[Path] = []
    sections = []
    for scenario in scenario_order:
        long = tables.long_table(summary, scenario, views, metric_order, reasons)
        section: dict[str, object] = {"name": scenario, "id": f"section-{scenario}",
                                      "reason": "; ".join(f"{p.label}: {every_failure[(p.name, scenario)]}"
                                                          for p in views if (p.name, scenario) in every_failure),
                                      "variant_notes": tables.variant_gaps(summary, scenario, views, reasons),
                                      "comparison": ""}
        if long.empty:
            section.update(rows=[], figures=[])
            sections.append(section)
            continue
        csv_files.append(export.write_csv(long, tables_dir / f"{scenario}.csv"))
        display = tables.display_rows(long, views)
        tex_rows = [[r.metric, r.variant, r.platform.label, r.unit, r.cells["median"].text,
                     r.cells["interval"].text, r.cells["level"].text, r.cells["n"].text, r.cells["ratio"].text,
                     r.cells["ratio interval"].text] if not r.cells["median"].missing else
                    [r.metric, r.variant, r.platform.label, r.unit, formatting.MISSING,
                     r.cells["median"].title.split(":")[0], "", "", "", ""]  # failed / skipped (run): see the CSV
                    for r in display]
        tex_files.append(export.write_latex(export.latex_table(
            ["metric", "variant", "platform", "unit", "median", "interval", "level", "n", "ratio", "ratio interval"],
            tex_rows, f"{scenario}: median, interval with its level, ratio to the baseline", scenario),
            tables_dir / f"{scenario}.tex"))
        section.update(rows=display, figures=_scenario_figures(samples, scenario, views, figures_dir))
        compared = startup.comparison(summary, samples, scenario, views, figures_dir, tables_dir)
        if compared is not None:  # start times side by side (built escaped by reporting.startup)
            section["comparison"] = markupsafe.Markup(compared.html)
            csv_files.append(compared.csv)
            tex_files.append(compared.tex)
        sections.append(section)

    area_rows = overview.area_costs(samples, views)
    areas = list(dict.fromkeys(overview.area_of(s) for s in scenario_order))
    headlines = overview.headline_numbers(samples, views, HEADLINES)
    isolation_html = (isolation.section(samples_list, data.path, infos) + noisy.section(samples_list, data.path, infos)
                      + isolation.limits_section(samples_list, data.path, infos))
    drift_html = drift.section(samples_list, data.path, infos, figures_dir)
    storage_html = storage.section(magnitudes, data.platforms_env.get("platforms", {}), infos)  # type: ignore[arg-type]
    protects = overview.isolation_counts(samples_list, list(infos.values()))
    overview_table = _overview_matrix(area_rows, areas, views)
    overview_figure = plots.overview_figure(area_rows, areas, views, figures_dir) if area_rows else None
    if area_rows:
        frame = pd.DataFrame([{"area": r.area, "platform": r.platform.name, "platform_label": r.platform.label,
                               "cost_ratio": r.cost.point, "interval_low": r.cost.low, "interval_high": r.cost.high,
                               "interval_level": r.cost.level, "interval_method": r.cost.method, "n": r.cost.n,
                               "metrics_used": r.metrics_used} for r in area_rows])
        csv_files.insert(0, export.write_csv(frame, tables_dir / "summary.csv"))
        tex_files.insert(0, export.write_latex(export.latex_table(
            ["area", "platform", "cost ratio", "interval", "level", "metrics"],
            [[r.area, r.platform.label, formatting.ratio(r.cost.point) + "×",
              f"{formatting.ratio(r.cost.low)}–{formatting.ratio(r.cost.high)}", r.cost.label, r.metrics_used]
             for r in area_rows],
            "Cost per area: geometric mean of direction-normalised ratios to the baseline (> 1 costs more)",
            "summary"), tables_dir / "summary.tex"))

    claims = claims_frame(plain_summary, infos, magnitudes, data.hosts) if magnitudes else pd.DataFrame()
    reproduction_html, reproduced = reproduction.section(config.get("profile"), plain_summary, infos,
                                                             magnitudes, data.hosts)
    if not reproduced.empty:
        csv_files.append(export.write_csv(reproduced, tables_dir / "reproduction.csv"))
    versus = pairwise_mann_whitney(magnitudes, platforms.contrasting_pairs(infos), data.hosts) \
        if magnitudes else pd.DataFrame()
    if not versus.empty:
        versus = versus.assign(platform_a=versus["platform_a"].map(lambda n: infos[n].label if n in infos else n),
                               platform_b=versus["platform_b"].map(lambda n: infos[n].label if n in infos else n))
        csv_files.append(export.write_csv(versus, tables_dir / "pairwise.csv"))
        shown = _frame_table(versus.drop(columns=["host"], errors="ignore"))
        tex_files.append(export.write_latex(export.latex_table(
            shown["header"], shown["rows"], "Platforms of different kinds, pairwise (Mann-Whitney U, two-sided, "  # type: ignore[arg-type]
            "on one value per repetition)", "pairwise"), tables_dir / "pairwise.tex"))
    if headlines:
        frame = pd.DataFrame([{"platform": h.platform.name, "platform_label": h.platform.label, "figure": h.label,
                               "metric": h.metric, "median": h.median, "unit": h.unit, "interval_low": h.interval.low,
                               "interval_high": h.interval.high, "interval_level": h.interval.level,
                               "interval_method": h.interval.method, "n": h.interval.n} for h in headlines])
        csv_files.append(export.write_csv(frame, tables_dir / "headlines.csv"))
        tex_files.append(export.write_latex(export.latex_table(
            ["platform", "figure", "median", "unit", "interval", "level"],
            [[h["platform"], h["label"], h["median"], h["unit"], h["interval"], h["level"]]
             for h in map(_headline, headlines)], "Headline figures per platform", "headlines"),
            tables_dir / "headlines.tex"))
    calibrated = calibration.comparisons(magnitudes, infos, data.hosts)
    if calibrated:
        csv_files.append(export.write_csv(calibration.frame(calibrated), tables_dir / "calibration.csv"))
        tex_files.append(export.write_latex(export.latex_table(
            calibration.LATEX_HEADER, calibration.latex_rows(calibrated),
            "Calibration: ours divided by each reference runtime, with the interval at its real level",
            "calibration"), tables_dir / "calibration.tex"))
    if not claims.empty:
        csv_files.append(export.write_csv(claims, tables_dir / "claims.csv"))
        tex_files.append(export.write_latex(export.latex_table(
            list(claims.columns), claims.astype(str).values.tolist(), "Claims from the literature and this host",
            "claims"), tables_dir / "claims.tex"))
    if tex_files:
        tex_files_doc = export.write_document(tex_files, tables_dir / "report-tables.tex",
                                              f"isolab run {data.name}")
    else:
        tex_files_doc = None

    def where(o: Outcome) -> str:
        return f"{o.outcome.scenario} (run {o.run_id})" if data.merged else o.outcome.scenario

    failed = [(o, where(o)) for o in data.outcomes if o.outcome.status == "failed"]
    skipped = [(o, where(o)) for o in data.outcomes if o.outcome.status == "skipped"]
    noted = [(o, where(o)) for o in data.outcomes if o.outcome.status == "ok" and o.outcome.reason]
    label = {v.name: v.label for v in views}
    context = {
        "run_id": data.name,
        "profile": config.get("profile", formatting.MISSING),
        "repetitions": _repetitions_text(config),
        "platforms": views,
        "scenarios": scenario_order,
        "status": info.get("status", formatting.MISSING),
        "started": info.get("started_at", formatting.MISSING),
        "finished": info.get("finished_at", formatting.MISSING),
        "banners": banners(data.platforms_env, views),
        "problems": data.problems,
        "failed": [(label.get(o.outcome.platform, o.outcome.platform), at, o.outcome.reason, o.outcome.repetitions)
                   for o, at in failed],
        "skipped": [(label.get(o.outcome.platform, o.outcome.platform), at, o.outcome.reason) for o, at in skipped],
        "noted": [(label.get(o.outcome.platform, o.outcome.platform), at, o.outcome.reason) for o, at in noted],
        "has_samples": not samples.empty,
        "overview": overview_table,
        "overview_figure": overview_figure,
        "sentence": overview.sentence(area_rows, headlines, views, protects),
        "protects": protects,
        "hosts": hosts,
        "isolation_html": markupsafe.Markup(isolation_html),  # built escaped by reporting.isolation and .noisy
        "drift_html": markupsafe.Markup(drift_html),  # built escaped by reporting.drift
        "storage_html": markupsafe.Markup(storage_html),  # built escaped by reporting.storage
        "headlines": [_headline(h) for h in headlines],
        "baseline": baseline,
        "claims": _claims_view(claims),
        "calibration": calibration.view(calibrated),
        "reproduction_html": markupsafe.Markup(reproduction_html),  # built escaped by reporting.reproduction
        "pairwise": _frame_table(versus.drop(columns=["host"], errors="ignore")) if not versus.empty else None,
        "sections": sections,
        "columns": tables.DISPLAY_COLUMNS,
        "environment": _env_rows(env),
        "env_json": json.dumps(env, indent=2, sort_keys=True, default=str),
        "exports": sorted(str(p.relative_to(out_dir)) for p in [*csv_files, *tex_files,
                                                                 *([tex_files_doc] if tex_files_doc else [])]),
        "figure_files": sorted(str(p.relative_to(out_dir)) for p in figures_dir.glob("*")) if figures_dir.is_dir()
        else [],
        "missing": formatting.MISSING,
    }
    document = _environment().get_template("report.html.j2").render(**context)
    target = out_dir / f"{data.name}.html"
    tmp = target.with_suffix(".html.tmp")
    tmp.write_text(document, encoding="utf-8")
    tmp.replace(target)
    return target
