"""A host-side heartbeat: a small subprocess on the host that sleeps 10 ms in a loop and records how late
each wake-up was, so a scenario can show whether a stressor inside an instance reached the host.

The child is a separate Python process (not a thread of the harness, whose own GIL contention would be
measured otherwise). It sleeps with `select` on its stdin for the period: closing stdin (or the parent
dying) ends it at once, so it never outlives the harness. On exit it prints the lateness of every
wake-up in ms as JSON. `lateness_stats` is pure: p99 (nearest rank) and max of those values.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass

PERIOD_S = 0.010

_CHILD = r"""
import json, select, sys, time
period = float(sys.argv[1])
late = []
last = time.monotonic()
while True:
    ready, _, _ = select.select([sys.stdin], [], [], period)
    now = time.monotonic()
    if ready:
        break
    late.append(max(0.0, (now - last - period) * 1000.0))
    last = now
sys.stdout.write(json.dumps(late))
"""


class HeartbeatError(RuntimeError):
    """The heartbeat child could not start or produced no readable record."""


@dataclass(frozen=True)
class Lateness:
    """Wake-up lateness of a heartbeat period, in ms."""

    n: int
    p99_ms: float
    max_ms: float
    mean_ms: float


def percentile_nearest_rank(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0 < q <= 100) by the nearest-rank rule: a value that occurred, never interpolated."""
    if not values:
        raise ValueError("no values")
    if not 0 < q <= 100:
        raise ValueError(f"percentile {q} outside (0, 100]")
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return float(ordered[rank - 1])


def lateness_stats(late_ms: Sequence[float]) -> Lateness:
    """p99 / max / mean lateness; ValueError on no values or a non-finite or negative one."""
    if not late_ms:
        raise ValueError("the heartbeat recorded no wake-ups")
    bad = [v for v in late_ms if not math.isfinite(v) or v < 0]
    if bad:
        raise ValueError(f"the heartbeat recorded impossible lateness values: {bad[:3]}")
    return Lateness(n=len(late_ms), p99_ms=percentile_nearest_rank(late_ms, 99), max_ms=float(max(late_ms)),
                    mean_ms=float(sum(late_ms) / len(late_ms)))


class Heartbeat:
    """`with Heartbeat() as hb: ...` then `hb.late_ms` (every wake-up's lateness in ms)."""

    def __init__(self, period_s: float = PERIOD_S) -> None:
        self.period_s = period_s
        self.late_ms: list[float] = []
        self._proc: subprocess.Popen[str] | None = None

    def __enter__(self) -> Heartbeat:
        try:
            self._proc = subprocess.Popen([sys.executable, "-c", _CHILD, str(self.period_s)], stdin=subprocess.PIPE,
                                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        except OSError as exc:
            raise HeartbeatError(f"cannot start the host heartbeat: {exc}") from exc
        return self

    def stop(self) -> list[float]:
        proc, self._proc = self._proc, None
        if proc is None:
            return self.late_ms
        try:
            out, err = proc.communicate(input="", timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()
            raise HeartbeatError("the host heartbeat did not stop within 10 s") from None
        try:
            self.late_ms = [float(v) for v in json.loads(out)]
        except (ValueError, TypeError) as exc:
            raise HeartbeatError(f"the host heartbeat exited {proc.returncode} without a record: "
                                 f"{err.strip()[-200:] or out[:200]!r}") from exc
        return self.late_ms

    def __exit__(self, *exc: object) -> None:
        proc = self._proc
        if proc is not None and exc[0] is not None:  # failing: make sure the child goes, keep the first error
            proc.kill()
            proc.communicate()
            self._proc = None
        elif proc is not None:
            self.stop()
