"""The container's root filesystem: the storage driver's root (runtime.container.storage: an overlay of
read-only layers + a writable layer, or a bound snapshot or copy), /proc, /sys, /dev,
an optional data volume (a host directory bind-mounted at /mnt, past the overlay), then pivot_root with
the old root detached. Runs in the container's own mount namespace, so every
mount disappears with the container; nothing is mounted in the host's namespace.

With a user namespace the work is split (runtime.container.userns): host root mounts the overlay (on
idmapped lower layers) and the volume in a private mount namespace, and the container's first process,
already root of its user namespace, finishes the tree with `finish_root(..., userns=True)`: a bind of
the root onto itself (pivot_root refuses the mounts it inherited, which are locked), host device nodes
bound in (mknod of a device needs host CAP_MKNOD), and /sys bound from the host when it shares the
host's network namespace (sysfs is mounted only by an owner of the netns).
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable, Sequence
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


def mount_dev(root: str, bind_nodes: bool = False) -> None:
    """A tmpfs /dev with the minimal device nodes, its own devpts instance and /dev/shm. `bind_nodes`
    binds the host's nodes onto empty files instead of mknod (in a user namespace, like runc)."""
    dev = f"{root}/dev"
    sc.mount("tmpfs", dev, "tmpfs", sc.MS_NOSUID | sc.MS_STRICTATIME, "mode=755,size=65536k")
    for name, major, minor in DEVICES:
        if bind_nodes:
            os.close(os.open(f"{dev}/{name}", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
            sc.mount(f"/dev/{name}", f"{dev}/{name}", None, sc.MS_BIND)
            continue
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


def bind_root(source: Path, target: Path) -> None:
    """A plain directory (a btrfs snapshot, a vfs copy) as the container's root: bound onto `target`,
    which makes it a mount point of its own (pivot_root needs one)."""
    sc.mount(str(source), target, None, sc.MS_BIND)


def prepare_root(mount_fs: Callable[[Path], None], root: Path, volume: Path | None = None) -> None:
    """In a fresh mount namespace: mount the root filesystem at `root` with `mount_fs` (the storage
    driver's), the volume in it, build the rest of the tree and pivot into it."""
    sc.mount(None, "/", None, sc.MS_REC | sc.MS_PRIVATE)
    mount_fs(root)
    if volume is not None:
        mount_volume(volume, str(root))
    finish_root(str(root))


#: tmpfs options of an ephemeral writable layer (Container(ephemeral=True)); tmpfs's own default size.
EPHEMERAL_OPTIONS = "mode=0700,size=50%"


def prepare_ephemeral_root(lowers: Sequence[Path], mountpoint: Path) -> None:
    """In a fresh mount namespace: a tmpfs at `mountpoint` (a host directory this namespace alone then sees
    differently) holding the writable layer, the overlay in it, and pivot into it. Nothing lands on the
    host's disk; the tmpfs goes with the namespace. The overlay is `volatile` (nothing to sync)."""
    sc.mount(None, "/", None, sc.MS_REC | sc.MS_PRIVATE)
    sc.mount("tmpfs", mountpoint, "tmpfs", sc.MS_NOSUID | sc.MS_NODEV, EPHEMERAL_OPTIONS)
    upper, work, root = mountpoint / "upper", mountpoint / "work", mountpoint / "root"
    for directory in (upper, work, root):
        directory.mkdir()
    os.chmod(upper, 0o755)  # the root directory of the container as it sees it (overlay copies it up)
    mount_overlay(lowers, upper, work, root, volatile=True)
    finish_root(str(root))


def mount_layers(lowers: Sequence[Path], upper: Path, work: Path, root: Path, volatile: bool = False,
                 volume: Path | None = None) -> None:
    """The overlay at `root`, and the data volume in it (the part host root does with a user namespace)."""
    mount_overlay(lowers, upper, work, root, volatile)
    if volume is not None:
        mount_volume(volume, str(root))


def finish_root(r: str, userns: bool = False, own_netns: bool = True) -> None:
    """/proc, /sys, /dev and the masks on the overlay at `r`, then pivot into it."""
    if userns:
        sc.mount(None, "/", None, sc.MS_REC | sc.MS_PRIVATE)
        sc.mount(r, r, None, sc.MS_BIND | sc.MS_REC)  # an unlocked mount of our own to pivot into
    sc.mount("proc", f"{r}/proc", "proc", sc.MS_NOSUID | sc.MS_NODEV | sc.MS_NOEXEC)
    ro = sc.MS_NOSUID | sc.MS_NODEV | sc.MS_NOEXEC | sc.MS_RDONLY
    if userns and not own_netns:  # the host's netns: its sysfs, read-only
        sc.mount("/sys", f"{r}/sys", None, sc.MS_BIND | sc.MS_REC)
        sc.mount(None, f"{r}/sys", None, sc.MS_REMOUNT | sc.MS_BIND | ro)
    else:
        sc.mount("sysfs", f"{r}/sys", "sysfs", ro)
    mount_dev(r, bind_nodes=userns)
    mask_proc(r)
    pivot_into(r)


def pivot_into(root: str) -> None:
    """pivot_root(".", ".") then detach the old root stacked underneath: no put_old directory needed."""
    os.chdir(root)
    sc.pivot_root(".", ".")
    sc.umount2(".", sc.MNT_DETACH)
    os.chdir("/")
