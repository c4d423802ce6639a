"""Real (root) checks of the limits: memory OOM, CPU quota, pids.max, tc bandwidth (iperf3 to a peer)."""

from __future__ import annotations

import json
import time

import pytest

from runtime.container.cgroups import cgroup_version
from runtime.container.container import Container
from runtime.network.bridge import ensure_bridge, remove_bridge_if_unused
from runtime.network.peer import PeerNamespace
from runtime.spec import InstanceSpec


def test_limits_read_back_from_the_kernel(image, require_root):
    """The spec's limits are what the kernel holds (v1: memory.limit_in_bytes, cpu.cfs_quota_us, pids.max
    per hierarchy; v2: memory.max, memory.swap.max, cpu.max, pids.max in one directory)."""
    spec = InstanceSpec(memory=64 * 2**20, memory_swap=96 * 2**20, cpus=0.5, pids_max=32)
    with Container(spec, [image.rootfs]) as c:
        c.start()
        limits = c.cgroup.limits()
        print(f"cgroup v{cgroup_version()}: {limits}")
        assert limits.memory_bytes == 64 * 2**20
        assert limits.cpus == 0.5 and limits.cpu_period_us == 100_000
        assert limits.pids_max == 32
        if limits.memory_swap_bytes is not None or cgroup_version() == 2:  # v1 without swap accounting: none
            assert limits.memory_swap_bytes == 96 * 2**20
    with Container(InstanceSpec(), [image.rootfs]) as free:
        free.start()
        unlimited = free.cgroup.limits()
        assert (unlimited.memory_bytes, unlimited.cpus, unlimited.pids_max) == (None, None, None)


@pytest.mark.parametrize("userns", [False, True], ids=["plain", "userns"])
def test_memory_limit_oom_kills_hog_not_host(image, require_root, userns):
    spec = InstanceSpec(memory=64 * 2**20, userns=userns)
    with Container(spec, [image.rootfs]) as c:
        c.start()
        hog = c.exec(["python3", "-c", "b = bytearray(256 * 2**20); b[::4096] = b'x' * len(b[::4096])"],
                     timeout=60)
        assert hog.returncode in (-9, 137), hog
        stats = c.stats()
        assert stats.oom_kills and stats.oom_kills >= 1
        assert stats.memory_peak_bytes is not None and stats.memory_peak_bytes <= 64 * 2**20
        assert c.exec(["echo", "alive"]).stdout.strip() == "alive"  # the container (and host) survive


def test_cpu_quota_half_core(image, require_root):
    spec = InstanceSpec(cpus=0.5, cpuset="0-1")
    with Container(spec, [image.rootfs]) as c:
        c.start()
        before, t0 = c.stats().cpu_usage_ns, time.perf_counter()
        burn = c.exec(["sh", "-c", "timeout 3 sh -c 'while :; do :; done' & "
                                   "timeout 3 sh -c 'while :; do :; done' & wait"], timeout=30)
        after, t1 = c.stats().cpu_usage_ns, time.perf_counter()
        assert burn.returncode in (0, 124), burn
        assert before is not None and after is not None
        share = (after - before) / 1e9 / (t1 - t0)
        load = float(open("/proc/loadavg").read().split()[0])
        print(f"cpu quota 0.5: measured {share:.3f} cores over {t1 - t0:.2f} s (host load average {load:.2f})")
        assert c.cgroup.limits().cpus == 0.5  # what the kernel enforces, read back
        assert share <= 0.55  # the quota caps, whatever else runs
        # Reaching the quota needs half a core the host can give: on a host whose 2 cores already run more
        # than 2 other tasks (the CI host is idle; a shared development host is not) the container may get
        # less through contention alone, and only the cap can be checked.
        if load < 1.5:
            assert share >= 0.45
            assert (c.stats().cpu_nr_throttled or 0) > 0


@pytest.mark.parametrize("userns", [False, True], ids=["plain", "userns"])
def test_pids_max_stops_fork_bomb(image, require_root, userns):
    with Container(InstanceSpec(pids_max=32, userns=userns), [image.rootfs]) as c:
        c.start()
        bomb = c.exec(["sh", "-c", "i=0; while [ $i -lt 200 ]; do sleep 30 >/dev/null 2>&1 & i=$((i+1)); "
                                   "done 2>/dev/null; ls -d /proc/[0-9]* | wc -l"], timeout=60)
        stats = c.stats()
        assert stats.pids_current is not None and stats.pids_current <= 32
        assert stats.pids_max_hits and stats.pids_max_hits > 0, bomb
    # destroy killed the sleeps: the cgroup is gone
    assert not c.cgroup.paths()[0].exists()


@pytest.fixture
def bridge(require_root):
    yield ensure_bridge()
    remove_bridge_if_unused()


def _iperf(c: Container, peer: PeerNamespace, reverse: bool) -> float:
    server = peer.popen(["iperf3", "-s", "-1"])
    try:
        for _ in range(50):
            listening = "cat /proc/net/tcp /proc/net/tcp6 2>/dev/null | grep -q ':1451 .* 0A '"
            if peer.run(["sh", "-c", listening]).ok:
                break
            time.sleep(0.05)
        args = ["iperf3", "-c", str(peer.address), "-t", "4", "-O", "1", "-J"] + (["-R"] if reverse else [])
        result = c.exec(args, timeout=60)
        assert result.ok, result.stderr
        return json.loads(result.stdout)["end"]["sum_received"]["bits_per_second"]
    finally:
        server.wait(timeout=30)


def test_tc_bandwidth_100mbit_measured_by_iperf3(image, bridge):
    spec = InstanceSpec(network="bridge", bandwidth=100_000_000)
    with Container(spec, [image.rootfs]) as c, PeerNamespace(bridge, image) as peer:
        c.start()
        assert c.network.address and c.network.address.startswith("10.213.0.")
        for reverse in (False, True):
            rate = _iperf(c, peer, reverse)
            direction = "peer->container" if reverse else "container->peer"
            print(f"tc 100mbit {direction}: {rate / 1e6:.1f} Mbit/s")
            assert 90e6 <= rate <= 110e6


def test_bridge_mode_sees_only_its_own_link(image, bridge):
    with Container(InstanceSpec(network="bridge"), [image.rootfs]) as c:
        c.start()
        assert sorted(c.exec(["ls", "/sys/class/net"]).stdout.split()) == ["eth0", "lo"]
        route = c.exec(["cat", "/proc/net/route"]).stdout
        assert "eth0" in route


def test_blkio_write_throttle_on_direct_io(image, require_root):
    with Container(InstanceSpec(io_write_bps=5_000_000), [image.rootfs]) as c:
        c.start()
        if c.ignored:
            pytest.skip(f"io limits not enforceable here: {c.ignored} (writable layer not on a block device)")
        t0 = time.perf_counter()
        dd = c.exec(["dd", "if=/dev/zero", "of=/tmp/f", "bs=1M", "count=10", "oflag=direct"], timeout=60)
        elapsed = time.perf_counter() - t0
        assert dd.ok, dd.stderr
        rate = 10 * 2**20 / elapsed
        print(f"blkio 5 MB/s write throttle: measured {rate / 1e6:.2f} MB/s")
        assert 4.0e6 <= rate <= 5.6e6
