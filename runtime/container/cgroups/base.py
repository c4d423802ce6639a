"""The cgroup interface the runtime uses, independent of the kernel's cgroup version.

A Cgroup is created under `isolab/<instance id>`, takes limits from an InstanceSpec (returning the
limits it could not enforce), is joined by writing a pid into it, reports usage and the limits the
kernel holds (read back, for tests and audits on either layout), and is removed.
"""

from __future__ import annotations

import errno
import os
import signal
import time
from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass
from pathlib import Path

from runtime.errors import InstanceError
from runtime.spec import InstanceSpec

CFS_PERIOD_US = 100_000
FREEZE_TIMEOUT_S = 10.0  # a freeze waits for every task to stop; longer means something is stuck
IO_FIELDS = ("io_read_bps", "io_write_bps", "io_read_iops", "io_write_iops")


@dataclass
class CgroupStats:
    """Usage read back from the kernel. None where this cgroup version/controller has no such counter."""

    cpu_usage_ns: int | None = None
    cpu_throttled_ns: int | None = None
    cpu_nr_throttled: int | None = None
    memory_bytes: int | None = None
    memory_peak_bytes: int | None = None
    memory_failcnt: int | None = None
    oom_kills: int | None = None
    pids_current: int | None = None
    pids_max_hits: int | None = None

    def to_dict(self) -> dict[str, int | None]:
        return asdict(self)


@dataclass
class CgroupLimits:
    """Limits read back from the kernel's files, in spec units. None = no limit (or no such controller)."""

    memory_bytes: int | None = None
    memory_swap_bytes: int | None = None  # memory + swap (v1 semantics, as InstanceSpec.memory_swap)
    cpu_quota_us: int | None = None
    cpu_period_us: int | None = None
    pids_max: int | None = None

    @property
    def cpus(self) -> float | None:
        if self.cpu_quota_us is None or not self.cpu_period_us:
            return None
        return self.cpu_quota_us / self.cpu_period_us


#: v1 reports "no memory limit" as the largest page-aligned counter (PAGE_COUNTER_MAX pages).
V1_UNLIMITED = 2**62


def limit_value(text: str) -> int | None:
    """A limit file's number; None for 'max', -1, v1's huge 'unlimited' values, or an unreadable file."""
    text = text.strip()
    if not text.lstrip("-").isdigit():
        return None
    value = int(text)
    return None if value < 0 or value >= V1_UNLIMITED else value


def write(path: Path, value: str) -> None:
    """Write a cgroup control file; the error names the file and the value."""
    try:
        with open(path, "w") as f:
            f.write(value)
    except OSError as exc:
        raise InstanceError(f"cgroup: write {value!r} to {path}: {exc.strerror}") from exc


def read(path: Path, default: str = "") -> str:
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return default


def keyed(text: str) -> dict[str, int]:
    """Parse 'key value' lines (cpu.stat, memory.events, memory.oom_control) into ints."""
    out: dict[str, int] = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[1].lstrip("-").isdigit():
            out[parts[0]] = int(parts[1])
    return out


def mkdir(path: Path) -> None:
    try:
        path.mkdir(exist_ok=True)
    except FileNotFoundError:
        path.parent.mkdir(exist_ok=True)  # another instance removed the shared parent meanwhile
        path.mkdir(exist_ok=True)
    except OSError as exc:
        raise InstanceError(f"cgroup: mkdir {path}: {exc.strerror}") from exc


def rmdir_retry(path: Path, timeout: float = 2.0) -> bool:
    """rmdir a cgroup, retrying while its last tasks finish exiting. True if gone."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            os.rmdir(path)
            return True
        except FileNotFoundError:
            return True
        except OSError as exc:
            if exc.errno != errno.EBUSY or time.monotonic() > deadline:
                return False
            time.sleep(0.005)


def thaw(directory: Path | None) -> None:
    """Thaw a frozen cgroup (v1 freezer.state or v2 cgroup.freeze), best effort: frozen tasks cannot die."""
    if directory is None:
        return
    for name, value in (("freezer.state", "THAWED"), ("cgroup.freeze", "0")):
        path = directory / name
        if path.exists():
            try:
                path.write_text(value)
            except OSError:
                pass


def kill_procs(procs_file: Path, timeout: float = 5.0) -> None:
    """SIGKILL every process listed in procs_file until it is empty."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pids = [int(p) for p in read(procs_file).split()]
        if not pids:
            return
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        time.sleep(0.005)


class Cgroup(ABC):
    """One instance's cgroup (in every hierarchy it needs)."""

    version: int
    name: str

    @abstractmethod
    def create(self) -> None:
        """Make the directories (and the shared `isolab` parent)."""

    @abstractmethod
    def apply(self, spec: InstanceSpec, io_device: str | None) -> dict[str, object]:
        """Write the spec's limits; io limits go to block device 'MAJ:MIN'. Returns limits not enforced."""

    @abstractmethod
    def procs_files(self) -> list[Path]:
        """The files a pid is written to in order to join this cgroup (one per hierarchy)."""

    def memory_procs_file(self) -> Path | None:
        """cgroup.procs of a separate memory hierarchy (v1), None when memory is not separate (v2)."""
        return None

    def join(self, pid: int = 0, without_memory: bool = False) -> None:
        """Move `pid` (0 = the caller) into this cgroup; optionally not into a separate memory hierarchy."""
        text = str(pid)
        skip = self.memory_procs_file() if without_memory else None
        for path in self.procs_files():
            if path != skip:
                write(path, text)

    @abstractmethod
    def pids(self) -> list[int]:
        """Processes in the cgroup."""

    @abstractmethod
    def stats(self) -> CgroupStats:
        """Current usage counters."""

    @abstractmethod
    def freeze(self, frozen: bool) -> None:
        """Freeze (or thaw) every process in the cgroup; returns once the kernel says it is done."""

    @abstractmethod
    def limits(self) -> CgroupLimits:
        """The limits the kernel enforces now, read from this cgroup's files."""

    @abstractmethod
    def kill_all(self) -> None:
        """SIGKILL every process in the cgroup."""

    @abstractmethod
    def remove(self) -> list[str]:
        """rmdir the cgroup directories; returns those still present (busy)."""

    @abstractmethod
    def paths(self) -> list[Path]:
        """The cgroup's directories."""

    def remove_parent_if_empty(self) -> None:
        """rmdir the shared `isolab` parent(s) when no instance uses them (EBUSY otherwise)."""
        for path in self.paths():
            try:
                os.rmdir(path.parent)
            except OSError:
                pass
