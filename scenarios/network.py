"""Network throughput and request/response latency between the instance and a peer on the suite's bridge,
in each network mode the platform supports.

iperf3 TCP (`-J`): forward (instance sends to the peer) and reverse (the peer sends to the instance),
with 1 and 4 parallel streams; the figure is what the receiver got. netperf omni TCP_RR and UDP_RR
(one-byte request/response unless `rr_sizes` sets [request, response] bytes, `-- -r`, and then the
samples carry `rr_size`, e.g. 100x200; `-- -o` selectors, fixed data port `-- -P`): p50/p90/p99/mean latency and
transactions/s. Every sample carries `network: <mode>`.

Modes (profile `modes`, measured only where `platform.network_modes` has them; one instance per mode,
created here and always destroyed):
  bridge  the instance has its own address on the suite bridge; servers in the peer, clients in the
          instance, traffic to the peer's address.
  host    the instance shares the host's netns, which holds the suite bridge's gateway address; servers
          in the peer, clients in the instance bound (`-B`/`-L`) to that gateway address, so traffic
          flows only between the gateway and the peer on the suite bridge.
  nat     the instance sits on a private bridge and is reachable only through ports published with
          DNAT on the suite bridge's host address (runtime.network.nat.PUBLISHED_PORTS): servers in the
          instance, clients in the peer, traffic to the host address. Directions keep their meaning
          (forward = the instance sends), so the peer's client runs with `-R` for forward.
The first measured mode gets the full profile; the others get `extra_modes` overrides (quick: fewer,
shorter tests), which keeps a platform's repetition short. A mode the platform declares but cannot
start here (PlatformUnavailable, e.g. no nftables for nat) is noted in `network-modes.log` without
samples; only when no mode could be measured is it a ScenarioError.

The peer is a network namespace on the suite's own bridge (runtime.network, not a platform), chrooted
into the same image, so both ends run the same iperf3/netperf binaries. Each repetition creates the
peer and always destroys it (and the bridge, once nothing uses it). Traffic goes only to the peer's
address or the bridge's host address, both checked to lie in the bridge's subnet first.
"""

from __future__ import annotations

import ipaddress
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from runtime.errors import PlatformUnavailable
from runtime.platform import Instance, Platform
from runtime.spec import ExecResult, InstanceSpec
from scenarios.base import DAY_S, MEMORY_BUS_MB_S, Range, RawSink, Sample, ScenarioError, require_tools
from scenarios.parsers import ParseError, iperf3, netperf

NAME = "network"
DESCRIPTION = ("iperf3 TCP Gbit/s both directions with 1 and 4 streams; netperf TCP_RR/UDP_RR latency "
               "percentiles; per network mode (bridge, host, nat port-forward)")
TOOLS = ("iperf3", "netperf")
PRECISION_METRICS = ("iperf3_throughput", "netperf_rr_transactions")  # CV of these decides extension
PEER_TOOLS = ("iperf3", "netperf", "netserver", "ss")
SERVER_TOOLS = ("iperf3", "netserver", "ss")  # in the instance when it runs the servers (nat)
_IPERF3_KEYS = ("direction", "network", "protocol", "streams")
_RR_KEYS = ("network", "rr_size", "test")  # rr_size only when the profile sets request/response sizes
#: What this scenario emits: metric -> (unit, metadata keys that make up its variant). Claims and reports
#: check against this; tests check it against the code below.
METRICS: dict[str, tuple[str, tuple[str, ...]]] = {
    "iperf3_throughput": ("Gbit/s", _IPERF3_KEYS), "iperf3_retransmits": ("segments", _IPERF3_KEYS),
    "netperf_rr_latency_p50": ("µs", _RR_KEYS), "netperf_rr_latency_p90": ("µs", _RR_KEYS),
    "netperf_rr_latency_p99": ("µs", _RR_KEYS), "netperf_rr_latency_mean": ("µs", _RR_KEYS),
    "netperf_rr_transactions": ("trans/s", _RR_KEYS),
}
BUSY_RETRIES = 3  # iperf3 "the server is busy running a test": retry after a second

#: netperf omni output selectors, in the order asked for and parsed.
RR_SELECTORS = ("P50_LATENCY", "P90_LATENCY", "P99_LATENCY", "MEAN_LATENCY", "STDDEV_LATENCY", "MIN_LATENCY",
                "MAX_LATENCY", "THROUGHPUT", "THROUGHPUT_UNITS", "TRANSACTION_RATE", "ELAPSED_TIME", "PROTOCOL")
_RR_METRICS = (("P50_LATENCY", "netperf_rr_latency_p50", "µs"), ("P90_LATENCY", "netperf_rr_latency_p90", "µs"),
               ("P99_LATENCY", "netperf_rr_latency_p99", "µs"), ("MEAN_LATENCY", "netperf_rr_latency_mean", "µs"),
               ("TRANSACTION_RATE", "netperf_rr_transactions", "trans/s"))

