"""Limits read back from cgroup files, v1 and v2 layouts, on temporary directories shaped like the kernel's."""

from __future__ import annotations

from pathlib import Path

from runtime.container.cgroups.base import CgroupLimits, limit_value
from runtime.container.cgroups.v1 import CgroupV1
from runtime.container.cgroups.v2 import CgroupV2
from runtime.spec import InstanceSpec


def test_limit_value_reads_numbers_and_the_ways_of_saying_unlimited():
    assert limit_value("67108864\n") == 64 * 2**20
    assert limit_value("max\n") is None  # v2
    assert limit_value("-1\n") is None  # v1 cpu.cfs_quota_us
    assert limit_value("9223372036854771712\n") is None  # v1 memory.limit_in_bytes, no limit
    assert limit_value("") is None  # file absent (controller not joined)


def test_v1_limits_read_back_per_hierarchy(tmp_path: Path):
    hierarchies = {c: tmp_path / c for c in ("memory", "cpu", "pids")}
    cg = CgroupV1("ct-0001", hierarchies)
    cg.create()
    cg.apply(InstanceSpec(memory=64 * 2**20, cpus=0.5, pids_max=32), None)
    limits = cg.limits()
    assert limits == CgroupLimits(memory_bytes=64 * 2**20, memory_swap_bytes=None, cpu_quota_us=50_000,
                                  cpu_period_us=100_000, pids_max=32)
    assert limits.cpus == 0.5


def test_v2_limits_read_back_from_one_directory(tmp_path: Path):
    (tmp_path / "cgroup.controllers").write_text("cpu io memory pids\n")
    (tmp_path / "cgroup.subtree_control").write_text("")
    cg = CgroupV2("ct-0002", tmp_path, device_filter=False)
    cg.create()
    cg.apply(InstanceSpec(memory=64 * 2**20, memory_swap=96 * 2**20, cpus=0.25, pids_max=16), None)
    limits = cg.limits()
    assert limits == CgroupLimits(memory_bytes=64 * 2**20, memory_swap_bytes=96 * 2**20, cpu_quota_us=25_000,
                                  cpu_period_us=100_000, pids_max=16)


def test_v2_unlimited_cgroup_reads_as_none(tmp_path: Path):
    d = tmp_path / "isolab" / "ct-0003"
    d.mkdir(parents=True)
    for name, text in (("memory.max", "max\n"), ("memory.swap.max", "max\n"), ("cpu.max", "max 100000\n"),
                       ("pids.max", "max\n")):
        (d / name).write_text(text)
    limits = CgroupV2("ct-0003", tmp_path).limits()
    assert limits == CgroupLimits()
    assert limits.cpus is None
