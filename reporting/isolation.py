"""The isolation section of the report: the visibility matrix (question × platform).

Built from the `exposed` samples (1 = exposed, 0 = isolated; unit "yes/no") and the evidence file each
repetition of a visibility scenario keeps (raw/<platform>/<scenario>/rep<N>/visibility.json): every
cell is coloured isolated / exposed / not applicable and carries its evidence (command and output) in
a collapsible block, so the page stays self-contained. Questions come from the evidence files, not
from a list here; platforms are labelled with their PlatformInfo.
"""

from __future__ import annotations

import html
import json
from collections import defaultdict
from pathlib import Path

from bench.results import SampleRecord
from runtime.platform import PlatformInfo

BOOLEAN_UNIT = "yes/no"
EVIDENCE_FILE = "visibility.json"
COLOURS = {"isolated": ("#1b5e20", "#ffffff"), "exposed": ("#b71c1c", "#ffffff"),
           "n/a": ("#e0e0e0", "#212121"), "inconsistent": ("#6a1b9a", "#ffffff")}  # text contrast >= 4.5:1


def is_boolean(unit: str) -> bool:
    """Yes/no answers are not magnitudes: they get no medians, ratios or plots, only the matrix."""
    return unit == BOOLEAN_UNIT


def _evidence(run_dir: Path, platform: str, scenario: str) -> dict[str, list[dict[str, object]]]:
    """question -> the evidence records of every repetition (in repetition order)."""
    found: dict[str, list[dict[str, object]]] = defaultdict(list)
    base = run_dir / "raw" / platform / scenario
    if not base.is_dir():
        return found
    reps = sorted(base.glob(f"rep*/{EVIDENCE_FILE}"), key=lambda p: int(p.parent.name[3:] or 0))
    for path in reps:
        try:
            for record in json.loads(path.read_text()):
                found[str(record["question"])].append(record)
        except (OSError, ValueError, KeyError, TypeError):
            continue
    return found


def visibility_matrix(samples: list[SampleRecord], run_dir: Path) -> dict[str, dict[str, tuple[str, str, list[dict]]]]:
    """matrix[question][platform] = (answer, why, evidence records of every repetition)."""
    answers: dict[tuple[str, str, str], set[float]] = defaultdict(set)
    for s in samples:
        if s.metric == "exposed" and is_boolean(s.unit):
            answers[(s.scenario, str(s.metadata.get("question")), s.platform)].add(s.value)
    matrix: dict[str, dict[str, tuple[str, str, list[dict]]]] = defaultdict(dict)
    cells = {(scenario, platform) for scenario, _, platform in answers}
    for scenario, platform in cells:
        evidence = _evidence(run_dir, platform, scenario)
        questions = set(evidence) | {q for (sc, q, p) in answers if sc == scenario and p == platform}
        for question in questions:
            values = answers.get((scenario, question, platform), set())
            records = evidence.get(question, [])
            why = str(records[-1].get("why", "")) if records else ""
            if not values:
                answer = "n/a"
            elif len(values) > 1:
                answer, why = "inconsistent", "repetitions disagree: " + why
            else:
                answer = "exposed" if values.pop() == 1.0 else "isolated"
            matrix[question][platform] = (answer, why, records)
    return matrix


def section(samples: list[SampleRecord], run_dir: Path, infos: dict[str, PlatformInfo]) -> str:
    """The visibility matrix as an HTML fragment ('' when the run measured no isolation)."""
    matrix = visibility_matrix(samples, run_dir)
    if not matrix:
        return ""
    platforms = [p for p in infos if any(p in row for row in matrix.values())]
    texts = _question_texts(run_dir, platforms)
    head = "".join(f"<th>{html.escape(infos[p].label)}</th>" for p in platforms)
    rows = []
    for question in sorted(matrix, key=lambda q: (list(texts).index(q) if q in texts else 999, q)):
        cells = []
        for platform in platforms:
            answer, why, records = matrix[question].get(platform, ("n/a", "not measured on this platform", []))
            background, colour = COLOURS[answer]
            detail = "".join(
                f"<pre>$ {html.escape(str(r.get('command', '')))}\n{html.escape(str(r.get('stdout', '')))}"
                f"{html.escape(str(r.get('stderr', '')))}(exit {r.get('returncode')})</pre>" for r in records[-1:])
            cells.append(f'<td style="background:{background};color:{colour}" title="{html.escape(why)}">'
                         f"<b>{answer}</b><br><small>{html.escape(why)}</small>"
                         f"{f'<details><summary>evidence</summary>{detail}</details>' if detail else ''}</td>")
        label = html.escape(texts.get(question, question))
        rows.append(f"<tr><th>{label}</th>{''.join(cells)}</tr>")
    return ("<h2>isolation: what an instance can see of the host</h2>"
            "<p class=\"meta\">Each question answered from inside the instance against markers made on the host "
            "first (a process, a file, a mount, SysV and POSIX message queues). <b>exposed</b>: the instance "
            "reaches the host's object or a privilege on the host's kernel; <b>isolated</b>: it does not (a "
            "privilege that only reaches the instance's own kernel, such as a guest kernel, counts as "
            "isolated); <b>n/a</b>: "
            "the question does not apply here (the reason is given). Evidence: the command and its output.</p>"
            f'<div class="scroll"><table class="isolation"><tr><th>question</th>{head}</tr>{"".join(rows)}'
            "</table></div>")


