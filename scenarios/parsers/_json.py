"""Finding and decoding the one JSON document in a tool's output when other text surrounds it.

fio and iperf3 print warnings before their JSON and errors after it when stdout and stderr are
merged, and iperf3 writes C's `nan`/`-nan` for values it could not compute (not valid JSON).
This module owns that tolerance, so each tool's parser only reads fields. A second JSON document in
the same output (duplicated result records) is a ParseError.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass

from scenarios.parsers import ParseError

# A bare nan/inf where a JSON value belongs (after ':' '[' or ','; followed by ',' '}' or ']').
_BARE_NONFINITE = re.compile(r"(?<=[:\[,])(\s*)[-+]?(?:nan|inf)(?=\s*[,}\]])", re.IGNORECASE)


@dataclass(frozen=True)
class Embedded:
    """A JSON object and the text around it."""

    data: dict[str, object]
    before: str
    after: str


def first_line(text: str, limit: int = 160) -> str:
    """The first non-blank line of `text`, shortened: for one-line error messages."""
    for line in text.splitlines():
        if line.strip():
            line = line.strip()
            return line if len(line) <= limit else line[: limit - 3] + "..."
    return "(no output)"


def find_object(text: str, tool: str) -> Embedded:
    """The one JSON object that starts a line in `text`; ParseError if none, unreadable, or followed by another."""
    match = re.search(r"^[ \t]*\{", text, re.MULTILINE)
    if match is None:
        raise ParseError(f"{tool} printed no JSON: {first_line(text)}")
    start = match.end() - 1
    body = _BARE_NONFINITE.sub(r"\1null", text[start:])
    try:
        data, end = json.JSONDecoder().raw_decode(body)
    except json.JSONDecodeError as exc:
        raise ParseError(f"{tool} JSON is not readable ({exc.msg} at line {exc.lineno}): "
                         f"the output is truncated or corrupt") from exc
    if not isinstance(data, dict):
        raise ParseError(f"{tool} JSON is a {type(data).__name__}, not an object")
    after = body[end:]
    if re.search(r"^[ \t]*\{", after, re.MULTILINE):
        raise ParseError(f"{tool} printed a second JSON document after its report: duplicated or mixed result "
                         f"records, so which one is this run's cannot be told")
    return Embedded(data, text[:start], after)


def number(value: object) -> float | None:
    """A JSON number as a finite float; None for null (nan), an overflowing literal (1e400 reads as inf),
    strings and anything else."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    value = float(value)
    return value if math.isfinite(value) else None
