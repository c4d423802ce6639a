"""cgroup v1: one directory per controller hierarchy, e.g. /sys/fs/cgroup/memory/isolab/<id>.

Controllers used: cpu (shares, CFS quota), cpuacct (usage), cpuset, memory (limit, memsw, OOM count),
blkio (throttle.*), pids, devices (deny all but Docker's device list, cgroups.devices), freezer
(joined, for completeness).
"""

from __future__ import annotations

import time
from pathlib import Path

from runtime.container.cgroups.base import (
    CFS_PERIOD_US,
    FREEZE_TIMEOUT_S,
    IO_FIELDS,
    Cgroup,
    CgroupLimits,
    CgroupStats,
    keyed,
    kill_procs,
    limit_value,
    mkdir,
    read,
    rmdir_retry,
    thaw,
    write,
)
from runtime.container.cgroups.devices import DEFAULT_RULES
from runtime.errors import InstanceError
from runtime.naming import CGROUP_PARENT
from runtime.spec import InstanceSpec

CONTROLLERS = ("cpu", "cpuacct", "cpuset", "memory", "blkio", "pids", "devices", "freezer")



def v1_hierarchies(mountinfo: str = "/proc/self/mountinfo") -> dict[str, Path]:
    """controller name -> mount point of its v1 hierarchy (co-mounted controllers share one)."""
    found: dict[str, Path] = {}
    with open(mountinfo) as info:
        for line in info:
            left, _, right = line.partition(" - ")
            fields = right.split()
            if not fields or fields[0] != "cgroup":
                continue
            options = fields[2].split(",") if len(fields) > 2 else []
            for opt in options:
                if opt in CONTROLLERS:
                    found.setdefault(opt, Path(left.split()[4]))
    return found


#: Hierarchies every container joins (usage read-back, device rules); others only when a limit needs them.
ALWAYS = ("cpu", "cpuacct", "memory", "pids", "devices", "freezer")


def needed_controllers(spec: InstanceSpec | None) -> set[str] | None:
    """The v1 controllers a spec needs (None = all, e.g. for cleanup). Fewer hierarchies start faster."""
    if spec is None:
        return None
    needed = set(ALWAYS)
    if spec.cpuset is not None:
        needed.add("cpuset")
    if any(getattr(spec, k) is not None for k in IO_FIELDS):
        needed.add("blkio")
    return needed


