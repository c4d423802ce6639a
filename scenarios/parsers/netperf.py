"""netperf omni `-o SELECTOR,...` (CSV) results, read by the selectors the caller asked for.

With `-- -o A,B,C` netperf prints a banner line, a header line of human-readable column titles and
one line of values, in the order asked. An unknown selector yields an empty column; a missing
netserver or one that died mid-test yields error lines instead of the table. Each is a ParseError.
"""

from __future__ import annotations

import re

from scenarios.parsers import ParseError

#: Selectors whose values are words, not numbers.
TEXT_SELECTORS = frozenset({"THROUGHPUT_UNITS", "PROTOCOL", "DIRECTION", "COMMAND_LINE", "RESULT_BRAND",
                            "LOCAL_CONG_CONTROL", "REMOTE_CONG_CONTROL", "SOCKET_TYPE", "TEST"})

#: netperf's failure messages (stdout or stderr) and what they mean.
_ERRORS = (
    (r"establish control|establish_control", "no netserver answered"),
    (r"recv_response|send_response|partial response", "the control connection broke (netserver died?)"),
    (r"send_omni|recv_omni|send_data|recv_data|data send error|data recv error", "the data connection failed"),
    (r"^netperf: .*", "netperf refused the test"),
)


def _error(text: str) -> str | None:
    for pattern, meaning in _ERRORS:
        match = re.search(pattern, text, re.MULTILINE)
        if match:
            line = next(line.strip() for line in text[match.start():].splitlines() if line.strip())
            return f"netperf failed, {meaning}: {line[:160]}"
    return None


def parse(text: str, selectors: list[str] | tuple[str, ...]) -> dict[str, float | str]:
    """selector -> value (float, or str for TEXT_SELECTORS)."""
    error = _error(text)
    if error:
        raise ParseError(error)
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    lines = [line for line in lines if not line.startswith(("MIGRATED", "OMNI"))]
    if len(lines) < 2:
        raise ParseError("netperf printed no omni result table (expected a header line and a value line)")
    header, values = lines[-2].split(","), lines[-1].split(",")
    if len(values) != len(selectors) or len(header) != len(selectors):
        raise ParseError(f"netperf omni output has {len(values)} values and {len(header)} titles for "
                         f"{len(selectors)} selectors: {lines[-1][:120]}")
    out: dict[str, float | str] = {}
    for selector, raw in zip(selectors, values, strict=True):
        raw = raw.strip()
        if not raw:
            raise ParseError(f"netperf left {selector} empty (unknown selector, or not measured in this test)")
        if selector in TEXT_SELECTORS:
            out[selector] = raw
            continue
        try:
            out[selector] = float(raw)
        except ValueError as exc:
            raise ParseError(f"netperf {selector} is {raw!r}, not a number") from exc
    return out
