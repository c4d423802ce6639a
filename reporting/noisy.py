"""The noisy-neighbour section of the report: the victim's degradation per stressor × platform × setting,
with the Isolation Benchmark Suite's published figures beside it, and the host heartbeat's lateness.

Degradation (pure, `degradation`): from the victim's samples alone (stressor `none`) and beside a stressor,
through bench.stats.ratio (ratio of medians; the interval inverts the exact Mann-Whitney test, at its real
level): throughput 100 × (1 − contended/alone), latency 100 × (contended/alone − 1); positive = worse.
Cells the scenario skipped or could not run (noisy.json evidence: e.g. a fork bomb on a platform that
ignores pids limits) show the reason instead of a number. Platforms are labelled with their PlatformInfo
(an emulated VM says so).
"""

from __future__ import annotations

import html
import json
import math
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from bench import stats
from bench.results import SampleRecord
from runtime.platform import PlatformInfo
from scenarios.isolation_noisy import (
    ALONE,
    EVIDENCE_FILE,
    HEARTBEAT_P99_LIMIT_MS,
    NAME,
    ROLES,
    SETTINGS,
    STRESSORS,
    VICTIM,
)

#: Matthews et al., "Quantifying the Performance Isolation Properties of Virtualization Systems", ExpCS 2007,
#: results Table 1 (web2.clarkson.edu/class/cs644/isolation/results.html; /work/shared/literature-claims.md,
#: confidence P): % degradation of the well-behaved guests' good responses (Apache/PHP, 4 guests, one
#: misbehaving), per stressor: VMware / Xen / OpenVZ. None: did not report.
IBS_SOURCE = ("Matthews et al., Quantifying the Performance Isolation Properties of Virtualization Systems, "
              "ExpCS 2007, Table 1: degradation of the well-behaved guests (Apache/PHP, Pentium 4, 1 GB)")
IBS_REFERENCE: dict[str, dict[str, float | None]] = {
    "memory": {"VMware": 0.0, "Xen": 0.03, "OpenVZ": 0.0},
    "forkbomb": {"VMware": 0.0, "Xen": 0.04, "OpenVZ": 0.01},
    "cpu": {"VMware": 0.0, "Xen": 0.01, "OpenVZ": 0.0},
    "disk": {"VMware": 0.0, "Xen": 1.67, "OpenVZ": 2.52},
    "net_send": {"VMware": 0.0, "Xen": 0.0, "OpenVZ": 21.3},
    "net_recv": {"VMware": 0.0, "Xen": 0.04, "OpenVZ": None},
}
#: The same table's second figure: % degradation of the misbehaving guest's own good responses.
IBS_MISBEHAVING: dict[str, dict[str, float | None]] = {
    "memory": {"VMware": 91.30, "Xen": None, "OpenVZ": None},
    "forkbomb": {"VMware": None, "Xen": None, "OpenVZ": 87.80},
    "cpu": {"VMware": 0.0, "Xen": 0.0, "OpenVZ": 0.0},
    "disk": {"VMware": 39.80, "Xen": 11.53, "OpenVZ": 2.63},
    "net_send": {"VMware": 52.9, "Xen": 0.33, "OpenVZ": 28.97},
    "net_recv": {"VMware": 0.0, "Xen": 0.03, "OpenVZ": None},
}
STRESSOR_TEXT = {"cpu": "cpu", "memory": "memory bomb", "forkbomb": "fork bomb", "disk": "disk writes",
                 "net_send": "network send", "net_recv": "network receive", ALONE: "none (alone)"}


@dataclass(frozen=True)
class Degradation:
    """The victim's degradation in % (positive = worse) with its interval at its real level."""

    point_pct: float
    interval: stats.Interval  # in %, level and method from bench.stats.ratio
    n_alone: int
    n_contended: int
    note: str = ""

    @property
    def text(self) -> str:
        if not math.isfinite(self.point_pct):
            return f"not comparable ({self.note})" if self.note else "not comparable"
        iv = self.interval
        span = (f" [{iv.low:.1f}, {iv.high:.1f}] {iv.label}" if iv.defined else " (no interval)")
        return f"{self.point_pct:+.1f} %{span}, n = {self.n_contended} vs {self.n_alone}"


