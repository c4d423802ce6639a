"""iozone `-R` (Excel-style) reports: throughput in kB/s per test, file size and record size.

Only the tables after "Excel output is below:" are read; their layout is fixed: a quoted report
name, a row of quoted record sizes (kB), then one row per file size (kB) with a value per record
size. A ParseError: a run that stopped early (e.g. "Can not open temp file") and has no such tables;
"iozone: interrupted" (SIGINT/SIGTERM: iozone still dumps the tables, with zeros for the tests it
did not reach, and exits 0); an error line ("Error writing block ...", "No space left on device":
iozone fills the tables with zeros); no "iozone test complete." line; a row with fewer values than
record sizes, reports with different rows, or output ending mid-line (cut off); a report title twice
(duplicated records); a value that is not a number, zero or negative.
"""

from __future__ import annotations

import math
import re

from scenarios.parsers import ParseError

#: iozone's report titles -> our test names.
REPORTS = {
    "Writer report": "write",
    "Re-writer report": "rewrite",
    "Reader report": "read",
    "Re-Reader report": "reread",
    "Random read report": "random_read",
    "Random write report": "random_write",
    "Backward read report": "backward_read",
    "Record rewrite report": "record_rewrite",
    "Stride read report": "stride_read",
    "Fwrite report": "fwrite",
    "Re-fwrite report": "refwrite",
    "Fread report": "fread",
    "Re-fread report": "refread",
}

Table = dict[str, dict[tuple[int, int], float]]  # test -> (file_kb, record_kb) -> kB/s

_ERROR_LINE = re.compile(r"^.*(Can not|cannot|Error|error|failed|No space left).*$", re.MULTILINE)


def _failure(text: str) -> str:
    match = _ERROR_LINE.search(text)
    return match.group(0).strip() if match else "no 'Excel output' section: the run did not complete"


def _value(test: str, file_kb: str, raw: str) -> float:
    try:
        value = float(raw)
    except ValueError as exc:
        raise ParseError(f"iozone {test} value for {file_kb} kB is {raw!r}, not a number") from exc
    if not math.isfinite(value) or value <= 0:
        raise ParseError(f"iozone {test} reported {raw} kB/s for {file_kb} kB: "
                         + ("no work was measured (a test it did not reach?)" if value == 0 else "not a measurement"))
    return value


def parse(text: str) -> Table:
    marker = text.find("Excel output is below")
    if marker < 0:
        raise ParseError(f"iozone did not complete: {_failure(text)}")
    error = _ERROR_LINE.search(text[:marker])
    if error:  # e.g. ENOSPC: iozone then stops itself ("interrupted") and prints zeros
        raise ParseError(f"iozone failed: {error.group(0).strip()}")
    if re.search(r"^iozone: interrupted", text, re.MULTILINE):
        raise ParseError("iozone was interrupted (\"iozone: interrupted\"): its tables cover a partial run")
    if "iozone test complete." not in text[:marker]:
        raise ParseError("iozone did not print 'iozone test complete.': the run did not complete")
    if not text.endswith("\n"):
        raise ParseError("iozone output ends mid-line: it was cut off")
    table: Table = {}
    current: str | None = None
    records: list[int] = []
    for line in text[marker:].splitlines()[1:]:
        line = line.strip()
        if not line:
            continue
        title = re.fullmatch(r'"([^"]+ report)"', line)
        if title:
            current = REPORTS.get(title.group(1), title.group(1).lower().replace(" report", "").replace(" ", "_"))
            if current in table:
                raise ParseError(f"iozone printed the {title.group(1)!r} twice: duplicated records")
            table[current] = {}
            records = []
            continue
        if current is None:
            continue
        cells = line.split()
        if all(re.fullmatch(r'"\d+"', c) for c in cells) and not records:
            records = [int(c.strip('"')) for c in cells]
            continue
        row = re.fullmatch(r'"(\d+)"\s*(.*)', line)
        if row and records:
            values = row.group(2).split()
            if len(values) != len(records):
                raise ParseError(f"iozone {current} row for {row.group(1)} kB has {len(values)} values "
                                 f"for {len(records)} record sizes: the table is cut off or malformed")
            for record, value in zip(records, values, strict=True):
                table[current][(int(row.group(1)), record)] = _value(current, row.group(1), value)
    table = {test: rows for test, rows in table.items() if rows}
    if not table:
        raise ParseError("iozone Excel section has no values")
    shapes = {test: sorted(rows) for test, rows in table.items()}
    first = next(iter(shapes))
    for test, keys in shapes.items():
        if keys != shapes[first]:
            raise ParseError(f"iozone {test} report has other rows than the {first} report: the tables are "
                             f"cut off or malformed")
    return table