def _question_texts(run_dir: Path, platforms: list[str]) -> dict[str, str]:
    """question id -> its text, in the order the probe asked them."""
    texts: dict[str, str] = {}
    for path in sorted((run_dir / "raw").glob(f"*/*/rep*/{EVIDENCE_FILE}")):
        try:
            for record in json.loads(path.read_text()):
                texts.setdefault(str(record["question"]), str(record.get("text", record["question"])))
        except (OSError, ValueError, KeyError, TypeError):
            continue
    return texts


LIMITS_EVIDENCE = "limits.json"


def _limit_notes(run_dir: Path, platform: str, scenario: str) -> dict[tuple[str, str], dict[str, object]]:
    """(limit, requested) -> the last repetition's record of it (note, unit, enforced)."""
    notes: dict[tuple[str, str], dict[str, object]] = {}
    base = run_dir / "raw" / platform / scenario
    for path in sorted(base.glob(f"rep*/{LIMITS_EVIDENCE}"), key=lambda p: int(p.parent.name[3:] or 0)):
        try:
            for record in json.loads(path.read_text()):
                notes[(str(record["limit"]), str(record["requested"]))] = record
        except (OSError, ValueError, KeyError, TypeError):
            continue
    return notes


def limits_section(samples: list[SampleRecord], run_dir: Path, infos: dict[str, PlatformInfo]) -> str:
    """Requested vs achieved per limit and platform: error in % with its interval at its real level,
    settle time, or 'not enforced' with the reason ('' when the run measured no limits)."""
    from bench import stats

    values: dict[tuple[str, str, str, str], list[float]] = defaultdict(list)
    scenarios: dict[str, str] = {}
    for s in samples:
        if s.metric in ("limit_enforced", "limit_achieved_ratio", "limit_settle_s") or s.metric.startswith(
                "limit_achieved_"):
            key = (str(s.metadata.get("limit")), str(s.metadata.get("requested")))
            metric = s.metric if s.metric in ("limit_enforced", "limit_achieved_ratio", "limit_settle_s") \
                else "limit_achieved"  # one per unit in the samples; one column here
            values[(*key, s.platform, metric)].append(s.value)
            scenarios[s.platform] = s.scenario
    if not values:
        return ""
    platforms = [p for p in infos if p in scenarios]
    notes = {p: _limit_notes(run_dir, p, scenarios[p]) for p in platforms}
    cases = sorted({(limit, requested) for limit, requested, _, _ in values})
    head = "".join(f"<th>{html.escape(infos[p].label)}</th>" for p in platforms)
    rows = []
    for limit, requested in cases:
        cells = []
        for platform in platforms:
            enforced = values.get((limit, requested, platform, "limit_enforced"))
            record = notes[platform].get((limit, requested), {})
            ratios = values.get((limit, requested, platform, "limit_achieved_ratio"))
            if not enforced:
                text, colour = "not measured", COLOURS["n/a"]
            elif max(enforced) == 0.0:
                text, colour = f"not enforced: {record.get('note', '')}", COLOURS["exposed"]
            elif ratios:
                summary = stats.summarize([100 * (r - 1) for r in ratios])
                achieved = stats.summarize(values[(limit, requested, platform, "limit_achieved")]).median
                interval = summary.interval
                span = (f" [{interval.low:+.1f} to {interval.high:+.1f} %, {interval.label}]"
                        if interval.defined and interval.level > 0 else "")
                settle = values.get((limit, requested, platform, "limit_settle_s"))
                settled = f"; settled within {stats.summarize(settle).median:.1f} s" if settle else ""
                text = (f"achieved {achieved:.3g} {record.get('unit', '')}: error {summary.median:+.1f} %{span}, "
                        f"n = {summary.n}{settled}")
                if record.get("note"):
                    text += f" ({record['note']})"
                colour = COLOURS["isolated"] if abs(summary.median) <= 10 else COLOURS["inconsistent"]
            else:
                text, colour = f"enforced, not measurable: {record.get('note', '')}", COLOURS["n/a"]
            cells.append(f'<td style="background:{colour[0]};color:{colour[1]}">{html.escape(text)}</td>')
        rows.append(f"<tr><th>{html.escape(limit)} {html.escape(requested)}</th>{''.join(cells)}</tr>")
    return ("<h2>isolation: how exactly limits hold</h2>"
            "<p class=\"meta\">Each limit asked through the same instance spec on every platform and measured from "
            "inside: error = achieved ÷ requested − 1 (green within ±10 %, purple beyond; red: the platform does "
            "not enforce it). cpu: throughput under the quota ÷ an unlimited reference instance, interleaved; on "
            "a busy host the reference gets less than a cpu and the error reads high. memory: what a workload held "
            "when the OOM killer ended it (a guest kernel of its own lives inside its memory).</p>"
            f'<div class="scroll"><table class="isolation"><tr><th>limit requested</th>{head}</tr>{"".join(rows)}'
            "</table></div>")
