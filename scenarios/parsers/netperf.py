"""netperf omni `-o SELECTOR,...` (CSV) results, read by the selectors the caller asked for.

With `-- -o A,B,C` netperf prints a banner line, a header line of human-readable column titles and
one line of values, in the order asked; with debugging on it also prints informational lines
("netperf: get_sock_buffer: ...", "Could not install signal catcher ...", "shutdown_control: ...")
around them, which are skipped. A ParseError: a missing netserver, or one that died mid-test (error
lines instead of the table); an unknown selector (an empty column); no table, or the table twice
(duplicated records); a figure that is nan, inf or negative, a zero rate, latency or elapsed time; a
test that ran less than the seconds asked (netperf stopped by SIGINT prints a complete-looking table
of the part it ran).
"""

from __future__ import annotations

import re

from scenarios.parsers import ParseError, positive, ran_long_enough

#: Selectors whose values are words, not numbers.
TEXT_SELECTORS = frozenset({"THROUGHPUT_UNITS", "PROTOCOL", "DIRECTION", "COMMAND_LINE", "RESULT_BRAND",
                            "LOCAL_CONG_CONTROL", "REMOTE_CONG_CONTROL", "SOCKET_TYPE", "TEST"})

#: Selectors that may legitimately be 0 (a spread, a minimum at the timer's resolution).
ZERO_OK_SELECTORS = frozenset({"STDDEV_LATENCY", "MIN_LATENCY"})

#: netperf's failure messages (stdout or stderr) and what they mean.
#: (Debug output has look-alike informational lines: "establish_control called with host ...",
#: "recv_response: received a 656 byte response", "send_omni_inner: 1 entry send_ring obtained...".)
_ERRORS = (
    (r"^establish control: are you sure|establish_control could not", "no netserver answered"),
    (r"partial response|^(recv|send)_response: (?!received a \d+ byte response)",
     "the control connection broke (netserver died?)"),
    (r"^(send|recv)_(omni|data)\w*: .*(failed|error|errno|[Cc]onnection|refused|reset)|data (send|recv) error",
     "the data connection failed"),
)
#: A "netperf: ..." line is an error only when no result table follows; with one it is informational.
_REFUSED = (r"^netperf: .*", "netperf refused the test")


def _error(text: str, patterns: tuple[tuple[str, str], ...]) -> str | None:
    for pattern, meaning in patterns:
        match = re.search(pattern, text, re.MULTILINE)
        if match:
            line = next(line.strip() for line in text[match.start():].splitlines() if line.strip())
            return f"netperf failed, {meaning}: {line[:160]}"
    return None


def _table(lines: list[str], width: int) -> tuple[str, str] | None:
    """The (header, values) lines: consecutive lines with `width` comma-separated fields each."""
    rows = [i for i, line in enumerate(lines) if line.count(",") == width - 1]
    pairs = [(lines[i], lines[i + 1]) for i in rows if i + 1 in rows and not _numeric(lines[i])]
    if len(pairs) > 1:
        raise ParseError(f"netperf printed its result table {len(pairs)} times: duplicated records")
    return pairs[0] if pairs else None


def _numeric(line: str) -> bool:
    return any(re.fullmatch(r"\s*[-+]?[0-9.]+\s*", field) for field in line.split(","))


def parse(text: str, selectors: list[str] | tuple[str, ...], seconds: float | None = None) -> dict[str, float | str]:
    """selector -> value (float, or str for TEXT_SELECTORS). `seconds`: the test length asked (-l); with
    ELAPSED_TIME among the selectors, a shorter run is a ParseError."""
    error = _error(text, _ERRORS)
    if error:
        raise ParseError(error)
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    table = _table(lines, len(selectors))
    if table is None:
        refused = _error(text, (_REFUSED,))
        if refused:
            raise ParseError(refused)
        last = [line for line in lines if not line.startswith(("MIGRATED", "OMNI"))][-2:]
        if len(last) < 2:
            raise ParseError("netperf printed no omni result table (expected a header line and a value line)")
        raise ParseError(f"netperf omni output has {len(last[1].split(','))} values and {len(last[0].split(','))} "
                         f"titles for {len(selectors)} selectors: {last[1][:120]}")
    values = table[1].split(",")
    out: dict[str, float | str] = {}
    for selector, raw in zip(selectors, values, strict=True):
        raw = raw.strip()
        if not raw:
            raise ParseError(f"netperf left {selector} empty (unknown selector, or not measured in this test)")
        if selector in TEXT_SELECTORS:
            out[selector] = raw
            continue
        try:
            value = float(raw)
        except ValueError as exc:
            raise ParseError(f"netperf {selector} is {raw!r}, not a number") from exc
        out[selector] = positive("netperf", selector, value, zero_ok=selector in ZERO_OK_SELECTORS)
    if "ELAPSED_TIME" in out:
        ran_long_enough("netperf", float(out["ELAPSED_TIME"]), seconds)
    return out
