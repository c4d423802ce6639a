"""Network throughput and request/response latency between the instance and a peer on the suite's bridge.

iperf3 TCP (`-J`): forward (instance sends to the peer) and reverse (`-R`, the peer sends to the
instance), with 1 and 4 parallel streams; the figure is what the receiver got. netperf omni TCP_RR and
UDP_RR (one-byte request/response, `-- -o` selectors): p50/p90/p99/mean latency and transactions/s.

The peer is a network namespace on the suite's own bridge (runtime.network, not a platform), chrooted
into the same image, so both ends run the same iperf3/netperf binaries. Servers (iperf3 -s, netserver)
run in the peer, clients in the instance. Each `run` creates the peer and always destroys it (and the
bridge, once nothing uses it), because the harness does not call `cleanup` after a failed run.
Traffic goes only to the peer's address, which is checked to lie in the bridge's subnet first.
"""

from __future__ import annotations

import ipaddress
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from runtime.platform import Instance
from runtime.spec import ExecResult, InstanceSpec
from scenarios.base import RawSink, Sample, ScenarioError, check, require_tools
from scenarios.parsers import ParseError, iperf3, netperf

NAME = "network"
DESCRIPTION = "iperf3 TCP Gbit/s both directions with 1 and 4 streams; netperf TCP_RR/UDP_RR latency percentiles"
TOOLS = ("iperf3", "netperf")
PRECISION_METRICS = ("iperf3_throughput", "netperf_rr_transactions")  # CV of these decides extension
PEER_TOOLS = ("iperf3", "netserver", "ss")
BUSY_RETRIES = 3  # iperf3 "the server is busy running a test": retry after a second

#: netperf omni output selectors, in the order asked for and parsed.
RR_SELECTORS = ("P50_LATENCY", "P90_LATENCY", "P99_LATENCY", "MEAN_LATENCY", "STDDEV_LATENCY", "MIN_LATENCY",
                "MAX_LATENCY", "THROUGHPUT", "THROUGHPUT_UNITS", "TRANSACTION_RATE", "ELAPSED_TIME", "PROTOCOL")
_RR_METRICS = (("P50_LATENCY", "netperf_rr_latency_p50", "µs"), ("P90_LATENCY", "netperf_rr_latency_p90", "µs"),
               ("P99_LATENCY", "netperf_rr_latency_p99", "µs"), ("MEAN_LATENCY", "netperf_rr_latency_mean", "µs"),
               ("TRANSACTION_RATE", "netperf_rr_transactions", "trans/s"))

PROFILES: dict[str, dict[str, object]] = {
    "quick": {
        "seconds": 5, "omit_s": 0, "streams": [1, 4], "directions": ["forward", "reverse"],
        "rr_tests": ["TCP_RR", "UDP_RR"], "rr_seconds": 5,
        "iperf3_port": 5201, "netperf_port": 12865, "server_wait_s": 20,
    },
    "full": {
        "seconds": 30, "omit_s": 2, "streams": [1, 4], "directions": ["forward", "reverse"],
        "rr_tests": ["TCP_RR", "UDP_RR"], "rr_seconds": 30,
        "iperf3_port": 5201, "netperf_port": 12865, "server_wait_s": 20,
    },
}


def instance_spec(params: dict[str, object]) -> InstanceSpec:
    return InstanceSpec(network="bridge")


def prepare(instance: Instance, params: dict[str, object]) -> None:
    require_tools(instance, TOOLS)


@contextmanager
def _peer() -> Iterator[Any]:
    """A PeerNamespace on the suite's bridge, always destroyed; the bridge goes too once unused."""
    from runtime.image.build import ensure_image
    from runtime.network.bridge import ensure_bridge, remove_bridge_if_unused
    from runtime.network.peer import PeerNamespace

    try:
        bridge = ensure_bridge()
    except OSError as exc:  # pyroute2's NetlinkError is an OSError
        raise ScenarioError(f"network: cannot set up the suite bridge: {exc}") from exc
    try:
        try:
            peer_ns = PeerNamespace(bridge, ensure_image())
        except OSError as exc:
            raise ScenarioError(f"network: cannot create the peer namespace on {bridge.name}: {exc}") from exc
        with peer_ns as peer:
            subnet = ipaddress.ip_network(bridge.subnet)
            if peer.address is None or ipaddress.ip_address(peer.address) not in subnet:
                raise ScenarioError(f"network: peer address {peer.address} is not on bridge {bridge.name} "
                                    f"({bridge.subnet}); refusing to send traffic")
            yield peer
    finally:
        try:
            remove_bridge_if_unused(bridge.name)
        except OSError:
            pass  # left for `python -m bench cleanup`; never mask the scenario's own outcome


