"""Every report table as CSV (numbers, intervals and their levels, platform labels) and as LaTeX that compiles.

Files land in reports/<run-id>/tables/: `<name>.csv`, `<name>.tex` (a `longtable` fragment) and
`report-tables.tex`, a document that inputs every fragment (pdflatex with only texlive-latex-base).
LaTeX text is escaped (`_ & % $ # { } ~ ^ \\`) and the report's Unicode (×, –, —, µ, −, ≈, …) is
written as LaTeX commands, so the output is plain ASCII.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

_SPECIAL = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
            "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}",
            "<": r"\textless{}", ">": r"\textgreater{}"}
_UNICODE = {"×": r"$\times$", "–": "--", "—": "---", "−": "$-$", "µ": r"\textmu{}", "μ": r"\textmu{}",
            "≈": r"$\approx$", "≤": r"$\leq$", "≥": r"$\geq$", "÷": r"$\div$", "∞": r"$\infty$",
            "≫": r"$\gg$", "±": r"$\pm$", "→": r"$\rightarrow$", "⚠": "(!)", "\u00a0": "~", "’": "'",
            "“": "``", "”": "''", "…": r"\ldots{}", "°": r"\textdegree{}", "≠": r"$\neq$"}
_TOKEN = re.compile("|".join(re.escape(k) for k in sorted({**_SPECIAL, **_UNICODE}, key=len, reverse=True)))


def latex_escape(text: object) -> str:
    """Plain text -> LaTeX source (ASCII). Characters we do not know become '?', never a compile error."""
    escaped = _TOKEN.sub(lambda m: {**_SPECIAL, **_UNICODE}[m.group(0)], str(text))
    return escaped.encode("ascii", "replace").decode("ascii")


def write_csv(frame: pd.DataFrame, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(path, index=False)
    return path


def latex_table(header: Sequence[str], rows: Sequence[Sequence[object]], caption: str, label: str) -> str:
    """A longtable fragment: text escaped, right-aligned columns after the first ones that are text."""
    spec = "".join("l" if i < 3 else "r" for i in range(len(header)))
    head = " & ".join(rf"\textbf{{{latex_escape(h)}}}" for h in header) + r" \\ \hline"
    body = "\n".join(" & ".join(latex_escape(c) for c in row) + r" \\" for row in rows)
    return (f"\\begin{{longtable}}{{{spec}}}\n\\caption{{{latex_escape(caption)}}}"
            f"\\label{{tab:{re.sub(r'[^A-Za-z0-9:-]', '-', label)}}}\\\\\n\\hline\n{head}\n\\endfirsthead\n"
            f"{head}\n\\endhead\n{body}\n\\hline\n\\end{{longtable}}\n")


def write_latex(fragment: str, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(fragment, encoding="ascii")
    return path


def write_document(fragments: Sequence[Path], path: Path, title: str) -> Path:
    """A standalone document that inputs every fragment: `pdflatex report-tables.tex` in that directory."""
    inputs = "\n".join(f"\\input{{{p.name}}}" for p in fragments)
    text = ("\\documentclass[10pt]{article}\n\\usepackage[T1]{fontenc}\n\\usepackage{textcomp}\n"
            "\\usepackage{longtable}\n\\usepackage[margin=1.5cm,landscape]{geometry}\n"
            f"\\title{{{latex_escape(title)}}}\n\\date{{}}\n\\begin{{document}}\n\\maketitle\n\\small\n"
            f"{inputs}\n\\end{{document}}\n")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="ascii")
    return path
