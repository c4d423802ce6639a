"""cgroup v2: one unified directory /sys/fs/cgroup/isolab/<id> with cpu, cpuset, memory, io, pids.

The `isolab` parent enables the controllers for its children through cgroup.subtree_control.
Mapping from the spec: shares -> cpu.weight, cpus -> cpu.max, memory -> memory.max, memory_swap
(v1 'memory+swap' semantics) -> memory.swap.max = swap - memory, io limits -> io.max, pids.max.
v2 has no devices controller: `apply` attaches a BPF_PROG_TYPE_CGROUP_DEVICE program allowing Docker's
device list (cgroups.devices), as runc and crun do; it lives as long as the cgroup directory.
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
from runtime.container.cgroups.devices import attach_device_filter
from runtime.errors import InstanceError
from runtime.naming import CGROUP_PARENT
from runtime.spec import InstanceSpec

WANTED = ("cpu", "cpuset", "memory", "io", "pids")


def shares_to_weight(shares: int) -> int:
    """v1 cpu.shares (2..262144, default 1024) -> v2 cpu.weight (1..10000, default 100)."""
    shares = min(max(shares, 2), 262144)
    return 1 + ((shares - 2) * 9999) // 262142


class CgroupV2(Cgroup):
    version = 2

    def __init__(self, name: str, root: Path = Path("/sys/fs/cgroup"), device_filter: bool = True) -> None:
        self.name = name
        self.root = root
        self.device_filter = device_filter  # False only for layout tests on a plain directory
        self.parent = root / CGROUP_PARENT
        self.dir = self.parent / name

    def paths(self) -> list[Path]:
        return [self.dir]

    def available(self) -> list[str]:
        return [c for c in read(self.root / "cgroup.controllers").split() if c in WANTED]

    def _enable(self, directory: Path, controllers: list[str]) -> None:
        enabled = set(read(directory / "cgroup.subtree_control").split())
        missing = [c for c in controllers if c not in enabled]
        if missing:
            write(directory / "cgroup.subtree_control", " ".join(f"+{c}" for c in missing))

    def create(self) -> None:
        controllers = self.available()
        self._enable(self.root, controllers)
        mkdir(self.parent)
        self._enable(self.parent, controllers)
        mkdir(self.dir)

    def apply(self, spec: InstanceSpec, io_device: str | None) -> dict[str, object]:
        ignored: dict[str, object] = {}
        d = self.dir
        if spec.cpuset is not None:
            write(d / "cpuset.cpus", spec.cpuset)
        if spec.cpu_shares is not None:
            write(d / "cpu.weight", str(shares_to_weight(spec.cpu_shares)))
        if spec.cpus is not None:
            write(d / "cpu.max", f"{max(1000, int(spec.cpus * CFS_PERIOD_US))} {CFS_PERIOD_US}")
        if spec.memory is not None:
            write(d / "memory.max", str(spec.memory))
            swap = max((spec.memory_swap or spec.memory) - spec.memory, 0)
            write(d / "memory.swap.max", str(swap))
        if spec.pids_max is not None:
            write(d / "pids.max", str(spec.pids_max))
        ignored.update(self._apply_io(spec, io_device))
        if self.device_filter:
            self._restrict_devices()
        return ignored

    def _restrict_devices(self) -> None:
        """v2 has no devices controller: attach the BPF device filter (Docker's device list) instead."""
        try:
            attach_device_filter(self.dir)
        except OSError as exc:
            raise InstanceError(f"cgroup: attach the device filter (BPF_PROG_TYPE_CGROUP_DEVICE) to "
                                f"{self.dir}: {exc.strerror}") from exc

    def _apply_io(self, spec: InstanceSpec, io_device: str | None) -> dict[str, object]:
        wanted = {"rbps": spec.io_read_bps, "wbps": spec.io_write_bps,
                  "riops": spec.io_read_iops, "wiops": spec.io_write_iops}
        names = dict(zip(wanted, IO_FIELDS, strict=True))
        set_ = {k: v for k, v in wanted.items() if v is not None}
        if not set_:
            return {}
        if io_device is None:
            return {names[k]: v for k, v in set_.items()}
        write(self.dir / "io.max", f"{io_device} " + " ".join(f"{k}={v}" for k, v in set_.items()))
        return {}

    def procs_files(self) -> list[Path]:
        return [self.dir / "cgroup.procs"]

    def pids(self) -> list[int]:
        return [int(p) for p in read(self.dir / "cgroup.procs").split()]

    def stats(self) -> CgroupStats:
        cpu = keyed(read(self.dir / "cpu.stat"))
        memory = keyed(read(self.dir / "memory.events"))
        pids = keyed(read(self.dir / "pids.events"))

        def number(name: str) -> int | None:
            text = read(self.dir / name).strip()
            return int(text) if text.isdigit() else None

        return CgroupStats(
            cpu_usage_ns=cpu["usage_usec"] * 1000 if "usage_usec" in cpu else None,
            cpu_throttled_ns=cpu["throttled_usec"] * 1000 if "throttled_usec" in cpu else None,
            cpu_nr_throttled=cpu.get("nr_throttled"),
            memory_bytes=number("memory.current"),
            memory_peak_bytes=number("memory.peak"),
            memory_failcnt=memory.get("max"),
            oom_kills=memory.get("oom_kill"),
            pids_current=number("pids.current"),
            pids_max_hits=pids.get("max"),
        )

    def freeze(self, frozen: bool) -> None:
        """cgroup.freeze 1/0, then wait until cgroup.events says `frozen 1` (or 0)."""
        write(self.dir / "cgroup.freeze", "1" if frozen else "0")
        wanted = 1 if frozen else 0
        deadline = time.monotonic() + FREEZE_TIMEOUT_S
        while keyed(read(self.dir / "cgroup.events")).get("frozen") != wanted:
            if time.monotonic() > deadline:
                raise InstanceError(f"cgroup {self.name}: not {'frozen' if frozen else 'thawed'} "
                                    f"after {FREEZE_TIMEOUT_S} s")
            time.sleep(0.002)

    def limits(self) -> CgroupLimits:
        memory = limit_value(read(self.dir / "memory.max"))
        swap = limit_value(read(self.dir / "memory.swap.max"))
        quota, _, period = read(self.dir / "cpu.max").partition(" ")
        return CgroupLimits(
            memory_bytes=memory,
            memory_swap_bytes=memory + swap if memory is not None and swap is not None else None,
            cpu_quota_us=limit_value(quota),
            cpu_period_us=limit_value(period) if limit_value(quota) is not None else None,
            pids_max=limit_value(read(self.dir / "pids.max")),
        )

    def kill_all(self) -> None:
        thaw(self.dir)
        kill_file = self.dir / "cgroup.kill"
        if kill_file.exists():
            try:
                write(kill_file, "1")
            except Exception:
                pass
        kill_procs(self.dir / "cgroup.procs")

    def remove(self) -> list[str]:
        return [] if rmdir_retry(self.dir) else [str(self.dir)]