def degradation(alone: Sequence[float], contended: Sequence[float], higher_is_better: bool) -> Degradation:
    """Degradation of `contended` against `alone` in %, with the ratio's interval carried over."""
    r = stats.ratio(contended, alone)
    iv = r.interval
    if higher_is_better:
        point = 100 * (1 - r.point)
        interval = stats.Interval(100 * (1 - iv.high), 100 * (1 - iv.low), iv.level, iv.method)
    else:
        point = 100 * (r.point - 1)
        interval = stats.Interval(100 * (iv.low - 1), 100 * (iv.high - 1), iv.level, iv.method)
    return Degradation(point, interval, len(alone), len(contended), r.note)


def _evidence(run_dir: Path) -> tuple[dict[tuple[str, str, str], tuple[str, str]], dict[tuple[str, str], list[str]]]:
    """(platform, setting, stressor) -> (outcome, why) of the last repetition that was not ok (and
    (platform, setting, 'stressor@role') -> ('no figure', why) where a role's web figure was not kept), and
    (platform, setting) -> the aggressor's limits the platform ignored."""
    found: dict[tuple[str, str, str], tuple[str, str]] = {}
    ignored: dict[tuple[str, str], list[str]] = {}
    for path in sorted((run_dir / "raw").glob(f"*/{NAME}/rep*/{EVIDENCE_FILE}")):
        platform = path.parts[-4]
        try:
            for record in json.loads(path.read_text()):
                setting = str(record["setting"])
                ignored[(platform, setting)] = [str(x) for x in record.get("ignored_limits", [])]
                if record.get("outcome") in ("skipped", "failed"):
                    found[(platform, setting, str(record["stressor"]))] = (
                        str(record["outcome"]), str(record.get("why", "")))
                for role, why in (record.get("not_kept") or {}).items():
                    found[(platform, setting, f"{record['stressor']}@{role}")] = ("no figure", str(why))
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            continue
    return found, ignored


def _head(columns: list[tuple[str, str]], infos: dict[str, PlatformInfo],
          ignored: dict[tuple[str, str], list[str]]) -> str:
    cells = []
    for platform, setting in columns:
        lost = ignored.get((platform, setting))
        note = f"<br><small>limits ignored here: {html.escape(', '.join(lost))}</small>" if lost else ""
        cells.append(f"<th>{html.escape(infos[platform].label)}<br><small>aggressor {setting}</small>{note}</th>")
    return "".join(cells)


def _values(samples: list[SampleRecord]) -> dict[tuple[str, str, str, str], list[float]]:
    """(metric, platform, setting, stressor) -> values; a metric with a role (web) is keyed 'metric@role'."""
    out: dict[tuple[str, str, str, str], list[float]] = defaultdict(list)
    for s in samples:
        if s.scenario == NAME:
            metric = f"{s.metric}@{s.metadata['role']}" if s.metadata.get("role") else s.metric
            out[(metric, s.platform, str(s.metadata.get("setting")), str(s.metadata.get("stressor")))].append(
                s.value)
    return out


def _reference(stressor: str, role: str = ROLES[0]) -> str:
    figures = (IBS_MISBEHAVING if role == ROLES[1] else IBS_REFERENCE).get(stressor)
    if not figures:
        return ""
    return " / ".join(f"{name} {'DNR' if v is None else f'{v:g} %'}" for name, v in figures.items())


