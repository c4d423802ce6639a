"""The image cache: one directory per recipe hash, complete or absent.

Layout of `<cache>/images/<hash>/`:
  rootfs/          the Debian tree (base layer for containers, chroot for native)
  rootfs.ext4      the same tree as an ext4 image (the VM's backing disk)
  vmlinux          the uncompressed guest kernel (ELF, boots via PVH)
  initramfs.img    uncompressed cpio that loads virtio/ext4 modules and switches to the root disk
  manifest.json    written last: an image without it is not an image

A build happens in `<hash>.partial-<pid>/` and is renamed into place only when complete, so a
failed or interrupted build never leaves something a later run would use.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

from runtime.errors import ImageError
from runtime.naming import CACHE_ROOT

MANIFEST = "manifest.json"


@dataclass(frozen=True)
class Image:
    digest: str
    path: Path
    manifest: dict[str, object]

    @property
    def rootfs(self) -> Path:
        return self.path / "rootfs"

    @property
    def ext4(self) -> Path:
        return self.path / "rootfs.ext4"

    @property
    def vmlinux(self) -> Path:
        return self.path / "vmlinux"

    @property
    def initramfs(self) -> Path:
        return self.path / "initramfs.img"

    @property
    def kernel_version(self) -> str:
        return str(self.manifest.get("kernel_version", ""))


class ImageStore:
    def __init__(self, root: Path | None = None) -> None:
        self.root = (root or CACHE_ROOT) / "images"

    def path_for(self, digest: str) -> Path:
        return self.root / digest

    def get(self, digest: str) -> Image | None:
        """The complete image with this hash, or None."""
        path = self.path_for(digest)
        manifest = path / MANIFEST
        if not manifest.is_file():
            return None
        try:
            data = json.loads(manifest.read_text())
        except (OSError, json.JSONDecodeError):
            return None
        return Image(digest=digest, path=path, manifest=data)

    def require(self, digest: str) -> Image:
        image = self.get(digest)
        if image is None:
            raise ImageError(f"image {digest} is not built in {self.root}: run 'python -m bench image build'")
        return image

    def list(self) -> list[Image]:
        if not self.root.is_dir():
            return []
        found = (self.get(p.name) for p in sorted(self.root.iterdir()) if p.is_dir() and "." not in p.name)
        return [image for image in found if image is not None]

    def partial_dirs(self) -> list[Path]:
        """Leftovers of interrupted builds."""
        if not self.root.is_dir():
            return []
        return [p for p in self.root.iterdir() if ".partial-" in p.name or ".old-" in p.name]

    def remove(self, digest: str) -> None:
        path = self.path_for(digest)
        if not path.exists():
            raise ImageError(f"no image {digest} in {self.root}")
        shutil.rmtree(path)