_RR_LATENCY = Range("lower", DAY_S * 1e6, "a day")
RANGES: dict[str, Range] = {
    # Bridge, veth and loopback have no link speed: every byte crosses the memory bus at least once.
    "iperf3_throughput": Range("higher", MEMORY_BUS_MB_S * 8e6 / 1e9,
                                "the memory bus (1 TB/s) bounds a software link"),
    "iperf3_retransmits": Range("lower", zero_ok=True),
    **{metric: _RR_LATENCY for _, metric, unit in _RR_METRICS if unit == "µs"},
    "netperf_rr_transactions": Range("higher", 1e7, "a round trip under 0.1 µs: faster than any "
                                      "kernel network stack"),
}

PROFILES: dict[str, dict[str, object]] = {
    "quick": {
        "modes": ["bridge", "host", "nat"],
        "seconds": 2, "omit_s": 0, "streams": [1, 4], "directions": ["forward", "reverse"],
        "rr_tests": ["TCP_RR", "UDP_RR"], "rr_seconds": 2, "rr_sizes": [],
        "iperf3_port": 5201, "netperf_port": 12865, "netperf_data_port": 12866, "server_wait_s": 20,
        # modes after the first: one stream, TCP_RR only, 2 s tests (about 7 s a mode)
        "extra_modes": {"seconds": 2, "streams": [1], "rr_tests": ["TCP_RR"], "rr_seconds": 2},
    },
    "full": {
        "modes": ["bridge", "host", "nat"],
        "seconds": 30, "omit_s": 2, "streams": [1, 4], "directions": ["forward", "reverse"],
        "rr_tests": ["TCP_RR", "UDP_RR"], "rr_seconds": 30, "rr_sizes": [],
        "iperf3_port": 5201, "netperf_port": 12865, "netperf_data_port": 12866, "server_wait_s": 20,
        "extra_modes": {},  # every mode gets every test
    },
}


@contextmanager
def _peer() -> Iterator[tuple[Any, Any]]:
    """(peer, bridge): a PeerNamespace on the suite's bridge, always destroyed; the bridge goes too once
    unused."""
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
            for what, addr in (("peer address", peer.address), ("bridge host address", bridge.gateway)):
                if addr is None or ipaddress.ip_address(addr) not in subnet:
                    raise ScenarioError(f"network: {what} {addr} is not on bridge {bridge.name} "
                                        f"({bridge.subnet}); refusing to send traffic")
            yield peer, bridge
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


def _wait_listening(run: Callable[[list[str]], ExecResult], port: int, wait_s: float, what: str,
                    alive: Callable[[], str | None] = lambda: None) -> None:
    """Poll `ss` (through `run`) until something listens on TCP `port`; `alive` names an early death."""
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        died = alive()
        if died:
            raise ScenarioError(f"network: {what} {died}")
        listening = run(["ss", "-Hltn", f"sport = :{port}"])
        if listening.ok and listening.stdout.strip():
            return
        time.sleep(0.1)
    raise ScenarioError(f"network: {what} did not listen on port {port} within {wait_s:.0f} s")


def _start_server(peer: Any, argv: list[str], port: int, wait_s: float) -> None:
    """Start a server in the peer and wait until it listens on `port` (TCP)."""
    try:
        proc = peer.popen(argv)
    except (OSError, subprocess.SubprocessError) as exc:
        raise ScenarioError(f"network: cannot start {argv[0]} in peer {peer.netns}: {exc}") from exc

    def alive() -> str | None:
        if proc.poll() is None:
            return None
        _, err = proc.communicate()
        return f"exited {proc.returncode}: {err.strip()[-200:]}"

    _wait_listening(lambda a: _in_peer(peer, a, timeout=30), port, wait_s, f"{argv[0]} in the peer", alive)


def _start_servers_in_instance(instance: Instance, params: dict[str, object], wait_s: float) -> None:
    """nat: iperf3 and netserver as daemons in the instance (they die with it), listening on all addresses."""
    iperf3_port, netperf_port = int(params["iperf3_port"]), int(params["netperf_port"])  # type: ignore[call-overload]
    script = (f"iperf3 -s -p {iperf3_port} -D >/dev/null 2>&1 </dev/null || exit 3; "
              f"netserver -p {netperf_port} >/dev/null 2>&1 </dev/null || exit 4")
    started = instance.exec(["sh", "-c", script], timeout=60)
    if not started.ok:
        failed = {3: "iperf3 -s -D", 4: "netserver"}.get(started.returncode, "sh")
        raise ScenarioError(f"network: {failed} did not start in the {instance.platform} instance "
                            f"(exit {started.returncode}: {started.stderr_tail()})")
    for port in (iperf3_port, netperf_port):
        _wait_listening(lambda a: instance.exec(a, timeout=30), port, wait_s,
                        f"the server in the {instance.platform} instance")


