"""Real (root) container network modes host and nat: the network scenario on them, the port-forward's
confinement to the suite bridges, teardown, and `cleanup` after a SIGKILLed runtime that published ports.

Nat needs nftables with DNAT in the kernel; where it is missing the container must not declare nat
and must refuse it with the reason (checked by whichever of the two tests applies).
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from runtime.container.platform import ContainerPlatform
from runtime.errors import PlatformUnavailable
from runtime.network import nat
from runtime.network.bridge import DEFAULT_BRIDGE, ensure_bridge, remove_bridge_if_unused
from runtime.network.peer import PeerNamespace
from runtime.spec import InstanceSpec
from runtime.sweep import sweep as cleanup
from scenarios import network

REPO = Path(__file__).resolve().parents[2]
needs_nat = pytest.mark.skipif(nat.nat_unavailable() is not None, reason=str(nat.nat_unavailable()))


def _flag(ifname: str) -> str | None:
    path = nat.forwarding_path(ifname)
    return path.read_text().strip() if path.exists() else None


def assert_no_nat_left() -> None:
    """Nothing of ours or of a dead process is published; a run beside the tests may hold its own."""
    from runtime import state

    assert Path("/proc/sys/net/ipv4/ip_forward").read_text().strip() == "0"
    assert Path("/proc/sys/net/ipv4/conf/all/forwarding").read_text().strip() == "0"
    book = nat._read_book()
    assert all(state.Owner(e["pid"], e["start"]).alive() and e["pid"] != os.getpid() for e in book.values())
    if book:
        return  # another live run publishes right now: its table, bridge and flags stay
    assert not nat.table_exists(), "nft table ip isolab left behind"
    assert not Path(f"/sys/class/net/{nat.NAT_BRIDGE}").exists(), "islnat0 left behind"
    assert _flag(DEFAULT_BRIDGE) in (None, "0")


@pytest.fixture
def platform(image, require_root):
    platform = ContainerPlatform(image)
    platform.check_available()
    return platform


@needs_nat
def test_network_scenario_host_and_nat_shrunk(platform):
    raws: dict[str, str] = {}
    params = {**network.PROFILES["quick"], "modes": ["host", "nat"], "seconds": 1, "streams": [1],
              "rr_seconds": 1, "extra_modes": {}}
    samples = network.run_platform(platform, params, raws.__setitem__)
    for mode in ("host", "nat"):
        mine = [s for s in samples if s.metadata["network"] == mode]
        rates = [s for s in mine if s.metric == "iperf3_throughput"]
        assert {s.metadata["direction"] for s in rates} == {"forward", "reverse"}
        assert all(s.value > 0 for s in rates)
        assert {s.metadata["test"] for s in mine if s.metric == "netperf_rr_transactions"} == {"TCP_RR", "UDP_RR"}
    # through the published data port, on the nat container's own host address on the suite bridge
    assert re.search(r"to 10\.213\.0\.\d+ \(\) port 12866", raws["netperf-nat-UDP_RR.txt"])
    assert "host: measured" in raws["network-modes.log"] and "nat: measured" in raws["network-modes.log"]
    assert_no_nat_left()


@needs_nat
def test_nat_is_reachable_only_through_the_published_ports(platform, image):
    bridge = ensure_bridge()
    try:
        with PeerNamespace(bridge, image) as peer, platform.create(InstanceSpec(network="nat")) as inst:
            private, published = inst.address, inst.published_address
            assert private and private.startswith("10.214.0.")
            assert published and published.startswith("10.213.0.") and published != bridge.gateway
            assert nat.table_exists()
            assert _flag(DEFAULT_BRIDGE) == "1" and _flag(nat.NAT_BRIDGE) == "1"
            assert Path("/proc/sys/net/ipv4/conf/all/forwarding").read_text().strip() == "0"
            script = "iperf3 -s -p 5201 -D >/dev/null 2>&1 </dev/null; sleep 0.3; ss -Hltn 'sport = :5201'"
            assert "5201" in inst.exec(["sh", "-c", script], timeout=30).stdout
            through = peer.run(["iperf3", "-c", published, "-p", "5201", "-t", "1", "-J"], timeout=60)
            assert through.ok, through.stdout[-300:]
            # not published: a port nothing forwards, the gateway address; the private address: no route
            assert not peer.run(["iperf3", "-c", published, "-p", "5202", "-t", "1"], timeout=60).ok
            assert not peer.run(["iperf3", "-c", bridge.gateway, "-p", "5201", "-t", "1"], timeout=60).ok
            assert not peer.run(["iperf3", "-c", private, "-p", "5201", "-t", "1"], timeout=60).ok
            # the container cannot open connections towards the suite bridge: only replies go back
            out = inst.exec(["iperf3", "-c", str(peer.address), "-p", "5201", "-t", "1",
                             "--connect-timeout", "1500"], timeout=60)
            assert not out.ok
            # a bridge-mode container routes via the host (10.213.0.1), which forwards on islbr0 now:
            # the forward chain still drops islbr0 -> islnat0 traffic that was not port-forwarded
            with platform.create(InstanceSpec(network="bridge")) as other:
                direct = other.exec(["iperf3", "-c", private, "-p", "5201", "-t", "1",
                                     "--connect-timeout", "1500"], timeout=60)
                assert not direct.ok
                via_published = other.exec(["iperf3", "-c", published, "-p", "5201", "-t", "1"], timeout=60)
                assert via_published.ok, via_published.stdout[-300:]
    finally:
        remove_bridge_if_unused()
    assert_no_nat_left()


@needs_nat
def test_several_nat_containers_publish_the_same_ports_at_once(platform, image):
    """Each nat container publishes on its own host address: three at once; the peer reaches the two that
    run a server through their addresses and is refused at the third; the last one out removes the table."""
    bridge = ensure_bridge()
    try:
        with PeerNamespace(bridge, image) as peer:
            instances = [platform.create(InstanceSpec(network="nat")) for _ in range(3)]
            try:
                published = [i.published_address for i in instances]
                assert len(set(published)) == 3 and all(p and p.startswith("10.213.0.") for p in published)
                for inst in (instances[0], instances[2]):  # servers in two of the three
                    inst.exec(["sh", "-c", "iperf3 -s -p 5201 -D >/dev/null 2>&1 </dev/null; sleep 0.3"], timeout=30)
                for index, address in enumerate(published):  # each address leads to its own container
                    out = peer.run(["iperf3", "-c", str(address), "-p", "5201", "-t", "1"], timeout=60)
                    assert out.ok == (index != 1), (index, out.stdout[-300:], out.stderr[-300:])
            finally:
                for inst in instances:
                    inst.destroy()
    finally:
        remove_bridge_if_unused()
    assert_no_nat_left()


def test_nat_unavailable_is_refused_with_the_reason(platform, monkeypatch):
    import runtime.container.netsetup as netsetup

    monkeypatch.setattr(netsetup, "nat_unavailable", lambda: "nat: the nft command is missing (test)")
    with pytest.raises(PlatformUnavailable, match=r"network mode nat is not available here: .*nft command"):
        platform.create(InstanceSpec(network="nat"))
    assert_no_nat_left()


def test_scenario_notes_a_mode_that_cannot_start(platform, monkeypatch):
    """A platform that declares nat but cannot start it: nat noted without samples, host measured."""
    import runtime.container.netsetup as netsetup

    monkeypatch.setattr(netsetup, "nat_unavailable", lambda: "nat: the nft command is missing (test)")
    monkeypatch.setattr(ContainerPlatform, "network_modes", ("host", "nat"))
    raws: dict[str, str] = {}
    params = {**network.PROFILES["quick"], "modes": ["host", "nat"], "seconds": 1, "streams": [1],
              "directions": ["forward"], "rr_tests": []}
    samples = network.run_platform(platform, params, raws.__setitem__)
    assert {s.metadata["network"] for s in samples} == {"host"}
    assert "nat: could not run: container: network mode nat is not available here" in raws["network-modes.log"]


CRASH = textwrap.dedent("""
    import time
    from runtime.container.container import Container
    from runtime.image.build import ensure_image
    from runtime.spec import InstanceSpec
    c = Container(InstanceSpec(network="nat"), [ensure_image().rootfs])
    c.start()
    print("started", c.instance_id, flush=True)
    time.sleep(60)
