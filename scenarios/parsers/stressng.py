"""stress-ng `--yaml` metrics (one record per stressor), checked against its log (stdout/stderr).

A ParseError: YAML that does not end with its document end marker "..." (cut off) or does not parse;
no metrics; a stressor reported twice (duplicated records); a metric that is nan, inf or negative;
zero bogo-ops (stress-ng's own "all bogo-op counters are zero" case); a run whose wall-clock time is
short of the seconds asked -- stress-ng stopped by SIGINT or SIGTERM writes complete-looking YAML,
says "successful run completed in 2.55s" and exits 0; and a log with a "fail:" line or
"unsuccessful run" (e.g. "metrics-check: stressor metrics corrupted, data is compromised").
"info:" and "metrc:" log lines are informational.
"""

from __future__ import annotations

import math
import re

import yaml

from scenarios.parsers import ParseError, positive, ran_long_enough

_LOG_FAILURES = re.compile(r"^.*(stress-ng: fail:|unsuccessful run completed|metrics-check:.*"
                           r"(corrupted|compromised|counters are zero)).*$", re.MULTILINE)


def check_log(log: str) -> None:
    """ParseError naming stress-ng's own failure line, if its log has one."""
    match = _LOG_FAILURES.search(log)
    if match:
        raise ParseError(f"stress-ng reported a failure: {match.group(0).strip()[:200]}")


def parse_yaml(text: str) -> dict[str, dict[str, float]]:
    """stressor name -> its numeric metrics (bogo-ops, bogo-ops-per-second-real-time, ...)."""
    if text.strip() and not re.search(r"^\.\.\.\s*$", text, re.MULTILINE):
        raise ParseError("stress-ng YAML is cut off: it lacks the '...' end-of-document line")
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ParseError(f"stress-ng YAML is not readable: {str(exc).splitlines()[0]}") from exc
    if not isinstance(data, dict) or not isinstance(data.get("metrics"), list) or not data["metrics"]:
        raise ParseError("stress-ng YAML has no metrics section: the run did not complete")
    metrics: dict[str, dict[str, float]] = {}
    for entry in data["metrics"]:
        if not isinstance(entry, dict) or "stressor" not in entry:
            raise ParseError(f"stress-ng YAML metrics entry without a stressor: {entry!r}")
        name = str(entry["stressor"])
        if name in metrics:
            raise ParseError(f"stress-ng YAML reports stressor {name!r} twice: duplicated records")
        metrics[name] = {}
        for key, value in entry.items():
            if key == "stressor" or isinstance(value, bool) or not isinstance(value, int | float):
                continue
            if math.isnan(value) or math.isinf(value) or value < 0:
                raise ParseError(f"stress-ng reported {value} for {name} {key}: not a measurement")
            metrics[name][str(key)] = float(value)
    return metrics


def _stressor(text: str, stressor: str, seconds: float | None, log: str | None) -> dict[str, float]:
    if log is not None:
        check_log(log)
    metrics = parse_yaml(text)
    if stressor not in metrics:
        raise ParseError(f"stress-ng YAML has no metrics for stressor {stressor!r} (has: {', '.join(metrics)})")
    found = metrics[stressor]
    if "bogo-ops" in found:
        positive("stress-ng", f"{stressor} bogo-ops", found["bogo-ops"])
    ran_long_enough(f"stress-ng {stressor}", found.get("wall-clock-time"), seconds)
    return found


def metric(text: str, stressor: str, key: str = "bogo-ops-per-second-real-time", seconds: float | None = None,
           log: str | None = None) -> float:
    """One metric of one stressor; ParseError when the run did not report it (e.g. cut short).
    `seconds`: the -t asked; `log`: stress-ng's stdout and stderr, checked for failure lines."""
    found = _stressor(text, stressor, seconds, log)
    if key not in found:
        raise ParseError(f"stress-ng YAML for {stressor!r} lacks {key!r}: the output is incomplete")
    return positive("stress-ng", f"{stressor} {key}", found[key])


_STREAM_KEYS = {
    "read_mb_per_s": "memory-read-rate-mb-per-sec",
    "write_mb_per_s": "memory-write-rate-mb-per-sec",
    "mflop_per_s": "memory-rate-mflop-per-sec",
}


def stream_rates(text: str, seconds: float | None = None, log: str | None = None) -> dict[str, float]:
    """The stream stressor's memory rates (read/write MB/s, Mflop/s) from `--yaml` output.

    stress-ng 0.15 computes them only when the stressor ran long enough (about 5 s); a shorter run
    reports bogo-ops alone, which is a ParseError saying so.
    """
    found = _stressor(text, "stream", seconds, log)
    rates = {name: found[key] for name, key in _STREAM_KEYS.items() if key in found}
    if "read_mb_per_s" not in rates or "write_mb_per_s" not in rates:
        raise ParseError("stress-ng stream reported no memory rate: the run was too short to determine it "
                         "(stress-ng needs about 5 s of stream time)")
    return {name: positive("stress-ng", f"stream {name}", value) for name, value in rates.items()}
