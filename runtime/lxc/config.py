"""An LXC 5 container config built from an `InstanceSpec` (pure text: nothing here touches the kernel).

What it sets: Debian's shipped defaults (`lxc.include` of /usr/share/lxc/config/common.conf: LXC's
capability drops, its device allow-list, its denylist seccomp policy, /proc and /sys mounted mixed);
the hostname; the root (`dir:` of the overlay the platform mounted); an init that only waits; the
network (`empty` with lo up: its own netns; `none`: the host's); the cgroups under `isolab/` (limits on
`isolab/<instance id>`, the processes one level below it in `inner`, outside the cgroup namespace, so
a root process inside cannot raise its own limits; LXC's monitor in `isolab/lxcmon-<token>`); the cgroup
limits as `lxc.cgroup.*` (v1) or `lxc.cgroup2.*` (v2), and on v1 the disk throttles once more for the
inner cgroup (`inner_io_lines`: v1's blk-throttle is not hierarchical); the data volume as a bind mount;
the log.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from runtime.container.cgroups.base import CFS_PERIOD_US
from runtime.container.cgroups.v2 import shares_to_weight
from runtime.errors import SpecError
from runtime.naming import CGROUP_PARENT
from runtime.spec import VOLUME_DIR, InstanceSpec

COMMON_CONF = Path("/usr/share/lxc/config/common.conf")
INIT_CMD = "sleep infinity"
#: The container's processes live in this child of the limit cgroup (lxc.cgroup.dir.container.inner).
INNER = "inner"
MONITOR_KIND = "lxcmon"


@dataclass(frozen=True)
class Placement:
    """Where an instance's pieces go on the host."""

    instance_id: str  # e.g. "lxc-3fa2b1c0"
    rootfs: Path  # the mounted overlay
    log_file: Path
    volume: Path | None = None


def monitor_cgroup(instance_id: str) -> str:
    """`lxcmon-<token>`: named like an instance so that the cgroup sweep decides by the same token."""
    return f"{MONITOR_KIND}-{instance_id.rsplit('-', 1)[-1]}"


def cgroup_lines(spec: InstanceSpec, version: int, io_device: str | None,
                 memsw: bool) -> tuple[list[tuple[str, str]], dict[str, object]]:
    """(key, value) pairs of the cgroup limits and the limits left unset (with why, by spec field)."""
    lines: list[tuple[str, str]] = []
    ignored: dict[str, object] = {}
    prefix = "lxc.cgroup2" if version == 2 else "lxc.cgroup"

    def put(key: str, value: object) -> None:
        lines.append((f"{prefix}.{key}", str(value)))

    quota = max(1000, int(spec.cpus * CFS_PERIOD_US)) if spec.cpus is not None else None
    if version == 2:
        if spec.cpuset is not None:
            put("cpuset.cpus", spec.cpuset)
        if spec.cpu_shares is not None:
            put("cpu.weight", shares_to_weight(spec.cpu_shares))
        if quota is not None:
            put("cpu.max", f"{quota} {CFS_PERIOD_US}")
        if spec.memory is not None:
            put("memory.max", spec.memory)
            put("memory.swap.max", max((spec.memory_swap or spec.memory) - spec.memory, 0))
        if spec.pids_max is not None:
            put("pids.max", spec.pids_max)
        io = {"rbps": spec.io_read_bps, "wbps": spec.io_write_bps, "riops": spec.io_read_iops,
              "wiops": spec.io_write_iops}
        set_io = {k: v for k, v in io.items() if v is not None}
        if set_io and io_device is not None:
            put("io.max", f"{io_device} " + " ".join(f"{k}={v}" for k, v in set_io.items()))
    else:
        if spec.cpuset is not None:
            put("cpuset.cpus", spec.cpuset)
        if spec.cpu_shares is not None:
            put("cpu.shares", spec.cpu_shares)
        if quota is not None:
            put("cpu.cfs_period_us", CFS_PERIOD_US)  # the period first: the quota is checked against it
            put("cpu.cfs_quota_us", quota)
        if spec.memory is not None:
            put("memory.limit_in_bytes", spec.memory)  # before memsw, which must not be below it
            if memsw:
                put("memory.memsw.limit_in_bytes", max(spec.memory_swap or spec.memory, spec.memory))
        if spec.memory_swap is not None and not (memsw and spec.memory is not None):
            ignored["memory_swap"] = spec.memory_swap
        if spec.pids_max is not None:
            put("pids.max", spec.pids_max)
        io = {"read_bps_device": spec.io_read_bps, "write_bps_device": spec.io_write_bps,
              "read_iops_device": spec.io_read_iops, "write_iops_device": spec.io_write_iops}
        set_io = {k: v for k, v in io.items() if v is not None}
        if io_device is not None:
            for key, value in set_io.items():
                put(f"blkio.throttle.{key}", f"{io_device} {value}")
    if version == 2 and spec.memory_swap is not None and spec.memory is None:
        ignored["memory_swap"] = spec.memory_swap
    if io_device is None:
        for name in ("io_read_bps", "io_write_bps", "io_read_iops", "io_write_iops"):
            if getattr(spec, name) is not None:
                ignored[name] = getattr(spec, name)
    return lines, ignored