@dataclass
class _Ends:
    """Who runs the clients, where they connect, and whether the client is the instance."""

    mode: str
    where: str  # e.g. "container (nat)", for messages
    client: Callable[[list[str], float], ExecResult]
    target: str
    client_is_instance: bool
    bind: str | None = None  # host mode: the suite bridge's host address


def _checked(result: ExecResult, ends: _Ends) -> ExecResult:
    if result.returncode != 0:
        side = "instance" if ends.client_is_instance else "peer"
        raise ScenarioError(f"{result.argv[0]} exited {result.returncode} in the {side} on {ends.where}: "
                            f"{result.stderr_tail() or result.stdout.strip()[-200:]}")
    return result


def _iperf3(ends: _Ends, params: dict[str, object], raw: RawSink) -> list[Sample]:
    seconds, omit = int(params["seconds"]), int(params.get("omit_s") or 0)  # type: ignore[call-overload]
    samples = []
    for direction in params["directions"]:  # type: ignore[attr-defined]
        for streams in params["streams"]:  # type: ignore[attr-defined]
            argv = ["iperf3", "-c", ends.target, "-p", str(params["iperf3_port"]), "-t", str(seconds),
                    "-P", str(streams), "-J", "--connect-timeout", "10000"]
            if ends.bind:
                argv += ["-B", ends.bind]
            if omit:
                argv += ["-O", str(omit)]
            if (direction == "reverse") == ends.client_is_instance:  # the server side sends
                argv.append("-R")
            for attempt in range(BUSY_RETRIES + 1):
                result = ends.client(argv, (seconds + omit) * 4 + 120)
                raw(f"iperf3-{ends.mode}-{direction}-P{streams}.json", result.stdout + result.stderr)
                try:
                    parsed = iperf3.parse(result.stdout + result.stderr)
                    break
                except ParseError as exc:
                    if "busy" in str(exc) and attempt < BUSY_RETRIES:  # the server is still closing the last test
                        time.sleep(1.0)
                        continue
                    raise ScenarioError(f"network: iperf3 {direction} -P {streams} on {ends.where}: "
                                        f"{exc}") from exc
            _checked(result, ends)
            meta = {"network": ends.mode, "protocol": "tcp", "direction": direction, "streams": streams}
            samples.append(Sample("iperf3_throughput", parsed.received_bits_per_s / 1e9, "Gbit/s", meta))
            if parsed.retransmits is not None:
                samples.append(Sample("iperf3_retransmits", float(parsed.retransmits), "segments", meta))
    return samples


def _netperf(ends: _Ends, params: dict[str, object], raw: RawSink) -> list[Sample]:
    seconds = int(params["rr_seconds"])  # type: ignore[call-overload]
    samples = []
    for test in params["rr_tests"]:  # type: ignore[attr-defined]
        argv = ["netperf", "-H", ends.target, "-p", str(params["netperf_port"]), "-l", str(seconds), "-t", test]
        if ends.bind:
            argv += ["-L", ends.bind]
        argv += ["--", "-P", f",{params['netperf_data_port']}", "-o", ",".join(RR_SELECTORS)]
        sizes = params.get("rr_sizes")  # [request, response] bytes; netperf's default is one byte each way
        if sizes:
            argv += ["-r", ",".join(str(int(n)) for n in sizes)]  # type: ignore[attr-defined]
        result = ends.client(argv, seconds * 4 + 120)
        raw(f"netperf-{ends.mode}-{test}.txt", result.stdout + result.stderr)
        try:
            values = netperf.parse(result.stdout + result.stderr, RR_SELECTORS, seconds)
        except ParseError as exc:
            raise ScenarioError(f"network: netperf {test} on {ends.where}: {exc}") from exc
        _checked(result, ends)
        meta: dict[str, object] = {"network": ends.mode, "test": test}
        if sizes:
            # request x response bytes; no comma: a variant label separates its pairs with commas
            meta["rr_size"] = "x".join(str(int(n)) for n in sizes)  # type: ignore[attr-defined]
        for selector, metric, unit in _RR_METRICS:
            samples.append(Sample(metric, float(values[selector]), unit, meta))
    return samples


def _check_published(params: dict[str, object]) -> None:
    """nat: the ports the profile uses must be among those the runtime publishes."""
    from runtime.network.nat import PUBLISHED_PORTS

    wanted = {("tcp", int(params["iperf3_port"])), ("tcp", int(params["netperf_port"])),  # type: ignore[call-overload]
              ("tcp", int(params["netperf_data_port"])), ("udp", int(params["netperf_data_port"]))}  # type: ignore[call-overload]
    missing = sorted(wanted - set(PUBLISHED_PORTS))
    if missing:
        raise ScenarioError(f"network: nat publishes only {', '.join(f'{n}/{p}' for p, n in PUBLISHED_PORTS)}; "
                            f"the profile needs {', '.join(f'{n}/{p}' for p, n in missing)}")


