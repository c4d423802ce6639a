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
            "privilege that only reaches the instance's own kernel, as in a VM, counts as isolated); <b>n/a</b>: "
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
