"""The reproduction section: a study profile's paper table, row by row, beside this host's figures.

For a run of a study profile (bench.studies, e.g. `--profile felter2015`) each row of the study names a
claim of the registry (reporting/claims.yaml: the published figures, their source, the ratio the paper
reported and the test of it), measured where the profile says (scenario, metric, variant). Per row and
per platform of the claim's kind that ran: the paper's figures and ratio; this host's baseline and
platform medians with their intervals at their real level and n (for a claim against a reference variant,
e.g. a noisy neighbour's victim alone, that variant's median stands where the baseline's would, and the
ratio is also given as the % degradation that study reports, positive = worse); the measured ratio with
its interval;
a verdict:
  reproduced        the ratio's interval passes the claim's test (reporting.claims.judge: inside the band,
                    or wholly on the claimed side of 1)
  not reproduced    the interval lies wholly outside the band, or on the other side of 1
  inconclusive      the interval overlaps the band's edge (or 1): more repetitions may decide
  not testable here with why: the platform is emulated (the paper's guests ran under KVM), the row needs
                    two hosts or a NIC, no platform of its kind ran, nothing was measured, or no platform
                    of this suite can run it (the row's `untestable`)
Below 95 % a verdict names the level its interval reached. A row whose scenario runs with fields the
profile scales (its `scaled` list) or with a differing setting (`differs`) is marked "setting differs",
with the fields; the scaled fields and their reasons are printed above the table.
"""

from __future__ import annotations

import dataclasses
import html
import math
from collections.abc import Mapping

import pandas as pd

from bench import stats, studies
from bench.results import SampleRecord
from reporting import platforms as platform_infos
from reporting.claims import CONTRADICTED, INCONCLUSIVE, SUPPORTED, Claim, judge, load_claims, versus_variant
from reporting.summary import baseline_variant_candidates, samples_frame
from runtime.platform import PlatformInfo

REPRODUCED, NOT_REPRODUCED, NOT_TESTABLE = "reproduced", "not reproduced", "not testable here"
_VERDICTS = {SUPPORTED: REPRODUCED, CONTRADICTED: NOT_REPRODUCED, INCONCLUSIVE: "inconclusive"}
COLUMNS = ["row", "claim", "platform", "paper", "paper ratio", "baseline here", "platform here", "ratio here",
           "verdict", "why", "setting differs", "source"]


def _verdict(judged: str) -> str:
    """reporting.claims' verdict in the reproduction's words, keeping its level qualifier."""
    head, sep, tail = judged.partition(" (")
    return _VERDICTS.get(head, head) + (f" ({tail}" if sep else "")


def paper_ratio(claim: Claim) -> float | None:
    published = claim.published.get("ratio")
    if isinstance(published, int | float):
        return float(published)
    if claim.test.get("type") == "ratio_within":
        return float(claim.test["expect"])  # type: ignore[arg-type]
    return None


def _figure(row: pd.Series | None) -> str:
    if row is None:
        return "not measured"
    if not row["ci_level"] or math.isnan(float(row["ci_low"])):
        return f"{row['median']:.4g} {row['unit']} [no interval], n = {int(row['n'])}"
    return (f"{row['median']:.4g} {row['unit']} [{row['ci_low']:.4g}–{row['ci_high']:.4g}, "
            f"{stats.format_level(float(row['ci_level']))}], n = {int(row['n'])}")


def _ratio(row: pd.Series) -> stats.Ratio:
    return stats.Ratio(float(row["ratio_to_baseline"]),
                       stats.Interval(float(row["ratio_ci_low"]), float(row["ratio_ci_high"]),
                                      float(row["ratio_ci_level"]), str(row["ratio_ci_method"])),
                       str(row.get("ratio_note") or ""))


def _ratio_text(change: stats.Ratio) -> str:
    if math.isnan(change.point):
        return "–"
    iv = change.interval
    return (f"{change.point:.3f} [{iv.low:.3f}–{iv.high:.3f}, {stats.format_level(iv.level)}]" if iv.defined
            else f"{change.point:.3f} [no interval]")


def _degradation(change: stats.Ratio, better: str) -> str:
    """The ratio as the Isolation Benchmark Suite reports it: % degradation (positive = worse)."""
    if math.isnan(change.point):
        return ""
    sign = -1.0 if better == "higher" else 1.0
    points = sorted(100 * sign * (v - 1) + 0.0 for v in (change.point, change.interval.low, change.interval.high)
                    if not math.isnan(v))  # (+ 0.0: no change prints as 0.0, not -0.0)
    middle = 100 * sign * (change.point - 1) + 0.0
    span = f" [{points[0]:.1f}–{points[-1]:.1f}]" if change.interval.defined else ""
    return f"; degradation {middle:.1f} %{span}"


