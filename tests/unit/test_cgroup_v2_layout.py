"""cgroup v2 file layout written for a spec, checked on a temporary directory shaped like /sys/fs/cgroup."""

from __future__ import annotations

from pathlib import Path

import pytest

from runtime.container.cgroups.base import keyed
from runtime.container.cgroups.v2 import CgroupV2, shares_to_weight
from runtime.spec import InstanceSpec


@pytest.fixture
def root(tmp_path: Path) -> Path:
    (tmp_path / "cgroup.controllers").write_text("cpuset cpu io memory hugetlb pids rdma misc\n")
    (tmp_path / "cgroup.subtree_control").write_text("")
    return tmp_path


def test_container_cgroup_v2_create_enables_controllers_down_the_tree(root):
    cg = CgroupV2("ct-0001", root, device_filter=False)
    cg.create()
    assert (root / "cgroup.subtree_control").read_text() == "+cpuset +cpu +io +memory +pids"
    assert (root / "isolab" / "cgroup.subtree_control").read_text() == "+cpuset +cpu +io +memory +pids"
    assert (root / "isolab" / "ct-0001").is_dir()
    assert cg.procs_files() == [root / "isolab" / "ct-0001" / "cgroup.procs"]


def test_container_cgroup_v2_limits_map_to_v2_files(root):
    cg = CgroupV2("ct-0002", root, device_filter=False)
    cg.create()
    spec = InstanceSpec(cpus=0.5, cpuset="0-1", cpu_shares=1024, memory=64 * 2**20,
                        memory_swap=96 * 2**20, pids_max=64, io_read_bps=1_000_000, io_write_iops=100)
    ignored = cg.apply(spec, "254:0")
    d = root / "isolab" / "ct-0002"
    assert ignored == {}
    assert (d / "cpu.max").read_text() == "50000 100000"
    assert (d / "cpuset.cpus").read_text() == "0-1"
    assert (d / "cpu.weight").read_text() == "39"
    assert (d / "memory.max").read_text() == str(64 * 2**20)
    assert (d / "memory.swap.max").read_text() == str(32 * 2**20)
    assert (d / "pids.max").read_text() == "64"
    assert (d / "io.max").read_text() == "254:0 rbps=1000000 wiops=100"


def test_container_cgroup_v2_io_limits_ignored_without_block_device(root):
    cg = CgroupV2("ct-0003", root, device_filter=False)
    cg.create()
    ignored = cg.apply(InstanceSpec(io_write_bps=5), None)
    assert ignored == {"io_write_bps": 5}
    assert not (root / "isolab" / "ct-0003" / "io.max").exists()


def test_container_cgroup_v2_memory_without_swap_means_no_swap(root):
    cg = CgroupV2("ct-0004", root, device_filter=False)
    cg.create()
    cg.apply(InstanceSpec(memory=1000), None)
    assert (root / "isolab" / "ct-0004" / "memory.swap.max").read_text() == "0"


def test_container_cgroup_v2_stats_read_v2_counters(root):
    cg = CgroupV2("ct-0005", root, device_filter=False)
    cg.create()
    d = root / "isolab" / "ct-0005"
    (d / "cpu.stat").write_text("usage_usec 1500\nuser_usec 1000\nsystem_usec 500\n"
                                "nr_periods 10\nnr_throttled 4\nthrottled_usec 250\n")
    (d / "memory.events").write_text("low 0\nhigh 0\nmax 7\noom 2\noom_kill 1\n")
    (d / "memory.current").write_text("4096\n")
    (d / "memory.peak").write_text("8192\n")
    (d / "pids.current").write_text("3\n")
    (d / "pids.events").write_text("max 5\n")
    stats = cg.stats()
    assert stats.cpu_usage_ns == 1_500_000
    assert stats.cpu_throttled_ns == 250_000
    assert stats.cpu_nr_throttled == 4
    assert (stats.memory_bytes, stats.memory_peak_bytes, stats.oom_kills) == (4096, 8192, 1)
    assert (stats.pids_current, stats.pids_max_hits) == (3, 5)


def test_container_cgroup_v2_shares_to_weight_endpoints():
    assert shares_to_weight(2) == 1
    assert shares_to_weight(262144) == 10000
    assert shares_to_weight(1024) == 39
    assert keyed("a 1\nb x\nc -2\n") == {"a": 1, "c": -2}