def inner_io_lines(spec: InstanceSpec, version: int, io_device: str | None) -> list[tuple[str, str]]:
    """(blkio file, value) pairs the platform writes into the *inner* cgroup after the start, on v1 only.

    cgroup v1's blk-throttle does not act on the tasks of child cgroups (measured here: a direct read in
    `inner` ran at 135 MB/s under a 10 MiB/s read_bps_device on its parent, crun's container at 9 MB/s),
    so LXC's limit-cgroup setting alone leaves the disk unthrottled. cpu, memory and pids are
    hierarchical in v1 and stay on the parent only; v2's io.max is hierarchical too."""
    if version != 1 or io_device is None:
        return []
    io = {"read_bps_device": spec.io_read_bps, "write_bps_device": spec.io_write_bps,
          "read_iops_device": spec.io_read_iops, "write_iops_device": spec.io_write_iops}
    return [(f"blkio.throttle.{key}", f"{io_device} {value}") for key, value in io.items() if value is not None]


def render(spec: InstanceSpec, where: Placement, *, version: int, io_device: str | None = None,
           memsw: bool = True, apparmor_profile: str | None = None,
           common_conf: Path = COMMON_CONF) -> tuple[str, dict[str, object]]:
    """The config file's text and the limits it leaves unset ({spec field: value})."""
    limits, ignored = cgroup_lines(spec, version, io_device, memsw)
    if spec.bandwidth is not None and spec.network != "bridge":
        ignored["bandwidth"] = spec.bandwidth  # only a veth on the suite bridge gets tc (as for ours)
    if spec.disk_quota is not None:
        ignored["disk_quota"] = spec.disk_quota  # the rootfs is a directory: nothing bounds what it writes
    pairs: list[tuple[str, str]] = [
        ("lxc.include", str(common_conf)),
        ("lxc.uts.name", spec.hostname),
        ("lxc.rootfs.path", f"dir:{where.rootfs}"),
        ("lxc.init.cmd", INIT_CMD),
        ("lxc.log.file", str(where.log_file)),
        ("lxc.log.level", "WARN"),
    ]
    if spec.network == "host":
        pairs.append(("lxc.net.0.type", "none"))
    else:  # none, bridge, nat: an own netns with lo up; bridge/nat get eth0 from runtime.container.netsetup
        pairs += [("lxc.net.0.type", "empty"), ("lxc.net.0.flags", "up")]
    if apparmor_profile is not None:
        pairs.append(("lxc.apparmor.profile", apparmor_profile))
    if spec.seccomp == "unconfined":
        pairs.append(("lxc.seccomp.profile", ""))  # clears common.conf's policy
    pairs += [
        ("lxc.cgroup.dir.container", f"{CGROUP_PARENT}/{where.instance_id}"),
        ("lxc.cgroup.dir.container.inner", INNER),
        ("lxc.cgroup.dir.monitor", f"{CGROUP_PARENT}/{monitor_cgroup(where.instance_id)}"),
    ]
    pairs += limits
    if where.volume is not None:
        target = VOLUME_DIR.lstrip("/")
        pairs.append(("lxc.mount.entry", f"{where.volume} {target} none bind,nodev,nosuid,create=dir 0 0"))
    for key, value in spec.env.items():
        pairs.append(("lxc.environment", f"{key}={value}"))
    for key, value in pairs:
        if "\n" in key or "\n" in value:
            raise SpecError(f"lxc: a newline cannot go into the container config ({key} = {value!r})")
    text = "# isolab: generated from an InstanceSpec (runtime.lxc.config)\n"
    text += "".join(f"{key} = {value}\n" for key, value in pairs)
    return text, ignored
