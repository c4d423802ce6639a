"""fio `--output-format=json` results: IOPS, bandwidth and completion-latency percentiles per job.

Latencies come out in microseconds whichever fio wrote them: fio >= 3 reports `clat_ns`/`lat_ns`
in nanoseconds, fio 2.x reported `clat`/`lat` in microseconds. Warnings fio prints before its
JSON (e.g. the "note: both iodepth >= 1 and synchronous I/O engine" line) are skipped. A ParseError:
a job that reports an error (e.g. ENOSPC), did no I/O, reports a zero, negative or non-number rate or
latency, or has I/O but no latency samples ("N": 0, fio issue #1478); output that is not readable
JSON (cut off); fio's "terminating on signal" marker (it still prints complete-looking JSON); a
time-based job that ran less than its runtime; a job name reported twice.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from scenarios.parsers import ParseError, positive, ran_long_enough
from scenarios.parsers._json import find_object, number

DIRECTIONS = ("read", "write", "trim")
PERCENTILES = {"p50": 50.0, "p99": 99.0, "p99_9": 99.9}


@dataclass(frozen=True)
class DirectionResult:
    """One direction (read or write) of one fio job."""

    iops: float
    bw_bytes_per_s: float
    io_bytes: int
    runtime_ms: float
    clat_us: dict[str, float] = field(default_factory=dict)  # mean, p50, p99, p99_9 (those reported)


@dataclass(frozen=True)
class JobResult:
    name: str
    options: dict[str, str]
    directions: dict[str, DirectionResult]


def _latency_block(stats: dict[str, object]) -> tuple[dict[str, object], float] | None:
    """(the completion-latency block, factor to microseconds); clat preferred, total lat as fallback."""
    for key, factor in (("clat_ns", 1e-3), ("clat", 1.0), ("clat_us", 1.0), ("lat_ns", 1e-3), ("lat", 1.0)):
        block = stats.get(key)
        if isinstance(block, dict) and (key.startswith("clat") or "percentile" in block):
            return block, factor
    return None


def _percentile(table: dict[str, object], wanted: float) -> float | None:
    for key, value in table.items():
        try:
            if abs(float(key) - wanted) < 1e-6:
                return number(value)
        except ValueError:
            continue
    return None


def _latencies(stats: dict[str, object], where: str) -> dict[str, float]:
    found = _latency_block(stats)
    if found is None:
        return {}
    block, factor = found
    if "N" in block and number(block.get("N")) == 0:
        raise ParseError(f"fio {where}: did I/O but recorded no latency samples (\"N\": 0)")
    out: dict[str, float] = {}
    if "mean" in block:
        out["mean"] = positive("fio", f"{where} mean completion latency", number(block.get("mean"))) * factor
    table = block.get("percentile")
    if isinstance(table, dict):
        for name, wanted in PERCENTILES.items():
            value = _percentile(table, wanted)
            if value is not None or any(_is(key, wanted) for key in table):
                out[name] = positive("fio", f"{where} completion latency {name}", value) * factor
    return out


def _is(key: str, wanted: float) -> bool:
    try:
        return abs(float(key) - wanted) < 1e-6
    except ValueError:
        return False


def _error_line(text: str) -> str:
    """fio's own words about a failure ('fio: pid=0, err=20/file:..., error=Not a directory')."""
    lines = [line.strip() for line in text.splitlines() if re.search(r"\berr(or)?=", line)]
    return lines[-1] if lines else ""


def parse(text: str, runtime_s: float | None = None) -> list[JobResult]:
    """Every job in fio's JSON output, with the directions that did I/O. `runtime_s`: the runtime of a
    time-based job (--time_based --runtime); a job that ran less was cut short."""
    signal = re.search(r"^fio: terminating on signal (\d+)", text, re.MULTILINE)
    if signal:
        raise ParseError(f"fio was interrupted (terminating on signal {signal.group(1)}): its report covers "
                         f"a partial run")
    embedded = find_object(text, "fio")
    jobs = embedded.data.get("jobs")
    if not isinstance(jobs, list) or not jobs:
        raise ParseError("fio JSON has no jobs: the run did not start")
    results = []
    names = [str(job.get("jobname", "?")) for job in jobs if isinstance(job, dict)]
    twice = sorted({name for name in names if names.count(name) > 1})
    if twice:
        raise ParseError(f"fio JSON reports job {', '.join(twice)} more than once: duplicated result records")
    for job in jobs:
        if not isinstance(job, dict):
            raise ParseError(f"fio JSON job entry is not an object: {job!r:.80}")
        name = str(job.get("jobname", "?"))
        error = job.get("error", 0)
        if error:
            why = _error_line(embedded.before + embedded.after)
            raise ParseError(f"fio job {name} failed with error {error}" + (f": {why}" if why else ""))
        directions = {}
        for direction in DIRECTIONS:
            stats = job.get(direction)
            if not isinstance(stats, dict):
                continue
            io_bytes = number(stats.get("io_bytes")) or 0.0
            if io_bytes < 0:
                raise ParseError(f"fio job {name} {direction}: io_bytes is negative ({io_bytes:g})")
            if io_bytes == 0:
                continue
            where = f"job {name} {direction}"
            iops, bw = number(stats.get("iops")), number(stats.get("bw_bytes"))
            if bw is None and number(stats.get("bw")) is not None:  # fio 2.x: bw in KiB/s only
                bw = float(stats["bw"]) * 1024  # type: ignore[arg-type]
            if iops is None or bw is None:
                raise ParseError(f"fio job {name} {direction}: iops or bandwidth missing or not a number")
            directions[direction] = DirectionResult(iops=positive("fio", f"{where} IOPS", iops),
                                                    bw_bytes_per_s=positive("fio", f"{where} bandwidth", bw),
                                                    io_bytes=int(io_bytes),
                                                    runtime_ms=number(stats.get("runtime")) or 0.0,
                                                    clat_us=_latencies(stats, where))
        if not directions:
            raise ParseError(f"fio job {name} did no I/O")
        options = job.get("job options")
        options = {str(k): str(v) for k, v in options.items()} if isinstance(options, dict) else {}
        if runtime_s:
            ran = number(job.get("job_runtime"))
            ran_long_enough(f"fio job {name}", None if ran is None else ran / 1000, runtime_s)
        results.append(JobResult(name, options, directions))
    return results


def job(text: str, name: str | None = None, runtime_s: float | None = None) -> JobResult:
    """The job called `name` (or the only job); ParseError if it is not there."""
    results = parse(text, runtime_s)
    if name is None:
        if len(results) != 1:
            raise ParseError(f"fio output has {len(results)} jobs, expected one")
        return results[0]
    for result in results:
        if result.name == name:
            return result
    raise ParseError(f"fio output has no job {name!r} (has: {', '.join(r.name for r in results)})")
