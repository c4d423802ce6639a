"""The `overlay` storage driver (the default): the image's layers as overlayfs lower layers and a writable
upper dir (plus overlay's work dir) per instance under its scratch dir; a file of the image is copied up
to the upper dir on its first write."""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from pathlib import Path

from runtime.container.rootfs import mount_overlay
from runtime.container.storage.base import InstanceRoot, StorageDriver, dir_usage_bytes


class OverlayDriver(StorageDriver):
    name = "overlay"
    mechanism = "overlayfs"

    def unavailable(self) -> str | None:
        if "overlay" not in Path("/proc/filesystems").read_text():
            return "the kernel has no overlayfs (/proc/filesystems)"
        return None

    def layout(self, instance_id: str, layers: Sequence[Path], layer_dir: Path) -> InstanceRoot:
        return InstanceRoot(self.name, instance_id, tuple(str(p) for p in layers),
                            upper=str(layer_dir / "upper"), work=str(layer_dir / "work"))

    def prepare(self, root: InstanceRoot) -> None:
        Path(root.upper).mkdir()
        Path(root.work).mkdir()

    def mount(self, root: InstanceRoot, target: Path, volatile: bool = False) -> None:
        mount_overlay(root.layer_paths, Path(root.upper), Path(root.work), target, volatile)

    def view(self, root: InstanceRoot) -> list[Path]:
        return [*root.layer_paths, Path(root.upper)]

    def remove(self, root: InstanceRoot) -> None:
        for path in (root.upper, root.work):
            shutil.rmtree(path, ignore_errors=True)

    def disk_usage_bytes(self, root: InstanceRoot) -> int:
        upper = Path(root.upper)
        return dir_usage_bytes(upper) if upper.exists() else 0
