"""Rate time series from the tools' interval reports, and when a rate settles.

- sysbench `--report-interval=1`: lines `[ 3s ] thds: 1 eps: 931.54 lat (ms,95%): 4.57` -> events/s
- fio `--write_bw_log=P --log_avg_msec=N`: lines `time_ms, KiB/s, direction, bs, offset` -> bytes/s
- iperf3 `-J`: `intervals[].sum` (end seconds, bits_per_second) -> bits/s
A series is a list of (end time in s, rate). Implausible series (empty, non-finite or negative rates,
times that do not increase) are a ParseError, never a figure.
"""

from __future__ import annotations

import math
import re
import statistics

from scenarios.parsers import ParseError
from scenarios.parsers._json import find_object

Series = list[tuple[float, float]]

_SYSBENCH_LINE = re.compile(r"^\[\s*(\d+(?:\.\d+)?)s\s*\]\s+thds:\s*\d+\s+eps:\s*([0-9.eE+-]+|nan|inf)", re.MULTILINE)


def _checked(series: Series, tool: str) -> Series:
    if not series:
        raise ParseError(f"{tool}: no interval reports in the output")
    previous = -math.inf
    for t, rate in series:
        if not math.isfinite(rate) or rate < 0:
            raise ParseError(f"{tool}: implausible interval rate {rate!r} at {t} s")
        if t <= previous:
            raise ParseError(f"{tool}: interval times do not increase ({previous} s then {t} s)")
        previous = t
    return series


def sysbench_intervals(text: str) -> Series:
    """events/s per interval from sysbench's intermediate reports."""
    return _checked([(float(t), float(eps)) for t, eps in _SYSBENCH_LINE.findall(text)], "sysbench")


def fio_bw_log(text: str) -> Series:
    """bytes/s per logging window from a fio bandwidth log (KiB/s in the file)."""
    series: Series = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        fields = [f.strip() for f in line.split(",")]
        try:
            if len(fields) < 5:  # time, value, direction, block size, offset: fewer is a cut-off line
                raise ValueError(f"{len(fields)} fields")
            series.append((int(fields[0]) / 1000.0, int(fields[1]) * 1024.0))
        except (IndexError, ValueError) as exc:
            raise ParseError(f"fio bandwidth log: line {number} is not 'time_ms, KiB/s, ...': {line[:80]!r}") from exc
    return _checked(series, "fio bandwidth log")


def iperf3_intervals(text: str) -> Series:
    """bits/s per interval from iperf3 -J."""
    data = find_object(text, "iperf3").data
    if data.get("error"):
        raise ParseError(f"iperf3 failed: {data['error']}")
    series: Series = []
    for interval in data.get("intervals") or []:
        total = (interval or {}).get("sum") or {}
        if total.get("omitted"):
            continue
        try:
            series.append((float(total["end"]), float(total["bits_per_second"])))
        except (KeyError, TypeError, ValueError) as exc:
            raise ParseError(f"iperf3: an interval lacks end/bits_per_second: {total!r}") from exc
    return _checked(series, "iperf3")


def steady_rate(series: Series, tail_fraction: float = 0.5) -> float:
    """The settled rate: the median of the last `tail_fraction` of the intervals (at least one)."""
    count = max(1, round(len(series) * tail_fraction))
    return statistics.median(rate for _, rate in series[-count:])


def settle_time(series: Series, band: float = 0.15, keep: float = 0.8) -> float | None:
    """Seconds until the rate is within ±band of the steady rate and mostly stays there: the end time
    of the first in-band interval from which at least `keep` of the intervals are in the band (a
    busy host adds single out-of-band intervals). An upper bound at the reporting resolution (a limit
    that held from the start settles 'within the first interval'). None when it never settles."""
    steady = steady_rate(series)
    inside = [abs(rate - steady) <= band * steady for _, rate in series]
    for index, ok in enumerate(inside):
        rest = inside[index:]
        if ok and sum(rest) >= keep * len(rest):
            return series[index][0]
    return None
