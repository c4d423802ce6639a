"""runtime.lxc.config: an InstanceSpec rendered as an LXC 5 config (pure text), and the host facts parser."""

from pathlib import Path

import pytest

from runtime.container.cgroups.v2 import shares_to_weight
from runtime.errors import SpecError
from runtime.lxc import config, host
from runtime.spec import InstanceSpec

WHERE = config.Placement("lxc-0123abcd", Path("/run/isolab/lxc-0123abcd/rootfs"),
                         Path("/run/isolab/lxc-0123abcd/isl0123abcd/lxc.log"))


def pairs(text: str) -> list[tuple[str, str]]:
    return [tuple(part.strip() for part in line.split("=", 1)) for line in text.splitlines()
            if line and not line.startswith("#")]


def test_defaults_root_cgroup_placement_and_network_none():
    text, ignored = config.render(InstanceSpec(hostname="probe"), WHERE, version=1)
    got = pairs(text)
    assert got[0] == ("lxc.include", "/usr/share/lxc/config/common.conf")  # Debian's defaults, first
    assert ("lxc.uts.name", "probe") in got
    assert ("lxc.rootfs.path", "dir:/run/isolab/lxc-0123abcd/rootfs") in got
    assert ("lxc.net.0.type", "empty") in got and ("lxc.net.0.flags", "up") in got
    assert ("lxc.cgroup.dir.container", "isolab/lxc-0123abcd") in got
    assert ("lxc.cgroup.dir.container.inner", "inner") in got
    assert ("lxc.cgroup.dir.monitor", "isolab/lxcmon-0123abcd") in got
    assert not any(k == "lxc.seccomp.profile" or k == "lxc.apparmor.profile" for k, _ in got)
    assert ignored == {}


def test_v1_limits_in_the_order_the_kernel_accepts_them():
    spec = InstanceSpec(cpus=0.5, cpuset="0", cpu_shares=512, memory=96 << 20, memory_swap=128 << 20,
                        pids_max=48, io_write_bps=1 << 20, io_read_iops=100)
    text, ignored = config.render(spec, WHERE, version=1, io_device="8:0")
    got = [p for p in pairs(text) if p[0].startswith("lxc.cgroup.") and ".dir" not in p[0]]
    assert got == [("lxc.cgroup.cpuset.cpus", "0"), ("lxc.cgroup.cpu.shares", "512"),
                   ("lxc.cgroup.cpu.cfs_period_us", "100000"), ("lxc.cgroup.cpu.cfs_quota_us", "50000"),
                   ("lxc.cgroup.memory.limit_in_bytes", str(96 << 20)),
                   ("lxc.cgroup.memory.memsw.limit_in_bytes", str(128 << 20)),
                   ("lxc.cgroup.pids.max", "48"),
                   ("lxc.cgroup.blkio.throttle.write_bps_device", f"8:0 {1 << 20}"),
                   ("lxc.cgroup.blkio.throttle.read_iops_device", "8:0 100")]
    assert ignored == {}


def test_v2_limits():
    spec = InstanceSpec(cpus=1.5, memory=64 << 20, pids_max=10, io_read_bps=1000, cpu_shares=1024)
    got = pairs(config.render(spec, WHERE, version=2, io_device="254:0")[0])
    assert ("lxc.cgroup2.cpu.max", "150000 100000") in got
    assert ("lxc.cgroup2.memory.max", str(64 << 20)) in got and ("lxc.cgroup2.memory.swap.max", "0") in got
    assert ("lxc.cgroup2.pids.max", "10") in got and ("lxc.cgroup2.io.max", "254:0 rbps=1000") in got
    assert ("lxc.cgroup2.cpu.weight", str(shares_to_weight(1024))) in got  # as our runtime converts
    assert not any(k.startswith("lxc.cgroup.") and ".dir" not in k for k, _ in got)


def test_what_cannot_be_set_is_reported_not_dropped_silently():
    spec = InstanceSpec(memory=64 << 20, memory_swap=96 << 20, io_write_bps=1000, bandwidth=10**6)
    _, ignored = config.render(spec, WHERE, version=1, io_device=None, memsw=False)
    assert ignored == {"memory_swap": 96 << 20, "io_write_bps": 1000, "bandwidth": 10**6}
    _, ignored = config.render(InstanceSpec(network="bridge", bandwidth=10**6), WHERE, version=1)
    assert ignored == {}  # tc on the veth, by runtime.container.netsetup


def test_host_network_unconfined_volume_env_and_apparmor():
    where = config.Placement(WHERE.instance_id, WHERE.rootfs, WHERE.log_file, Path("/var/tmp/isolab/v"))
    spec = InstanceSpec(network="host", seccomp="unconfined", volume=True, env={"A": "b c"})
    got = pairs(config.render(spec, where, version=1, apparmor_profile="unconfined")[0])
    assert ("lxc.net.0.type", "none") in got and ("lxc.net.0.flags", "up") not in got
    assert ("lxc.seccomp.profile", "") in got  # clears common.conf's, after the include
    assert ("lxc.mount.entry", "/var/tmp/isolab/v mnt none bind,nodev,nosuid,create=dir 0 0") in got
    assert ("lxc.environment", "A=b c") in got and ("lxc.apparmor.profile", "unconfined") in got
    with pytest.raises(SpecError, match="a newline cannot go into the container config"):
        config.render(InstanceSpec(env={"A": "x\nlxc.cap.drop ="}), WHERE, version=1)


def test_lxc_net_setting(tmp_path: Path):
    path = tmp_path / "lxc-net"
    assert host.lxc_net_setting(path) is None
    path.write_text('# comment\nUSE_LXC_BRIDGE="true"\nLXC_ADDR=10.0.3.1\nUSE_LXC_BRIDGE="false"  # ours\n')
    assert host.lxc_net_setting(path) == "false"
    path.write_text("USE_LXC_BRIDGE=true\n")
    assert host.lxc_net_setting(path) == "true"


def test_v1_disk_throttles_are_repeated_for_the_inner_cgroup_only_on_v1():
    spec = InstanceSpec(io_read_bps=10 << 20, io_write_iops=50, memory=64 << 20)
    assert config.inner_io_lines(spec, 1, "8:0") == [("blkio.throttle.read_bps_device", f"8:0 {10 << 20}"),
                                                     ("blkio.throttle.write_iops_device", "8:0 50")]
    assert config.inner_io_lines(spec, 2, "8:0") == [] and config.inner_io_lines(spec, 1, None) == []
