"""sysbench 1.0 reports: the figures we keep, read from its fixed-format report.

A ParseError: a FATAL line; no report (sysbench killed by a signal prints none); a report cut off
before its last line ("execution time (avg/stddev): A/B" and its newline); two reports in one output
(duplicated records); a figure that is not a finite number (e.g. -nan); zero events, a zero rate or a
negative figure; a run shorter than the seconds asked. WARNING lines are informational.
"""

from __future__ import annotations

import math
import re

from scenarios.parsers import ParseError, positive, ran_long_enough

_NUMBER = r"(\S+?)"
_FIELDS = {
    "events_per_second": rf"events per second:[ \t]*{_NUMBER}\s",
    "total_time_s": rf"total time:[ \t]*{_NUMBER}s\s",
    "total_events": rf"total number of events:[ \t]*{_NUMBER}\s",
    "latency_avg_ms": rf"avg:[ \t]*{_NUMBER}\s",
    "latency_p95_ms": rf"95th percentile:[ \t]*{_NUMBER}\s",
    "threads": rf"Number of threads:[ \t]*{_NUMBER}\s",
    # memory test
    "mib_per_second": rf"MiB transferred \([ \t]*{_NUMBER} MiB/sec\)",
}
#: Figures that must be above zero in a run that did its work (latencies may round to 0.00 ms).
_POSITIVE = ("events_per_second", "total_time_s", "total_events", "threads", "mib_per_second")
#: The report's last line; a report without it (and its newline) was cut off.
_LAST_LINE = re.compile(r"execution time \(avg/stddev\):[ \t]*[0-9.]+/[0-9.]+[ \t]*\n")


def _value(key: str, raw: str) -> float:
    try:
        value = float(raw)
    except ValueError as exc:
        raise ParseError(f"sysbench {key.replace('_', ' ')} is {raw!r}, not a number") from exc
    if not math.isfinite(value):
        raise ParseError(f"sysbench reported {raw} for {key.replace('_', ' ')}: not a measurement")
    return value


def parse(text: str, seconds: float | None = None) -> dict[str, float]:
    """Figures present in a sysbench report; ParseError if it is not one complete, plausible run.
    `seconds`: the --time asked; a shorter total time means the run was cut short."""
    if "FATAL" in text:
        line = next(line for line in text.splitlines() if "FATAL" in line)
        raise ParseError(f"sysbench failed: {line.strip()}")
    reports = text.count("General statistics:")
    if reports == 0:
        raise ParseError("sysbench output has no report ('General statistics'): the run did not complete "
                         "(killed by a signal?)")
    if reports > 1:
        raise ParseError(f"sysbench output holds {reports} reports: duplicated records")
    if not _LAST_LINE.search(text):
        raise ParseError("sysbench report is cut off before its last line ('execution time (avg/stddev)')")
    found = {}
    for key, pattern in _FIELDS.items():
        match = re.search(pattern, text)
        if match:
            found[key] = _value(key, match.group(1))
    if "total_time_s" not in found:
        raise ParseError("sysbench output has no 'total time' line: the run did not complete")
    for key in _POSITIVE:
        if key in found:
            positive("sysbench", key.replace("_", " "), found[key])
    for key in ("latency_avg_ms", "latency_p95_ms"):
        if key in found:
            positive("sysbench", key.replace("_", " "), found[key], zero_ok=True)
    ran_long_enough("sysbench", found["total_time_s"], seconds)
    return found


_MEMORY_FIELDS = {
    "block_bytes": (rf"block size:[ \t]*{_NUMBER}KiB", 1024.0),
    "ops_per_second": (rf"Total operations:\s*[0-9]+\s*\(\s*{_NUMBER} per second\)", 1.0),
}


def memory(text: str, seconds: float | None = None) -> dict[str, float]:
    """A `sysbench memory` report: mib_per_second, ops_per_second, block_bytes, total_time_s, threads.

    ParseError when the run failed or reported no transfer rate (e.g. `--memory-oper=none`).
    """
    figures = parse(text, seconds)
    if "mib_per_second" not in figures:
        raise ParseError("sysbench memory output has no 'MiB transferred (... MiB/sec)' line")
    for key, (pattern, scale) in _MEMORY_FIELDS.items():
        match = re.search(pattern, text)
        if match:
            figures[key] = positive("sysbench", key.replace("_", " "), _value(key, match.group(1))) * scale
    if "block_bytes" not in figures:
        raise ParseError("sysbench memory output has no 'block size' line: is this a memory test?")
    return figures