""")


@needs_nat
def test_cleanup_after_a_sigkilled_nat_runtime(platform):
    proc = subprocess.Popen([sys.executable, "-c", CRASH], cwd=REPO, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        line = proc.stdout.readline()  # type: ignore[union-attr]
        assert line.startswith("started"), proc.stderr.read() if proc.stderr else ""
        assert nat.table_exists() and _flag(nat.NAT_BRIDGE) == "1"
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    removed = cleanup()
    assert f"nft table ip {nat.TABLE}" in removed
    assert f"forwarding off on {nat.NAT_BRIDGE}" in removed
    assert f"bridge {nat.NAT_BRIDGE}" in removed
    assert_no_nat_left()


@needs_nat
def test_a_dead_publishers_host_address_is_withdrawn(platform):
    """A publisher that died without unpublishing: the next publication (or cleanup) removes its /32 from
    the suite bridge, so the address, free again in the bridge's book, can go to a peer."""
    from runtime import state
    from runtime.network.bridge import allocate_address, release_address

    bridge = ensure_bridge()
    stale = allocate_address(bridge, owner="ct-deadbeef")
    try:
        with state.locked("net-nat"):
            nat._host_address(bridge.name, stale, add=True)
            book = nat._read_book()
            book["ct-deadbeef"] = {"pid": 2**22 + 1, "start": 1, "address": "10.214.0.250", "host_address": stale,
                                   "suite_bridge": bridge.name, "nat_bridge": nat.NAT_BRIDGE,
                                   "ports": [["tcp", 5201]]}
            nat._write_book(book)
        with platform.create(InstanceSpec(network="nat")) as inst:
            assert inst.published_address != stale
            have = subprocess.run(["ip", "-4", "-o", "addr", "show", "dev", bridge.name], capture_output=True,
                                  text=True).stdout
            assert f"{stale}/32" not in have, have
            assert "ct-deadbeef" not in nat._read_book()
    finally:
        release_address(bridge, stale)
        remove_bridge_if_unused()
    assert_no_nat_left()