def section(samples: list[SampleRecord], run_dir: Path, infos: dict[str, PlatformInfo]) -> str:
    """The degradation and heartbeat tables as an HTML fragment ('' when the run has no noisy-neighbour data)."""
    values = _values(samples)
    if not values:
        return ""
    evidence, ignored = _evidence(run_dir)
    platforms = [p for p in infos if any(k[1] == p for k in values)]
    settings = [s for s in SETTINGS if any(k[2] == s for k in values)]
    columns = [(p, s) for p in platforms for s in settings]
    head = _head(columns, infos, ignored)
    stressors = [st for st in STRESSORS if any(k[3] == st for k in values) or
                 any(k[2] == st for k in evidence)]
    parts = ["<h2>isolation: noisy neighbour (victim degradation)</h2>",
             "<p class=\"meta\">A victim instance runs a fixed workload alone, then beside an aggressor instance on "
             "the same platform running each stressor. Cell: the victim's degradation in % (positive = worse; "
             "throughput: 1 − contended/alone, latency: contended/alone − 1) with an interval of the ratio of "
             "medians at its real level (Mann-Whitney inversion; 3 vs 3 repetitions reach 90 %), n contended vs "
             "alone. <b>unlimited</b>: the aggressor has no cpu, disk or network limit (only the safety bounds on "
             "memory and pids that keep the memory and fork-bomb stressors off the host); <b>limited</b>: the "
             "same InstanceSpec on every platform. A stressor is skipped where its bound is not enforced, with "
             f"the reason. Reference: {html.escape(IBS_SOURCE)}, VMware / Xen / OpenVZ (DNR: did not report); "
             "their workload and hardware differ from this host's, so they are for comparison, not a test.</p>"]
    tables = [(f"victim {workload}", metric, metric, unit, higher, ROLES[0])
              for workload, (metric, unit, higher) in VICTIM.items() if workload != "web"]
    web_metric, web_unit, _ = VICTIM["web"]
    tables += [(f"{role} instances' web", web_metric, f"{web_metric}@{role}", web_unit, True, role) for role in ROLES]
    for title, metric, key, unit, higher, role in tables:
        if not any(k[0] == key for k in values):
            continue
        rows = []
        for stressor in stressors:
            cells = []
            for platform, setting in columns:
                alone = values.get((key, platform, setting, ALONE), [])
                contended = values.get((key, platform, setting, stressor), [])
                why = evidence.get((platform, setting, stressor))
                lost = evidence.get((platform, setting, f"{stressor}@{role}")) if key != metric else None
                if contended and alone:
                    d = degradation(alone, contended, higher)
                    note = (f"<br><small>not kept in a repetition: {html.escape(lost[1])}</small>" if lost else "")
                    cells.append(f"<td>{html.escape(d.text)}{note}</td>")
                elif lost:
                    cells.append(f"<td><i>{lost[0]}</i><br><small>{html.escape(lost[1])}</small></td>")
                elif why:
                    cells.append(f"<td><i>{why[0]}</i><br><small>{html.escape(why[1])}</small></td>")
                else:
                    cells.append("<td>–</td>")
            rows.append(f"<tr><th>{html.escape(STRESSOR_TEXT[stressor])}</th>{''.join(cells)}"
                        f"<td><small>{html.escape(_reference(stressor, role))}</small></td></tr>")
        parts.append(f"<h3>{html.escape(title)} ({html.escape(metric)}, {html.escape(unit)})</h3>"
                     f'<div class="scroll"><table class="noisy"><tr><th>stressor</th>{head}'
                     f"<th>IBS 2007 ({'the misbehaving guest' if role == ROLES[1] else 'well-behaved guests'})"
                     f"</th></tr>{''.join(rows)}</table></div>")
    parts.append(_heartbeat_table(values, columns, infos, ignored))
    return "".join(parts)


def _heartbeat_table(values: dict[tuple[str, str, str, str], list[float]], columns: list[tuple[str, str]],
                     infos: dict[str, PlatformInfo], ignored: dict[tuple[str, str], list[str]]) -> str:
    head = _head(columns, infos, ignored)
    rows = []
    for stressor in (ALONE, *STRESSORS):
        if not any(k[0] == "heartbeat_lateness_p99" and k[3] == stressor for k in values):
            continue
        cells = []
        for platform, setting in columns:
            p99 = values.get(("heartbeat_lateness_p99", platform, setting, stressor), [])
            worst = values.get(("heartbeat_lateness_max", platform, setting, stressor), [])
            if not p99:
                cells.append("<td>–</td>")
                continue
            over = max(p99) >= HEARTBEAT_P99_LIMIT_MS
            style = ' style="background:#b71c1c;color:#ffffff"' if over else ""
            cells.append(f"<td{style}>p99 {stats.summarize(p99).median:.2f} ms (highest {max(p99):.2f})"
                         f"<br><small>max {max(worst):.2f} ms, n = {len(p99)}</small></td>")
        rows.append(f"<tr><th>{html.escape(STRESSOR_TEXT[stressor])}</th>{''.join(cells)}</tr>")
    return ("<h3>host heartbeat during each stressor (lateness of a 10 ms sleep loop on the host)</h3>"
            "<p class=\"meta\">Median over repetitions of each repetition's p99 lateness, the highest p99, and the "
            f"largest single lateness. Red: a p99 of {HEARTBEAT_P99_LIMIT_MS:g} ms or more (the stressor reached "
            "the host's scheduler). Other jobs on the host add to every cell alike.</p>"
            f'<div class="scroll"><table class="noisy"><tr><th>stressor</th>{head}</tr>{"".join(rows)}'
            "</table></div>")
