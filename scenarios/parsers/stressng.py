"""stress-ng `--yaml` metrics: one record per stressor."""

from __future__ import annotations

import yaml

from scenarios.parsers import ParseError


def parse_yaml(text: str) -> dict[str, dict[str, float]]:
    """stressor name -> its numeric metrics (bogo-ops, bogo-ops-per-second-real-time, ...)."""
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
        metrics[str(entry["stressor"])] = {
            key: float(value) for key, value in entry.items()
            if key != "stressor" and isinstance(value, int | float)
        }
    return metrics


def metric(text: str, stressor: str, key: str = "bogo-ops-per-second-real-time") -> float:
    """One metric of one stressor; ParseError when the run did not report it (e.g. cut short)."""
    metrics = parse_yaml(text)
    if stressor not in metrics:
        raise ParseError(f"stress-ng YAML has no metrics for stressor {stressor!r} (has: {', '.join(metrics)})")
    if key not in metrics[stressor]:
        raise ParseError(f"stress-ng YAML for {stressor!r} lacks {key!r}: the output is incomplete")
    return metrics[stressor][key]


_STREAM_KEYS = {
    "read_mb_per_s": "memory-read-rate-mb-per-sec",
    "write_mb_per_s": "memory-write-rate-mb-per-sec",
    "mflop_per_s": "memory-rate-mflop-per-sec",
}


def stream_rates(text: str) -> dict[str, float]:
    """The stream stressor's memory rates (read/write MB/s, Mflop/s) from `--yaml` output.

    stress-ng 0.15 computes them only when the stressor ran long enough (about 5 s); a shorter run
    reports bogo-ops alone, which is a ParseError saying so.
    """
    metrics = parse_yaml(text)
    if "stream" not in metrics:
        raise ParseError(f"stress-ng YAML has no metrics for stressor 'stream' (has: {', '.join(metrics)})")
    found = {name: metrics["stream"][key] for name, key in _STREAM_KEYS.items() if key in metrics["stream"]}
    if "read_mb_per_s" not in found or "write_mb_per_s" not in found:
        raise ParseError("stress-ng stream reported no memory rate: the run was too short to determine it "
                         "(stress-ng needs about 5 s of stream time)")
    return found