class CgroupV1(Cgroup):
    version = 1

    def __init__(self, name: str, hierarchies: dict[str, Path], controllers: set[str] | None = None) -> None:
        self.name = name
        self.hierarchies = hierarchies
        wanted = set(hierarchies) if controllers is None else controllers
        # co-mounted controllers (e.g. cpu,cpuacct) share a directory: keep all of a wanted mount's names
        mounts = {hierarchies[c] for c in wanted if c in hierarchies}
        self.dirs = {c: root / CGROUP_PARENT / name for c, root in hierarchies.items() if root in mounts}
        self._unique = list(dict.fromkeys(self.dirs.values()))

    def paths(self) -> list[Path]:
        return list(self._unique)

    def _init_cpuset_parent(self, parent: Path, root: Path) -> None:
        for key in ("cpuset.cpus", "cpuset.mems"):
            if not read(parent / key).strip():
                write(parent / key, read(root / key).strip())

    def create(self) -> None:
        for attempt in range(3):  # another process may remove the empty shared parent meanwhile
            try:
                self._create()
                return
            except InstanceError:
                if attempt == 2:
                    raise

    def _create(self) -> None:
        for controller, path in self.dirs.items():
            mkdir(path.parent)
            if controller == "cpuset":
                self._init_cpuset_parent(path.parent, self.hierarchies["cpuset"])
            mkdir(path)
        if "cpuset" in self.dirs:
            cpuset = self.dirs["cpuset"]
            for key in ("cpuset.cpus", "cpuset.mems"):
                if not read(cpuset / key).strip():
                    write(cpuset / key, read(cpuset.parent / key).strip())

    def apply(self, spec: InstanceSpec, io_device: str | None) -> dict[str, object]:
        ignored: dict[str, object] = {}
        d = self.dirs
        if spec.cpuset is not None:
            write(d["cpuset"] / "cpuset.cpus", spec.cpuset)
        if spec.cpu_shares is not None:
            write(d["cpu"] / "cpu.shares", str(spec.cpu_shares))
        if spec.cpus is not None:
            write(d["cpu"] / "cpu.cfs_period_us", str(CFS_PERIOD_US))
            write(d["cpu"] / "cpu.cfs_quota_us", str(max(1000, int(spec.cpus * CFS_PERIOD_US))))
        if spec.memory is not None:
            write(d["memory"] / "memory.limit_in_bytes", str(spec.memory))
            memsw = d["memory"] / "memory.memsw.limit_in_bytes"
            if memsw.exists():
                write(memsw, str(max(spec.memory_swap or spec.memory, spec.memory)))
            elif spec.memory_swap is not None:
                ignored["memory_swap"] = spec.memory_swap
        if spec.pids_max is not None:
            write(d["pids"] / "pids.max", str(spec.pids_max))
        ignored.update(self._apply_io(spec, io_device))
        if "devices" in d:
            write(d["devices"] / "devices.deny", "a")
            for rule in DEFAULT_RULES:
                write(d["devices"] / "devices.allow", rule.v1_line())
        return ignored

    def _apply_io(self, spec: InstanceSpec, io_device: str | None) -> dict[str, object]:
        wanted = {"blkio.throttle.read_bps_device": spec.io_read_bps,
                  "blkio.throttle.write_bps_device": spec.io_write_bps,
                  "blkio.throttle.read_iops_device": spec.io_read_iops,
                  "blkio.throttle.write_iops_device": spec.io_write_iops}
        names = dict(zip(wanted, IO_FIELDS, strict=True))
        set_ = {k: v for k, v in wanted.items() if v is not None}
        if not set_:
            return {}
        if io_device is None or "blkio" not in self.dirs:
            return {names[k]: v for k, v in set_.items()}
        for key, value in set_.items():
            write(self.dirs["blkio"] / key, f"{io_device} {value}")
        return {}

    def procs_files(self) -> list[Path]:
        return [p / "cgroup.procs" for p in self._unique]

    def memory_procs_file(self) -> Path | None:
        memory = self.dirs.get("memory")
        if memory is None or sum(1 for d in self.dirs.values() if d == memory) > 1:
            return None  # memory co-mounted with other controllers: cannot be joined separately
        return memory / "cgroup.procs"

    def _main(self) -> Path:
        return self.dirs.get("pids") or self._unique[0]

    def pids(self) -> list[int]:
        return [int(p) for p in read(self._main() / "cgroup.procs").split()]

    def stats(self) -> CgroupStats:
        d = self.dirs
        stats = CgroupStats()
        if "cpuacct" in d:
            usage = read(d["cpuacct"] / "cpuacct.usage").strip()
            stats.cpu_usage_ns = int(usage) if usage else None
        if "cpu" in d:
            cpu = keyed(read(d["cpu"] / "cpu.stat"))
            stats.cpu_throttled_ns = cpu.get("throttled_time")
            stats.cpu_nr_throttled = cpu.get("nr_throttled")
        if "memory" in d:
            m = d["memory"]
            for attr, name in (("memory_bytes", "memory.usage_in_bytes"),
                               ("memory_peak_bytes", "memory.max_usage_in_bytes"),
                               ("memory_failcnt", "memory.failcnt")):
                text = read(m / name).strip()
                setattr(stats, attr, int(text) if text else None)
            stats.oom_kills = keyed(read(m / "memory.oom_control")).get("oom_kill")
        if "pids" in d:
            current = read(d["pids"] / "pids.current").strip()
            stats.pids_current = int(current) if current else None
            stats.pids_max_hits = keyed(read(d["pids"] / "pids.events")).get("max")
        return stats

    def freeze(self, frozen: bool) -> None:
        """freezer.state FROZEN/THAWED; FREEZING means some task has not stopped yet: wait for it."""
        state = self.dirs["freezer"] / "freezer.state"
        write(state, "FROZEN" if frozen else "THAWED")
        wanted = "FROZEN" if frozen else "THAWED"
        deadline = time.monotonic() + FREEZE_TIMEOUT_S
        while read(state).strip() != wanted:
            if time.monotonic() > deadline:
                raise InstanceError(f"cgroup {self.name}: {state} did not reach {wanted} in {FREEZE_TIMEOUT_S} s")
            time.sleep(0.002)

    def limits(self) -> CgroupLimits:
        d = self.dirs
        limits = CgroupLimits()
        if "memory" in d:
            limits.memory_bytes = limit_value(read(d["memory"] / "memory.limit_in_bytes"))
            limits.memory_swap_bytes = limit_value(read(d["memory"] / "memory.memsw.limit_in_bytes"))
        if "cpu" in d:
            limits.cpu_quota_us = limit_value(read(d["cpu"] / "cpu.cfs_quota_us"))
            limits.cpu_period_us = limit_value(read(d["cpu"] / "cpu.cfs_period_us"))
        if "pids" in d:
            limits.pids_max = limit_value(read(d["pids"] / "pids.max"))
        return limits

    def kill_all(self) -> None:
        thaw(self.dirs.get("freezer"))  # a frozen task cannot die until it is thawed
        kill_procs(self._main() / "cgroup.procs")

    def remove(self) -> list[str]:
        return [str(p) for p in self._unique if not rmdir_retry(p)]