def _pairs(variant: str, wanted: Mapping[str, object]) -> bool:
    pairs = dict(part.split("=", 1) for part in variant.split(",") if "=" in part)
    return all(pairs.get(str(k)) == str(v) for k, v in wanted.items())


def _differs(study: studies.Study, row: studies.Row, scenario: str) -> str:
    fields = [s.field for s in study.scaled_for(scenario)]
    parts = [f"scaled: {', '.join(fields)}"] if fields else []
    if row.differs:
        parts.append(row.differs)
    return "; ".join(parts)


def _claim_for(row: studies.Row, registry: Mapping[str, Claim]) -> Claim | None:
    claim = registry.get(row.claim)
    if claim is None:
        return None
    changes: dict[str, object] = {k: v for k, v in (("scenario", row.scenario), ("metric", row.metric),
                                                      ("variant", row.variant)) if v is not None}
    if row.note or row.scenario or row.metric:  # the claim's own note describes its own measurement
        changes["note"] = row.note
    return dataclasses.replace(claim, **changes)  # type: ignore[arg-type]


def _untestable(why: str) -> str:
    """'not testable here', qualified by the head of the reason when there is one: '(emulated)'."""
    return f"{NOT_TESTABLE} ({why.split(':')[0]})" if why else NOT_TESTABLE


def _why_untestable(claim: Claim, info: PlatformInfo) -> str:
    if info.emulated and not info.baseline:
        return f"emulated: {info.display_name} runs under {info.mechanism}; the paper's guests ran under KVM"
    if "nic" in claim.needs or "two_hosts" in claim.needs:
        return "needs a NIC-bound link between two hosts (this suite's traffic stays on one host)"
    return ""


def rows_frame(study: studies.Study, summary: pd.DataFrame, infos: dict[str, PlatformInfo],
               registry: list[Claim] | None = None, samples: list[SampleRecord] | None = None,
               hosts: Mapping[str, str] | None = None) -> pd.DataFrame:
    """One record per study row and platform of the row's kind that ran (COLUMNS). `samples` (and `hosts`,
    run_id -> host) are needed for rows whose claim compares a platform with itself at a reference variant."""
    claims = {c.id: c for c in (load_claims() if registry is None else registry)}
    frame = samples_frame(samples or [], hosts)
    base = platform_infos.baseline(infos)
    records: list[dict[str, object]] = []
    for row in study.rows:
        claim = _claim_for(row, claims)
        if claim is None:
            records.append({"row": row.label, "claim": row.claim, "platform": "–", "verdict": NOT_TESTABLE,
                            "why": f"claim {row.claim} is not in the claims registry"})
            continue
        common = {"row": row.label, "claim": claim.id, "source": claim.citation,
                  "paper": ", ".join(f"{k} {v}" for k, v in claim.published.items() if k != "ratio"),
                  "paper ratio": "–" if paper_ratio(claim) is None else f"{paper_ratio(claim):g}",
                  "setting differs": _differs(study, row, claim.scenario)}
        if row.untestable:
            records.append({**common, "platform": f"({claim.kind})", "verdict": NOT_TESTABLE, "why": row.untestable})
            continue
        candidates = [i for i in infos.values() if i.kind == claim.kind and not i.baseline]
        if not candidates:
            records.append({**common, "platform": f"({claim.kind}: none ran)", "verdict": NOT_TESTABLE,
                            "why": f"no {claim.kind} platform in this run"})
            continue
        for info in candidates:
            records.append({**common, **_measured(claim, info, base, summary, frame)})
    table = pd.DataFrame(records)
    return table.reindex(columns=COLUMNS).fillna("–") if not table.empty else table


def _rows_of(summary: pd.DataFrame, platform: str | None, claim: Claim) -> pd.DataFrame:
    if summary.empty or platform is None:
        return summary.iloc[0:0]
    rows = summary[(summary.platform == platform) & (summary.scenario == claim.scenario)
                   & (summary.metric == claim.metric)]
    if rows.empty:  # (a map over no rows is not a boolean mask)
        return rows
    return rows[rows.variant.map(claim.matches).astype(bool)].sort_values("variant")


