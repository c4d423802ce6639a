"""The container's root filesystem: overlay of read-only layers + a writable layer, /proc, /sys, /dev,
an optional data volume (a host directory bind-mounted at /mnt, past the overlay), then pivot_root with
the old root detached. Runs in the container's own mount namespace, so every
mount disappears with the container; nothing is mounted in the host's namespace.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Sequence
from pathlib import Path

from runtime.container.hardening import mask_proc
from runtime.linux import syscalls as sc
from runtime.spec import VOLUME_DIR

# name, major, minor of the minimal /dev (like Docker's default)
DEVICES = (("null", 1, 3), ("zero", 1, 5), ("full", 1, 7), ("random", 1, 8), ("urandom", 1, 9),
           ("tty", 5, 0))
DEV_LINKS = (("ptmx", "pts/ptmx"), ("fd", "/proc/self/fd"), ("stdin", "/proc/self/fd/0"),
             ("stdout", "/proc/self/fd/1"), ("stderr", "/proc/self/fd/2"), ("core", "/proc/kcore"))


def overlay_options(lowers: Sequence[Path], upper: Path, work: Path, volatile: bool = False) -> str:
    """overlayfs mount data; `lowers` is base-first, overlay wants topmost first. `volatile` skips the
    syncs of the upper filesystem (fsync inside becomes a no-op; unmounting no longer syncs the whole
    host filesystem): only for writable layers that are thrown away on exit."""
    lowerdir = ":".join(str(p) for p in reversed(lowers))
    return f"lowerdir={lowerdir},upperdir={upper},workdir={work}" + (",volatile" if volatile else "")


def mount_overlay(lowers: Sequence[Path], upper: Path, work: Path, target: Path,
                  volatile: bool = False) -> None:
    sc.mount("overlay", target, "overlay", 0, overlay_options(lowers, upper, work, volatile))


def mount_dev(root: str) -> None:
    """A tmpfs /dev with the minimal device nodes, its own devpts instance and /dev/shm."""
    dev = f"{root}/dev"
    sc.mount("tmpfs", dev, "tmpfs", sc.MS_NOSUID | sc.MS_STRICTATIME, "mode=755,size=65536k")
    for name, major, minor in DEVICES:
        os.mknod(f"{dev}/{name}", stat.S_IFCHR | 0o666, os.makedev(major, minor))
        os.chmod(f"{dev}/{name}", 0o666)
    os.mkdir(f"{dev}/pts", 0o755)
    os.mkdir(f"{dev}/shm", 0o1777)
    sc.mount("devpts", f"{dev}/pts", "devpts", sc.MS_NOSUID | sc.MS_NOEXEC,
             "newinstance,ptmxmode=0666,mode=0620")
    sc.mount("shm", f"{dev}/shm", "tmpfs", sc.MS_NOSUID | sc.MS_NODEV | sc.MS_NOEXEC, "mode=1777,size=65536k")
    for name, target in DEV_LINKS:
        os.symlink(target, f"{dev}/{name}")


def mount_volume(volume: Path, root: str) -> None:
    """Bind the host directory `volume` at the container's VOLUME_DIR (nodev, nosuid): writes there skip
    the overlay. The overlay root itself is not nodev, as with Docker: image layers may carry device
    nodes, and the device cgroup (v1) or BPF device filter (v2) decides which of them can be opened."""
    target = f"{root}{VOLUME_DIR}"
    if not os.path.isdir(target):
        os.mkdir(target, 0o755)  # (in the writable layer: an image without /mnt)
    sc.mount(str(volume), target, None, sc.MS_BIND)
    # nodev: a device node in the host directory (made on the host, or by an earlier container) cannot
    # be opened through the volume; nosuid: no setuid file there runs with its owner's rights.
    sc.mount(None, target, None, sc.MS_REMOUNT | sc.MS_BIND | sc.MS_NODEV | sc.MS_NOSUID)


def prepare_root(lowers: Sequence[Path], upper: Path, work: Path, root: Path, volatile: bool = False,
                 volume: Path | None = None) -> None:
    """In a fresh mount namespace: build the container's tree at `root` and pivot into it."""
    sc.mount(None, "/", None, sc.MS_REC | sc.MS_PRIVATE)
    mount_overlay(lowers, upper, work, root, volatile)
    r = str(root)
    if volume is not None:
        mount_volume(volume, r)
    sc.mount("proc", f"{r}/proc", "proc", sc.MS_NOSUID | sc.MS_NODEV | sc.MS_NOEXEC)
    sc.mount("sysfs", f"{r}/sys", "sysfs", sc.MS_NOSUID | sc.MS_NODEV | sc.MS_NOEXEC | sc.MS_RDONLY)
    mount_dev(r)
    mask_proc(r)
    pivot_into(r)


def pivot_into(root: str) -> None:
    """pivot_root(".", ".") then detach the old root stacked underneath: no put_old directory needed."""
    os.chdir(root)
    sc.pivot_root(".", ".")
    sc.umount2(".", sc.MNT_DETACH)
    os.chdir("/")
