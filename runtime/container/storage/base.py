"""The one small interface of a storage driver: lay out and prepare an instance's root from its image's
layers, mount it inside the instance, diff, commit (a layer in runtime.container.storage.changes'
format), remove, report disk usage, sweep what a dead run left.

`InstanceRoot` is plain data (kept in the container's state.json) and the same for a driver given
the same instance id, layers and layer directory, so that another process (`python -m runtime diff`,
`commit`, `rm`, `cleanup`) finds the instance's root without asking the one that made it.
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from runtime.container.storage import changes
from runtime.errors import PlatformUnavailable, SpecError


@dataclass(frozen=True)
class InstanceRoot:
    """Where one instance's filesystem lives, as its driver lays it out."""

    driver: str
    instance_id: str
    layers: tuple[str, ...]  # the image's layer directories, base first
    upper: str  # the directory the instance writes to: overlay's upper dir, a btrfs snapshot, a vfs copy
    work: str = ""  # overlay's work dir (other drivers: none)
    extra: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, object]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, object]) -> InstanceRoot:
        return cls(driver=str(data["driver"]), instance_id=str(data["instance_id"]),
                   layers=tuple(str(p) for p in data["layers"]),  # type: ignore[attr-defined]
                   upper=str(data["upper"]), work=str(data.get("work", "")),
                   extra={str(k): str(v) for k, v in dict(data.get("extra") or {}).items()})  # type: ignore[call-overload]

    @property
    def layer_paths(self) -> list[Path]:
        return [Path(p) for p in self.layers]


class StorageDriver(ABC):
    """How an instance's root filesystem is made from read-only image layers."""

    name: str
    #: How it shares the image between instances, for the platform's description ("overlayfs copy-up").
    mechanism: str

    #: How InstanceSpec.disk_quota is enforced on this driver's roots: "filesystem": the container puts
    #: the instance's writable dirs (and its volume) on a filesystem of the quota's room
    #: (runtime.container.quota.QuotaDisk), with `quota_extra_bytes` more for what `prepare` copies
    #: there; "driver": the driver limits its own root (`limit`).
    quota_kind = "filesystem"

    def quota_extra_bytes(self, root: InstanceRoot) -> int:
        """Bytes `prepare` writes into the instance's directory before the container runs."""
        return 0

    def limit(self, root: InstanceRoot, size: int) -> dict[str, object]:
        """Limit what the instance can write to `size` bytes (quota_kind "driver"); facts for the metadata."""
        raise SpecError(f"storage driver {self.name}: cannot limit an instance's disk")

    def unavailable(self) -> str | None:
        """One line saying why this host cannot use the driver, or None."""
        return None

    def check(self) -> None:
        reason = self.unavailable()
        if reason is not None:
            raise PlatformUnavailable(f"storage driver {self.name}: {reason}")

    @abstractmethod
    def layout(self, instance_id: str, layers: Sequence[Path], layer_dir: Path) -> InstanceRoot:
        """Where the instance's root will live (pure: nothing is made)."""

    @abstractmethod
    def prepare(self, root: InstanceRoot) -> None:
        """Make the instance's root on the host (before its first process starts); on failure leave nothing."""

    @abstractmethod
    def mount(self, root: InstanceRoot, target: Path, volatile: bool = False) -> None:
        """In the instance's own mount namespace: mount its root filesystem at `target`."""

    def view(self, root: InstanceRoot) -> list[Path]:
        """The instance's filesystem as a stack of directories, base first (runtime.container.storage.changes)."""
        return [Path(root.upper)]

    def changes(self, root: InstanceRoot) -> list[changes.Change]:
        return changes.compare(root.layer_paths, self.view(root))

    def diff(self, root: InstanceRoot) -> list[tuple[str, str]]:
        """('A'|'C'|'D', '/path') against the image, the same on every driver for the same changes."""
        return changes.summary(self.changes(root))

    def commit(self, root: InstanceRoot, dest: Path) -> None:
        """Write the instance's changes as a layer directory `dest` (overlay format; must not exist)."""
        changes.write_layer(self.changes(root), dest)

    @abstractmethod
    def remove(self, root: InstanceRoot) -> None:
        """Remove the instance's root (idempotent)."""

    @abstractmethod
    def disk_usage_bytes(self, root: InstanceRoot) -> int:
        """Bytes the instance's root takes on disk beyond what it shares with its image."""

    def block_device(self, root: InstanceRoot) -> str | None:
        """'MAJ:MIN' of the disk the instance writes to (for the io limits), or None."""
        return block_device_of(Path(root.upper))

    def sweep(self, dead: Callable[[str], bool], everything: bool = False) -> list[str]:
        """Remove roots of dead instances (`dead(instance_id)`) and the driver's own leftovers; a line each."""
        return []


def block_device_of(path: Path) -> str | None:
    """'MAJ:MIN' of the whole disk holding `path`, or None when it is not on a block device."""
    try:
        dev = os.stat(path).st_dev
    except OSError:
        return None
    node = Path(f"/sys/dev/block/{os.major(dev)}:{os.minor(dev)}")
    if not node.exists():
        return None
    if (node / "partition").exists():
        return (node.resolve().parent / "dev").read_text().strip()
    return f"{os.major(dev)}:{os.minor(dev)}"


def dir_usage_bytes(path: Path) -> int:
    """Bytes allocated on disk under `path` (st_blocks, so sparse files and whiteouts count right)."""
    total = 0
    for dirpath, dirnames, filenames in os.walk(path):
        for name in dirnames + filenames:
            try:
                total += os.lstat(os.path.join(dirpath, name)).st_blocks * 512
            except OSError:
                continue
    return total
