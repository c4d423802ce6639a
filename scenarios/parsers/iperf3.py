"""iperf3 `-J` results: the end-of-test throughput as received, retransmits and CPU use.

iperf3 3.x reports failures inside its JSON (an "error" key, e.g. "unable to connect to server",
"control socket has closed unexpectedly") and may still exit 0, and some versions print
"iperf3: error - ..." as plain text after the JSON; values it could not compute are C's `-nan`.
Each of these is a ParseError naming iperf3's own message. So are: a zero, negative or nan received
rate; a test that covered less than its duration (a client stopped by a signal reports
"interrupt - the client has terminated" with the seconds it managed); a second JSON document
(duplicated records). Warning lines before the JSON ("warning: Report format (-f) flag ignored with
JSON output (-J)") are informational and skipped. CPU figures may be nan (they are not samples).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from scenarios.parsers import ParseError, positive, ran_long_enough
from scenarios.parsers._json import find_object, number


@dataclass(frozen=True)
class Iperf3Result:
    received_bits_per_s: float  # what the receiving side got: the figure to report
    sent_bits_per_s: float | None
    seconds: float
    streams: int
    reverse: bool
    retransmits: int | None  # TCP sender's retransmits (None for UDP or when not reported)
    cpu_host_percent: float | None
    cpu_remote_percent: float | None


def _dict(parent: object, key: str) -> dict[str, object]:
    value = parent.get(key) if isinstance(parent, dict) else None
    return value if isinstance(value, dict) else {}


def parse(text: str) -> Iperf3Result:
    trailing = re.search(r"^iperf3: error - (.*)$", text, re.MULTILINE)
    if "{" not in text and trailing:
        raise ParseError(f"iperf3 failed: {trailing.group(1).strip()}")
    embedded = find_object(text, "iperf3")
    data = embedded.data
    if data.get("error"):
        raise ParseError(f"iperf3 failed: {data['error']}")
    trailing = re.search(r"^iperf3: error - (.*)$", embedded.after, re.MULTILINE)
    if trailing:
        raise ParseError(f"iperf3 failed after its report: {trailing.group(1).strip()}")
    end = _dict(data, "end")
    received = _dict(end, "sum_received") or _dict(end, "sum")  # UDP tests have only "sum"
    if not received:
        raise ParseError("iperf3 JSON has no end summary (sum_received): the test did not finish")
    bps = number(received.get("bits_per_second"))
    if bps is None:
        raise ParseError("iperf3 reported a non-number (nan) as the received bits_per_second")
    seconds = number(received.get("seconds")) or 0.0
    if seconds <= 0:
        raise ParseError(f"iperf3 end summary covers {seconds} s: no data was measured")
    positive("iperf3", "the received bits_per_second", bps)
    test_start = _dict(_dict(data, "start"), "test_start")
    ran_long_enough("iperf3", seconds, number(test_start.get("duration")))
    sent = _dict(end, "sum_sent")
    cpu = _dict(end, "cpu_utilization_percent")
    retransmits = number(sent.get("retransmits"))
    if "retransmits" in sent:
        positive("iperf3", "the sender's retransmits", retransmits, zero_ok=True)
    return Iperf3Result(
        received_bits_per_s=bps,
        sent_bits_per_s=number(sent.get("bits_per_second")),
        seconds=seconds,
        streams=int(number(test_start.get("num_streams")) or len(end.get("streams") or []) or 1),  # type: ignore[arg-type]
        reverse=bool(test_start.get("reverse")),
        retransmits=None if retransmits is None else int(retransmits),
        cpu_host_percent=number(cpu.get("host_total")),
        cpu_remote_percent=number(cpu.get("remote_total")),
    )
