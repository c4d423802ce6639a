"""The `vfs` storage driver: a full copy of the image's layers per instance under its scratch dir (no
copy-on-write at all, never a reflink: the baseline every copy-on-write driver is measured against)."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path

from runtime.container.rootfs import bind_root
from runtime.container.storage.base import InstanceRoot, StorageDriver, dir_usage_bytes
from runtime.container.storage.changes import apply_layer
from runtime.errors import InstanceError


def full_copy(source: Path, target: Path) -> None:
    """`source`'s tree into the existing directory `target`: owners, modes, times, xattrs, hard links;
    every block copied (--reflink=never: a reflinking filesystem does not share them)."""
    proc = subprocess.run(["cp", "-a", "--reflink=never", f"{source}/.", f"{target}/"],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        raise InstanceError(f"storage: cp -a {source} -> {target}: {proc.stderr.strip()[-300:]}")


_ALLOCATED: dict[tuple[str, int], int] = {}


def _allocated(layer: Path) -> int:
    """Bytes allocated under a layer directory (du -s -B1), cached per directory and mtime."""
    key = (str(layer), layer.stat().st_mtime_ns)
    if key not in _ALLOCATED:
        proc = subprocess.run(["du", "-s", "-B1", str(layer)], capture_output=True, text=True, timeout=600)
        try:
            _ALLOCATED[key] = int(proc.stdout.split()[0])
        except (IndexError, ValueError):
            raise InstanceError(f"storage vfs: du -s {layer}: {proc.stderr.strip()[-300:]}") from None
    return _ALLOCATED[key]


class VfsDriver(StorageDriver):
    name = "vfs"
    mechanism = "full copies (vfs)"

    def layout(self, instance_id: str, layers: Sequence[Path], layer_dir: Path) -> InstanceRoot:
        return InstanceRoot(self.name, instance_id, tuple(str(p) for p in layers), upper=str(layer_dir / "rootfs"))

    def prepare(self, root: InstanceRoot) -> None:
        upper = Path(root.upper)
        upper.mkdir(0o755)
        try:
            layers = root.layer_paths
            full_copy(layers[0], upper)
            for layer in layers[1:]:
                apply_layer(layer, upper)
        except BaseException:
            shutil.rmtree(upper, ignore_errors=True)
            raise

    def quota_extra_bytes(self, root: InstanceRoot) -> int:
        """Room for the full copy (allocated bytes of every layer, +5 % and 64 MiB: later layers replace
        files of earlier ones, so this over-estimates; QuotaDisk.settle holds back the excess)."""
        total = sum(_allocated(Path(p)) for p in root.layers)
        return total + total // 20 + 64 * 1024**2

    def mount(self, root: InstanceRoot, target: Path, volatile: bool = False) -> None:
        bind_root(Path(root.upper), target)

    def remove(self, root: InstanceRoot) -> None:
        shutil.rmtree(root.upper, ignore_errors=True)

    def disk_usage_bytes(self, root: InstanceRoot) -> int:
        upper = Path(root.upper)
        return dir_usage_bytes(upper) if upper.exists() else 0
