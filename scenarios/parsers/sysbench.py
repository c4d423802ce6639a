"""sysbench 1.0 reports: the figures we keep, read from its fixed-format report."""

from __future__ import annotations

import re

from scenarios.parsers import ParseError

_FIELDS = {
    "events_per_second": r"events per second:\s*([0-9.]+)",
    "total_time_s": r"total time:\s*([0-9.]+)s",
    "total_events": r"total number of events:\s*([0-9]+)",
    "latency_avg_ms": r"avg:\s*([0-9.]+)",
    "latency_p95_ms": r"95th percentile:\s*([0-9.]+)",
    "threads": r"Number of threads:\s*([0-9]+)",
    # memory test
    "mib_per_second": r"MiB transferred \(([0-9.]+) MiB/sec\)",
}


def parse(text: str) -> dict[str, float]:
    """Figures present in a sysbench report; ParseError if it is not a completed run."""
    if "FATAL" in text:
        line = next(line for line in text.splitlines() if "FATAL" in line)
        raise ParseError(f"sysbench failed: {line.strip()}")
    found = {}
    for key, pattern in _FIELDS.items():
        match = re.search(pattern, text)
        if match:
            found[key] = float(match.group(1))
    if "total_time_s" not in found:
        raise ParseError("sysbench output has no 'total time' line: the run did not complete")
    return found


_MEMORY_FIELDS = {
    "block_bytes": (r"block size:\s*([0-9]+)KiB", 1024.0),
    "ops_per_second": (r"Total operations:\s*[0-9]+\s*\(\s*([0-9.]+) per second\)", 1.0),
}


def memory(text: str) -> dict[str, float]:
    """A `sysbench memory` report: mib_per_second, ops_per_second, block_bytes, total_time_s, threads.

    ParseError when the run failed or reported no transfer rate (e.g. `--memory-oper=none`).
    """
    figures = parse(text)
    if "mib_per_second" not in figures:
        raise ParseError("sysbench memory output has no 'MiB transferred (... MiB/sec)' line")
    for key, (pattern, scale) in _MEMORY_FIELDS.items():
        match = re.search(pattern, text)
        if match:
            figures[key] = float(match.group(1)) * scale
    if "block_bytes" not in figures:
        raise ParseError("sysbench memory output has no 'block size' line: is this a memory test?")
    return figures
