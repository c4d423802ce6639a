"""iozone `-R` (Excel-style) reports: throughput in kB/s per test, file size and record size.

Only the tables after "Excel output is below:" are read; their layout is fixed: a quoted report
name, a row of quoted record sizes (kB), then one row per file size (kB) with a value per record
size. A run that stopped early (e.g. "Can not open temp file") has no such tables: ParseError.
"""

from __future__ import annotations

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


def _failure(text: str) -> str:
    for line in text.splitlines():
        if re.search(r"Can not|cannot|Error|error|failed", line):
            return line.strip()
    return "no 'Excel output' section: the run did not complete"


def parse(text: str) -> Table:
    marker = text.find("Excel output is below")
    if marker < 0:
        raise ParseError(f"iozone did not complete: {_failure(text)}")
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
            table[current] = {}
            records = []
            continue
        if current is None:
            continue
        cells = line.split()
        if all(re.fullmatch(r'"\d+"', c) for c in cells) and not records:
            records = [int(c.strip('"')) for c in cells]
            continue
        row = re.fullmatch(r'"(\d+)"\s+(.*)', line)
        if row and records:
            values = row.group(2).split()
            if len(values) > len(records):
                raise ParseError(f"iozone {current} row for {row.group(1)} kB has {len(values)} values "
                                 f"for {len(records)} record sizes")
            for record, value in zip(records, values, strict=False):
                table[current][(int(row.group(1)), record)] = float(value)
    table = {test: rows for test, rows in table.items() if rows}
    if not table:
        raise ParseError("iozone Excel section has no values")
    return table
