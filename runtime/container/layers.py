"""Layered images: ordered read-only layer directories, `commit` and `diff` of a writable layer.

The base image `base` is the shared rootfs. A committed layer lives in
<cache>/layers/<name>/{fs/, meta.json}; meta.json names its parent (another layer or `base`), so an
image is the chain base -> ... -> name. overlayfs whiteouts (0:0 character devices) and opaque
directories (xattr trusted.overlay.opaque=y) are kept as they are in the committed layer, so deletions
survive the round trip, and `diff` reads them as deletions.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import stat
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from runtime.errors import ImageError
from runtime.naming import CACHE_ROOT

BASE = "base"
NAME_RE = re.compile(r"[a-z0-9][a-z0-9_.-]{0,63}")


@dataclass(frozen=True)
class Layer:
    name: str
    path: Path  # the directory used as an overlay lower layer
    parent: str | None
    created: float
    comment: str = ""


def is_whiteout(st: os.stat_result) -> bool:
    return stat.S_ISCHR(st.st_mode) and st.st_rdev == 0


def is_opaque(path: str) -> bool:
    try:
        return os.getxattr(path, "trusted.overlay.opaque", follow_symlinks=False) == b"y"
    except OSError:
        return False


def _in_lowers(rel: str, lowers: list[Path]) -> bool:
    """Whether `rel` is visible in the stack of lower layers (topmost whiteout hides it)."""
    for lower in reversed(lowers):
        try:
            st = os.lstat(lower / rel)
        except FileNotFoundError:
            continue
        return not is_whiteout(st)
    return False


def diff(upper: Path, lowers: list[Path]) -> list[tuple[str, str]]:
    """Changes in a writable layer against its lower layers (base first): ('A'|'C'|'D', '/path')."""
    changes: list[tuple[str, str]] = []
    for dirpath, dirnames, filenames in os.walk(upper):
        rel_dir = os.path.relpath(dirpath, upper)
        for name in sorted(dirnames + filenames):
            full = os.path.join(dirpath, name)
            rel = name if rel_dir == "." else f"{rel_dir}/{name}"
            st = os.lstat(full)
            if is_whiteout(st):
                changes.append(("D", "/" + rel))
            elif _in_lowers(rel, lowers):
                changes.append(("C", "/" + rel))
            else:
                changes.append(("A", "/" + rel))
    return sorted(changes, key=lambda c: c[1])


class LayerStore:
    """Committed layers on disk, plus the base rootfs under the name `base`."""

    def __init__(self, base_rootfs: Path, root: Path | None = None) -> None:
        self.base_rootfs = Path(base_rootfs)
        self.root = root or CACHE_ROOT / "layers"

    def _meta(self, name: str) -> dict[str, object]:
        path = self.root / name / "meta.json"
        try:
            return json.loads(path.read_text())
        except FileNotFoundError:
            raise ImageError(f"image {name!r} not found (no {path})") from None
        except (OSError, json.JSONDecodeError) as exc:
            raise ImageError(f"image {name!r}: unreadable {path}: {exc}") from exc

    def get(self, name: str) -> Layer:
        if name == BASE:
            return Layer(BASE, self.base_rootfs, None, self.base_rootfs.stat().st_mtime, "shared rootfs")
        meta = self._meta(name)
        return Layer(name, self.root / name / "fs", str(meta.get("parent") or BASE),
                     float(meta.get("created", 0)), str(meta.get("comment", "")))  # type: ignore[arg-type]

    def resolve(self, name: str) -> list[Path]:
        """The image `name` as overlay lower layers, base first; ImageError if any is missing."""
        chain: list[Path] = []
        seen: set[str] = set()
        current: str | None = name
        while current is not None:
            if current in seen:
                raise ImageError(f"image {name!r}: layer chain loops at {current!r}")
            seen.add(current)
            layer = self.get(current)
            if not layer.path.is_dir():
                raise ImageError(f"image {name!r}: layer directory {layer.path} does not exist")
            chain.append(layer.path)
            current = layer.parent
        return list(reversed(chain))

    def commit(self, upper: Path | Callable[[Path], None], parent: str, name: str, comment: str = "",
               fix_ids: Callable[[Path], None] | None = None) -> Layer:
        """Copy a writable layer (whiteouts and xattrs included) into a new read-only layer `name`, or
        let `upper(directory)` write it there (a storage driver's commit, runtime.container.storage);
        `fix_ids` rewrites the copy's owners first (a user namespace's layer back to image ids)."""
        if not NAME_RE.fullmatch(name) or name == BASE:
            raise ImageError(f"invalid image name {name!r}: lowercase letters, digits, '.', '_', '-'")
        if (self.root / name).exists():
            raise ImageError(f"image {name!r} already exists in {self.root}")
        self.resolve(parent)
        partial = self.root / f".{name}.partial-{os.getpid()}"
        shutil.rmtree(partial, ignore_errors=True)
        self.root.mkdir(parents=True, exist_ok=True)
        os.chmod(self.root, 0o700)  # committed layers keep the container's setuid files: root only
        partial.mkdir()
        try:
            if callable(upper):
                upper(partial / "fs")
            else:
                proc = subprocess.run(["cp", "-a", f"{upper}/.", str(partial / "fs")],
                                      capture_output=True, text=True)
                if proc.returncode != 0:
                    raise ImageError(f"commit: cp -a {upper} -> {partial / 'fs'}: {proc.stderr.strip()}")
            if fix_ids is not None:
                fix_ids(partial / "fs")
            meta = {"name": name, "parent": parent, "created": time.time(), "comment": comment}
            (partial / "meta.json").write_text(json.dumps(meta, indent=2))
            os.rename(partial, self.root / name)
        except BaseException:
            shutil.rmtree(partial, ignore_errors=True)
            raise
        return self.get(name)

    def list(self) -> list[Layer]:
        layers = [self.get(BASE)]
        if self.root.is_dir():
            for entry in sorted(self.root.iterdir()):
                if (entry / "meta.json").is_file():
                    layers.append(self.get(entry.name))
        return layers

    def remove(self, name: str) -> None:
        """Delete a committed layer; refused for `base` and for layers other images build on."""
        if name == BASE:
            raise ImageError("the base image is the shared rootfs and cannot be removed here")
        self._meta(name)
        children = [layer.name for layer in self.list() if layer.parent == name]
        if children:
            raise ImageError(f"image {name!r} is the parent of {', '.join(children)}: remove those first")
        shutil.rmtree(self.root / name)
        try:
            self.root.rmdir()
        except OSError:
            pass
