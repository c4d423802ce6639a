"""The noisy-neighbour scenario's web workload (the Isolation Benchmark Suite's well-behaved load): a static
page served by busybox httpd inside each instance, and an open-loop HTTP client on the host.

Server (`server_command`): `busybox httpd` bound to one address and port, serving one page of
`page_bytes` bytes from a directory of the instance's scratch space; it daemonizes and dies with its
instance (or is started again before the next phase when a stressor killed it).

Client (`drive`): for `seconds`, request k of a target is due at start + k / rate (open loop: a slow
server does not slow the schedule down). A response is *good* when its status is 200, its body is the
whole page, and it is complete within `deadline_s` of the request's due time (so a request the client
itself sent late counts against the deadline too, never in favour). Everything else is bad and counted by
kind (`late`, `status 404`, `short body`, the exception's class). Figure: good / sent, "fraction of
responses" (`Tally.fraction`); zero good responses is no figure (`Tally.why_none`). Only the stdlib
(http.client), and only the addresses the scenario gives (on the suite's bridge).
"""

from __future__ import annotations

import http.client
import math
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

PAGE = "page.html"
MAX_WORKERS = 256  # requests in flight at once, over all targets


@dataclass(frozen=True)
class Target:
    """One instance's web server: where it listens."""

    name: str
    host: str
    port: int


@dataclass
class Tally:
    """One target's requests in one measurement."""

    sent: int = 0
    good: int = 0
    bad: Counter[str] = field(default_factory=Counter)

    def add(self, outcome: str) -> None:
        self.sent += 1
        if outcome == "good":
            self.good += 1
        else:
            self.bad[outcome] += 1

    def merge(self, other: Tally) -> Tally:
        return Tally(self.sent + other.sent, self.good + other.good, self.bad + other.bad)

    @property
    def fraction(self) -> float:
        """good / sent (nan when nothing was sent)."""
        return self.good / self.sent if self.sent else math.nan

    def why_none(self) -> str:
        """Why there is no figure ('' when there is one): nothing sent, or no good response."""
        if not self.sent:
            return "no request was sent"
        if self.good:
            return ""
        kinds = ", ".join(f"{kind} × {count}" for kind, count in self.bad.most_common(4))
        return f"none of {self.sent} responses was good ({kinds})"

    def to_dict(self) -> dict[str, object]:
        return {"sent": self.sent, "good": self.good, "bad": dict(self.bad)}


def classify(status: int | None, body_bytes: int, page_bytes: int, finished_s: float, deadline_s: float) -> str:
    """'good' or the kind of bad response; `finished_s`: seconds from the request's due time to its end."""
    if status is None:
        return "no response"
    if status != 200:
        return f"status {status}"
    if body_bytes != page_bytes:
        return "short body"
    if finished_s > deadline_s:
        return "late"
    return "good"


def schedule(rate: float, seconds: float) -> list[float]:
    """Due times (s from the start) of one target's requests: k / rate for k = 0 .. rate × seconds − 1."""
    return [k / rate for k in range(round(rate * seconds))]


def server_command(directory: str, host: str, port: int, page_bytes: int) -> str:
    """Shell command (run in the instance) that writes the page and starts httpd in the background."""
    return (f"mkdir -p {directory} && head -c {page_bytes} /dev/zero | tr '\\000' x > {directory}/{PAGE} && "
            f"busybox httpd -p {host}:{port} -h {directory} </dev/null >/dev/null 2>&1")


def fetch(target: Target, timeout_s: float) -> tuple[int | None, int, str]:
    """(status, body length, error kind): one GET of the page."""
    connection = http.client.HTTPConnection(target.host, target.port, timeout=max(timeout_s, 0.001))
    try:
        connection.request("GET", f"/{PAGE}", headers={"Connection": "close"})
        response = connection.getresponse()
        return response.status, len(response.read()), ""
    except (OSError, http.client.HTTPException) as exc:
        return None, 0, "timeout" if isinstance(exc, TimeoutError) else type(exc).__name__
    finally:
        connection.close()


def _one(target: Target, due: float, page_bytes: int, deadline_s: float) -> str:
    status, length, error = fetch(target, due + deadline_s - time.monotonic())
    outcome = classify(status, length, page_bytes, time.monotonic() - due, deadline_s)
    if outcome == "no response" and error:
        return "late" if error == "timeout" else error
    return outcome


def drive(targets: list[Target], rate: float, seconds: float, deadline_s: float,
          page_bytes: int) -> dict[str, Tally]:
    """Request every target's page at `rate` per second for `seconds`; the tally per target name."""
    tallies = {t.name: Tally() for t in targets}
    lock = threading.Lock()
    workers = min(MAX_WORKERS, max(4, math.ceil(rate * len(targets) * deadline_s * 1.5)))
    due_times = sorted((d, i) for i in range(len(targets)) for d in schedule(rate, seconds))

    def request(target: Target, due: float) -> None:
        outcome = _one(target, due, page_bytes, deadline_s)
        with lock:
            tallies[target.name].add(outcome)

    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="isolab-web") as pool:
        start = time.monotonic()
        for offset, index in due_times:
            delay = start + offset - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            pool.submit(request, targets[index], start + offset)
    return tallies


def wait_ready(target: Target, page_bytes: int, wait_s: float) -> str:
    """Poll until the page comes back whole ('' then), else the last problem after `wait_s`."""
    end = time.monotonic() + wait_s
    problem = "not tried"
    while True:
        status, length, error = fetch(target, 2.0)
        if status == 200 and length == page_bytes:
            return ""
        problem = error or f"status {status}, {length} of {page_bytes} bytes"
        if time.monotonic() >= end:
            return f"{target.name} at {target.host}:{target.port} did not serve its page within {wait_s:g} s " \
                   f"({problem})"
        time.sleep(0.2)