class _PeerServers:
    """iperf3 -s and netserver in the peer, started on first need and reused by later modes."""

    def __init__(self, peer: Any, params: dict[str, object], wait_s: float) -> None:
        self.peer, self.params, self.wait_s, self.started = peer, params, wait_s, False

    def ensure(self) -> None:
        if self.started:
            return
        port = int(self.params["iperf3_port"])  # type: ignore[call-overload]
        _start_server(self.peer, ["iperf3", "-s", "-p", str(port)], port, self.wait_s)
        port = int(self.params["netperf_port"])  # type: ignore[call-overload]
        _start_server(self.peer, ["netserver", "-D", "-p", str(port)], port, self.wait_s)
        self.started = True


def measure_mode(instance: Instance, mode: str, params: dict[str, object], raw: RawSink, peer: Any,
                 bridge: Any, servers: _PeerServers) -> list[Sample]:
    """iperf3 and netperf between `instance` (in network mode `mode`) and the peer."""
    wait_s = float(params.get("server_wait_s") or 20)  # type: ignore[arg-type]
    where = f"{instance.platform} ({mode})"
    require_tools(instance, TOOLS + (SERVER_TOOLS if mode == "nat" else ()))
    if mode == "nat":
        _check_published(params)
        published = instance.published_address
        if published is None or ipaddress.ip_address(published) not in ipaddress.ip_network(bridge.subnet):
            raise ScenarioError(f"network: {where}: published address {published} is not on bridge {bridge.name} "
                                f"({bridge.subnet}); refusing to send traffic")
        _start_servers_in_instance(instance, params, wait_s)
        ends = _Ends(mode, where, lambda argv, timeout: _in_peer(peer, argv, timeout), published, False)
    elif mode in ("bridge", "host"):
        servers.ensure()
        ends = _Ends(mode, where, lambda argv, timeout: instance.exec(argv, timeout=timeout), peer.address, True,
                     bridge.gateway if mode == "host" else None)
    else:
        raise ScenarioError(f"network: mode {mode!r} has no peer to measure against (bridge, host or nat)")
    samples: list[Sample] = []
    if params.get("directions") and params.get("streams"):
        samples += _iperf3(ends, params, raw)
    if params.get("rr_tests"):
        samples += _netperf(ends, params, raw)
    return samples


def run_platform(platform: Platform, params: dict[str, object], raw: RawSink) -> list[Sample]:
    wanted = list(params.get("modes") or ["bridge"])  # type: ignore[call-overload]
    supported = tuple(platform.network_modes)
    modes = [m for m in wanted if m in supported]
    log = [f"platform {platform.name}: network modes {', '.join(supported)}; profile asks for {', '.join(wanted)}"]
    log += [f"{m}: not measured: {platform.name} does not support it" for m in wanted if m not in supported]
    if not modes:
        raw("network-modes.log", "\n".join(log) + "\n")
        raise ScenarioError(f"network: {platform.name} supports none of the modes {', '.join(wanted)} "
                            f"(it has {', '.join(supported)})")
    samples: list[Sample] = []
    measured: list[str] = []
    unavailable: dict[str, str] = {}
    try:
        with _peer() as (peer, bridge):
            missing = _in_peer(peer, ["sh", "-c", 'for t in "$@"; do command -v "$t" >/dev/null || echo "$t"; done',
                                      "sh", *PEER_TOOLS]).stdout.split()
            if missing:
                raise ScenarioError(f"network: {', '.join(missing)} not found in the image the peer runs")
            servers = _PeerServers(peer, params, float(params.get("server_wait_s") or 20))  # type: ignore[arg-type]
            for mode in modes:
                mode_params = params if not measured else {
                    **params, **dict(params.get("extra_modes") or {})}  # type: ignore[call-overload]
                began = time.monotonic()
                try:
                    instance = platform.create(InstanceSpec(network=mode))
                except PlatformUnavailable as exc:
                    unavailable[mode] = str(exc)
                    log.append(f"{mode}: could not run: {exc}")
                    continue
                with instance:
                    samples += measure_mode(instance, mode, mode_params, raw, peer, bridge, servers)
                measured.append(mode)
                log.append(f"{mode}: measured in {time.monotonic() - began:.1f} s")
    finally:
        raw("network-modes.log", "\n".join(log) + "\n")
    if not measured:
        raise ScenarioError(f"network: no network mode could run on {platform.name}: "
                            + "; ".join(f"{m}: {why}" for m, why in unavailable.items()))
    return samples