def _in_peer(peer: Any, argv: list[str], timeout: float = 60) -> ExecResult:
    """peer.run, with a vanished netns (e.g. removed by a concurrent cleanup) as a ScenarioError."""
    try:
        return peer.run(argv, timeout=timeout)
    except (OSError, subprocess.SubprocessError) as exc:
        raise ScenarioError(f"network: cannot run {argv[0]} in peer {peer.netns}: {exc} "
                            f"(does /run/netns/{peer.netns} still exist?)") from exc


def _start_server(peer: Any, argv: list[str], port: int, wait_s: float) -> None:
    """Start a server in the peer and wait until it listens on `port` (TCP)."""
    try:
        proc = peer.popen(argv)
    except (OSError, subprocess.SubprocessError) as exc:
        raise ScenarioError(f"network: cannot start {argv[0]} in peer {peer.netns}: {exc}") from exc
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            _, err = proc.communicate()
            raise ScenarioError(f"network: {argv[0]} in the peer exited {proc.returncode}: {err.strip()[-200:]}")
        listening = _in_peer(peer, ["ss", "-Hltn", f"sport = :{port}"], timeout=30)
        if listening.ok and listening.stdout.strip():
            return
        time.sleep(0.1)
    raise ScenarioError(f"network: {argv[0]} in the peer did not listen on port {port} within {wait_s:.0f} s")


def _iperf3(instance: Instance, params: dict[str, object], raw: RawSink, address: str) -> list[Sample]:
    seconds, omit = int(params["seconds"]), int(params.get("omit_s") or 0)  # type: ignore[call-overload]
    samples = []
    for direction in params["directions"]:  # type: ignore[attr-defined]
        for streams in params["streams"]:  # type: ignore[attr-defined]
            argv = ["iperf3", "-c", address, "-p", str(params["iperf3_port"]), "-t", str(seconds),
                    "-P", str(streams), "-J", "--connect-timeout", "10000"]
            if omit:
                argv += ["-O", str(omit)]
            if direction == "reverse":
                argv.append("-R")
            for attempt in range(BUSY_RETRIES + 1):
                result = instance.exec(argv, timeout=(seconds + omit) * 4 + 120)
                raw(f"iperf3-{direction}-P{streams}.json", result.stdout + result.stderr)
                try:
                    parsed = iperf3.parse(result.stdout + result.stderr)
                    break
                except ParseError as exc:
                    if "busy" in str(exc) and attempt < BUSY_RETRIES:  # the server is still closing the last test
                        time.sleep(1.0)
                        continue
                    raise ScenarioError(f"network: iperf3 {direction} -P {streams} on {instance.platform}: "
                                        f"{exc}") from exc
            check(result, instance)
            meta = {"protocol": "tcp", "direction": direction, "streams": streams}
            samples.append(Sample("iperf3_throughput", parsed.received_bits_per_s / 1e9, "Gbit/s", meta))
            if parsed.retransmits is not None:
                samples.append(Sample("iperf3_retransmits", float(parsed.retransmits), "segments", meta))
    return samples


def _netperf(instance: Instance, params: dict[str, object], raw: RawSink, address: str) -> list[Sample]:
    seconds = int(params["rr_seconds"])  # type: ignore[call-overload]
    samples = []
    for test in params["rr_tests"]:  # type: ignore[attr-defined]
        argv = ["netperf", "-H", address, "-p", str(params["netperf_port"]), "-l", str(seconds), "-t", test,
                "--", "-o", ",".join(RR_SELECTORS)]
        result = instance.exec(argv, timeout=seconds * 4 + 120)
        raw(f"netperf-{test}.txt", result.stdout + result.stderr)
        try:
            values = netperf.parse(result.stdout + result.stderr, RR_SELECTORS)
        except ParseError as exc:
            raise ScenarioError(f"network: netperf {test} on {instance.platform}: {exc}") from exc
        check(result, instance)
        meta = {"test": test}
        for selector, metric, unit in _RR_METRICS:
            samples.append(Sample(metric, float(values[selector]), unit, meta))
    return samples


def run(instance: Instance, params: dict[str, object], raw: RawSink) -> list[Sample]:
    wait_s = float(params.get("server_wait_s") or 20)  # type: ignore[arg-type]
    with _peer() as peer:
        missing = _in_peer(peer, ["sh", "-c", 'for t in "$@"; do command -v "$t" >/dev/null || echo "$t"; done',
                                  "sh", *PEER_TOOLS]).stdout.split()
        if missing:
            raise ScenarioError(f"network: {', '.join(missing)} not found in the image the peer runs")
        samples: list[Sample] = []
        if params.get("directions") and params.get("streams"):
            port = int(params["iperf3_port"])  # type: ignore[call-overload]
            _start_server(peer, ["iperf3", "-s", "-p", str(port)], port, wait_s)
            samples += _iperf3(instance, params, raw, peer.address)
        if params.get("rr_tests"):
            port = int(params["netperf_port"])  # type: ignore[call-overload]
            _start_server(peer, ["netserver", "-D", "-p", str(port)], port, wait_s)
            samples += _netperf(instance, params, raw, peer.address)
    return samples