def _measured(claim: Claim, info: PlatformInfo, base: str | None, summary: pd.DataFrame,
              frame: pd.DataFrame) -> dict[str, object]:
    if claim.versus not in ("baseline", "variant"):
        return {"platform": info.label, "verdict": NOT_TESTABLE,
                "why": f"claim {claim.id} is a ratio against {claim.versus}; rows compare with the baseline"}
    why = _why_untestable(claim, info)
    rows = _rows_of(summary, info.name, claim)
    if rows.empty:
        wanted = ",".join(f"{k}={v}" for k, v in claim.variant.items()) or "any variant"
        return {"platform": info.label, "platform here": "not measured", "verdict": _untestable(why),
                "why": why or f"{claim.scenario} {claim.metric} [{wanted}] was not measured on {info.label}"}
    row = rows.iloc[0]
    baseline = None
    if claim.versus == "variant":  # the same platform at the reference variant (e.g. the victim alone)
        wanted = {**claim.variant, **claim.reference}
        mine = summary[(summary.platform == info.name) & (summary.scenario == claim.scenario)
                       & (summary.metric == claim.metric)]
        found = mine[mine.variant.map(lambda v: _pairs(v, wanted)).astype(bool)] if not mine.empty else mine
        baseline = found.iloc[0] if not found.empty else None
        change = versus_variant(claim, info, frame, str(row.get("host", "")), str(row["variant"]))
        text = _ratio_text(change) + _degradation(change, str(row.get("direction") or "higher"))
    elif base is not None and not summary.empty:
        theirs = summary[(summary.platform == base) & (summary.scenario == claim.scenario)
                         & (summary.metric == claim.metric)]
        for candidate in baseline_variant_candidates(str(row["variant"])):
            found = theirs[theirs.variant == candidate]
            if not found.empty:
                baseline = found.iloc[0]
                break
    if claim.versus != "variant":
        change = _ratio(row)
        text = _ratio_text(change)
    if why:
        verdict = _untestable(why)
    elif math.isnan(change.point):
        verdict, why = NOT_TESTABLE, change.note or "the baseline has no such measurement"
    else:
        verdict, why = _verdict(judge(claim, change)), claim.note
    return {"platform": info.label, "baseline here": _figure(baseline), "platform here": _figure(row),
            "ratio here": text, "verdict": verdict, "why": why}


def _scaled_table(study: studies.Study) -> str:
    if not study.scaled:
        return "<p>No field differs from the paper's.</p>"
    body = "".join(f"<tr><td>{html.escape(s.scenario)}</td><td>{html.escape(s.field)}</td>"
                   f"<td>{html.escape(str(s.paper))}</td><td>{html.escape(str(s.here))}</td>"
                   f"<td>{html.escape(s.why)}</td></tr>" for s in study.scaled)
    return ("<table class=\"reproduction-scaled\"><thead><tr><th>scenario</th><th>field</th><th>paper</th>"
            f"<th>here</th><th>why</th></tr></thead><tbody>{body}</tbody></table>")


def section(profile: object, summary: pd.DataFrame, infos: dict[str, PlatformInfo],
            samples: list[SampleRecord] | None = None,
            hosts: Mapping[str, str] | None = None) -> tuple[str, pd.DataFrame]:
    """The section as an HTML fragment and its table ('' and an empty frame unless `profile` is a study)."""
    if not isinstance(profile, str) or not studies.is_study(profile):
        return "", pd.DataFrame()
    study = studies.load_study(profile)
    frame = rows_frame(study, summary, infos, samples=samples, hosts=hosts)
    meta = study.meta
    source = f"{meta['url']}" + (f" at commit {meta['source_commit']}" if meta.get("source_commit") else "")
    parts = [f"<h2>Reproduction: {html.escape(study.name)}</h2>",
             f"<p class=\"meta\">{html.escape(study.citation)}; parameters from {html.escape(source)} "
             f"(profile file {html.escape(study.path.name)}). Each row is a figure of the paper's table with the "
             "ratio the paper reported, beside this host's medians with intervals at their real level and the "
             "ratio measured here. Verdict: <b>reproduced</b> when the measured ratio's interval passes the "
             "row's test (inside the paper's ratio ± the claim's margin, or wholly on the claimed side of 1), "
             "<b>not reproduced</b> when it lies wholly outside, <b>inconclusive</b> when it overlaps the edge, "
             "<b>not testable here</b> with why. Rows marked <i>setting differs</i> ran with the fields "
             "below scaled from the paper's.</p>",
             "<h3>Where this run differs from the paper</h3>", _scaled_table(study)]
    if study.not_covered:
        parts.append("<p>Not covered by this profile: " + "; ".join(html.escape(s) for s in study.not_covered)
                     + ".</p>")
    if frame.empty:
        parts.append("<p>The study lists no rows.</p>")
        return "\n".join(parts), frame
    head = "".join(f"<th>{html.escape(c)}</th>" for c in COLUMNS if c != "source")
    body = []
    for record in frame.to_dict("records"):
        cells = "".join(f"<td>{html.escape(str(record[c]))}</td>" for c in COLUMNS if c != "source")
        body.append(f"<tr title=\"{html.escape(str(record['source']))}\">{cells}</tr>")
    parts.append(f"<table class=\"reproduction\"><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>")
    return "\n".join(parts), frame
