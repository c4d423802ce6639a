"""Disk size quotas for containers: `InstanceSpec(disk_quota=N)`, a hard limit on what one container can
write to its writable layer and its data volume together, enforced by a filesystem.

How, on this kernel: each container with a quota gets a filesystem of its own, a sparse ext4 image
file (`<scratch>/<id>/disk.ext4`) sized so that its free room is the quota, loop-mounted (autoclear)
at `<state>/<id>/disk`; the writable layer, overlay's work dir and the volume live in it. A write past
the quota fails inside the container with ENOSPC; the host file system loses at most the quota (the
image is sparse). Project quotas (XFS `prjquota`, ext4 `project,quota`) would give one shared pool with
live limits instead, but need CONFIG_XFS_QUOTA / CONFIG_QUOTA, which this host's kernel lacks (mounting
with `prjquota` fails: "quota support not available in this kernel"). The btrfs driver's qgroups are
its own (runtime.storage, where present).

`unsupported_reason()` says, in one line, why a quota cannot be enforced on this host (no loop device
support, no ext4, no mkfs.ext4); the container then refuses the spec with a SpecError. `sweep_loops()`
detaches loop devices still backed by our images of dead instances (the mount itself lives under the
instance's state dir, so runtime.sweep's detach of that dir frees it; autoclear frees the loop).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from runtime.errors import InstanceError, SpecError
from runtime.linux import syscalls as sc
from runtime.naming import SCRATCH_ROOT, scratch_dir, state_dir

IMAGE_NAME = "disk.ext4"
MOUNT_NAME = "disk"
RESERVE_NAME = ".isolab-reserve"  # held-back room beside a copied root (QuotaDisk.settle)
MIN_QUOTA = 16 * 1024**2  # ext4 with a 4 MiB journal and 4 KiB blocks needs about 12 MiB
BLOCK = 4096
# 4 KiB blocks at every size (mkfs picks 1 KiB below 512 MiB), no root reserve, a 4 MiB journal, lazily
# initialised tables (nothing to zero up front: the image stays sparse), no discard of a fresh file.
MKFS = ("mkfs.ext4", "-q", "-F", "-b", str(BLOCK), "-m", "0", "-J", "size=4",
        "-E", "lazy_itable_init=1,lazy_journal_init=1,nodiscard", "-L", "isolab-quota")
MECHANISM = "ext4 of the quota's size on a loop device (kernel without project quotas)"


def unsupported_reason() -> str | None:
    """Why a disk quota cannot be enforced on this host (one line), or None when it can."""
    if not Path("/dev/loop-control").exists():
        return "no loop device support (/dev/loop-control is missing)"
    try:
        filesystems = Path("/proc/filesystems").read_text()
    except OSError as exc:
        return f"cannot read /proc/filesystems: {exc}"
    if not any(line.split()[-1] == "ext4" for line in filesystems.splitlines() if line.split()):
        return "the kernel has no ext4"
    if shutil.which("mkfs.ext4") is None:
        return "mkfs.ext4 is not installed (e2fsprogs)"
    return None


def check(size: int) -> None:
    """SpecError unless a quota of `size` bytes can be enforced here."""
    if size < MIN_QUOTA:
        raise SpecError(f"invalid disk_quota {size}: at least {MIN_QUOTA // 1024**2} MiB "
                        "(the filesystem that enforces it needs room for its own journal)")
    reason = unsupported_reason()
    if reason is not None:
        raise SpecError(f"disk_quota cannot be enforced on this host: {reason}")


def _free_bytes(image: Path) -> int:
    """Bytes a writer can fill in a fresh ext4 image: its superblock's free blocks (dumpe2fs -h) less
    the clusters ext4 holds back once mounted (min(2 % of the blocks, 4096); ext4_calculate_resv_clusters
    in fs/ext4/super.c), which statfs does not offer either."""
    proc = subprocess.run(["dumpe2fs", "-h", str(image)], capture_output=True, text=True, timeout=30)
    fields = dict(line.split(":", 1) for line in proc.stdout.splitlines() if ":" in line)
    try:
        blocks, free, size = (int(fields[k]) for k in ("Block count", "Free blocks", "Block size"))
        return (free - min(blocks // 50, 4096)) * size
    except (KeyError, ValueError):
        raise InstanceError(f"disk quota: dumpe2fs -h {image} gave no free block count: "
                            f"{proc.stderr.strip() or proc.stdout[:200]}") from None


class QuotaDisk:
    """The filesystem that holds one container's writable layer and volume, `size` bytes of room."""

    def __init__(self, instance_id: str, size: int) -> None:
        self.instance_id = instance_id
        self.size = size
        self.image = scratch_dir(instance_id) / IMAGE_NAME
        self.mountpoint = state_dir(instance_id) / MOUNT_NAME
        self.room = 0  # free bytes of the fresh filesystem (what the container may write)

    def create(self, extra: int = 0) -> Path:
        """Make the image (grown until its free room reaches the quota, plus `extra` bytes for what the
        storage driver puts there before the container runs: see settle()), mount it; the mountpoint."""
        where = f"container {self.instance_id}: disk quota"
        wanted = self.size + extra
        size = wanted + wanted // 64 + 5 * 1024**2  # a first guess at ext4's own overhead
        slack = max(64 * BLOCK, wanted // 1000)  # room may exceed the request by this much
        for _ in range(5):  # mkfs of a sparse image with lazy tables takes ~10 ms
            size = -(-size // BLOCK) * BLOCK
            with open(self.image, "wb") as f:
                f.truncate(size)
            proc = subprocess.run([*MKFS, str(self.image)], capture_output=True, text=True, timeout=120)
            if proc.returncode != 0:
                raise InstanceError(f"{where}: mkfs.ext4 {self.image} failed: {proc.stderr.strip()}")
            self.room = _free_bytes(self.image)
            if wanted <= self.room <= wanted + slack:
                break
            size += wanted - self.room + (BLOCK if self.room < wanted else 0)
        if self.room < wanted:
            raise InstanceError(f"{where}: could not size {self.image} to {self.size} bytes of room "
                                f"(got {self.room})")
        self.mountpoint.mkdir(mode=0o700, exist_ok=True)
        # mount(8) attaches a free loop device with autoclear: it detaches when the filesystem is released
        proc = subprocess.run(["mount", "-t", "ext4", "-o", "loop,noatime", str(self.image),
                               str(self.mountpoint)], capture_output=True, text=True, timeout=60)
        if proc.returncode != 0:
            raise InstanceError(f"{where}: mount -o loop {self.image} on {self.mountpoint} failed: "
                                f"{proc.stderr.strip()}")
        with contextlib.suppress(OSError):
            os.rmdir(self.mountpoint / "lost+found")
        return self.mountpoint

    def settle(self) -> None:
        """After the storage driver filled the filesystem with the instance's initial root (a full copy of
        the image): hold back what exceeds the quota in a preallocated file outside the container's view
        (unwritten extents: no data is written, the image stays sparse), so the container can write the
        quota and no more."""
        st = os.statvfs(self.mountpoint)
        free = st.f_bavail * st.f_frsize
        if free < self.size:
            raise InstanceError(f"container {self.instance_id}: disk quota: only {free} bytes left for a quota of "
                                f"{self.size} after the root was prepared on {self.mountpoint}")
        excess = free - self.size - 16 * 1024  # what statfs offers beyond the quota, less a directory's blocks
        if excess > 64 * BLOCK:
            fd = os.open(self.mountpoint / RESERVE_NAME, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            try:
                os.posix_fallocate(fd, 0, excess)
            finally:
                os.close(fd)
        st = os.statvfs(self.mountpoint)
        self.room = st.f_bavail * st.f_frsize

    def mounted(self) -> bool:
        return os.path.ismount(self.mountpoint)

    def remove(self) -> None:
        """Unmount (lazily: a dying container may still hold it) and delete the image. Idempotent."""
        sc.detach_all_under(self.mountpoint)
        with contextlib.suppress(OSError):
            self.mountpoint.rmdir()
        with contextlib.suppress(FileNotFoundError):
            self.image.unlink()

    def describe(self) -> dict[str, object]:
        return {"disk_quota_bytes": self.size, "disk_quota_room_bytes": self.room,
                "disk_quota_mechanism": MECHANISM}


def loop_devices() -> list[tuple[str, str]]:
    """(device, backing file) of every attached loop device (losetup --json)."""
    if shutil.which("losetup") is None:
        return []
    proc = subprocess.run(["losetup", "--list", "--json", "--output", "NAME,BACK-FILE"],
                          capture_output=True, text=True, timeout=30)
    if proc.returncode != 0 or not proc.stdout.strip():
        return []
    try:
        rows = json.loads(proc.stdout).get("loopdevices", [])
    except json.JSONDecodeError:
        return []
    return [(str(r.get("name")), str(r.get("back-file") or "")) for r in rows if r.get("name")]


def our_loops(root: Path = SCRATCH_ROOT) -> list[tuple[str, str, str]]:
    """(device, backing file, instance id) of loop devices backed by a quota image under `root`."""
    found = []
    for device, back in loop_devices():
        path = back.removesuffix(" (deleted)")
        parent = Path(path).parent
        if Path(path).name == IMAGE_NAME and parent.parent == root:
            found.append((device, path, parent.name))
    return found


def sweep_loops(live: Callable[[str], bool], root: Path = SCRATCH_ROOT) -> list[str]:
    """Detach loop devices backed by quota images of instances that are not live; what was detached.

    (Normally autoclear has freed them when their mount went; this catches a loop device attached by a
    mount(8) that was killed before it mounted.)"""
    removed = []
    for device, back, instance_id in our_loops(root):
        if live(instance_id):
            continue
        for _ in range(20):  # autoclear may still be releasing it
            proc = subprocess.run(["losetup", "-d", device], capture_output=True, text=True, timeout=30)
            if proc.returncode == 0 or not any(d == device for d, _, _ in our_loops(root)):
                removed.append(f"{device} ({back})")
                break
            time.sleep(0.05)
    return removed


# ---- btrfs: qgroups on the instance's snapshot -----------------------------------------------------------

BTRFS_MECHANISM = "btrfs qgroup limit on the exclusive bytes of the instance's snapshot"


def _btrfs(argv: list[str], what: str) -> str:
    proc = subprocess.run(["btrfs", *argv], capture_output=True, text=True, timeout=300)
    if proc.returncode != 0:
        raise InstanceError(f"disk quota: btrfs {' '.join(argv)} ({what}): "
                            f"{(proc.stderr.strip() or proc.stdout.strip())[-300:]}")
    return proc.stdout


def btrfs_limit(subvolume: Path, mountpoint: Path, size: int) -> str:
    """Limit what the snapshot `subvolume` holds exclusively (what the instance wrote, not what it shares
    with its image) to `size` bytes: quotas on for the pool (idempotent), then `qgroup limit -e`. A write
    past it fails with EDQUOT. Returns the qgroup id (0/<subvolume id>)."""
    shown = subprocess.run(["btrfs", "qgroup", "show", str(mountpoint)], capture_output=True, text=True, timeout=60)
    if shown.returncode != 0:  # quotas are off on this pool
        _btrfs(["quota", "enable", str(mountpoint)], "enable quotas on the pool")
    info = _btrfs(["subvolume", "show", str(subvolume)], "subvolume id")
    ids = [line.split(":", 1)[1].strip() for line in info.splitlines() if line.strip().startswith("Subvolume ID:")]
    if not ids:
        raise InstanceError(f"disk quota: no subvolume id for {subvolume} in `btrfs subvolume show`")
    _btrfs(["qgroup", "limit", "-e", str(size), str(subvolume)], "limit")
    return f"0/{ids[0]}"


def btrfs_clear_stale(mountpoint: Path) -> None:
    """Drop the qgroups of deleted snapshots (best effort; `subvolume sync` first: a deleted snapshot's
    qgroup goes stale only once btrfs has cleaned the subvolume up)."""
    if not os.path.ismount(mountpoint):
        return
    subprocess.run(["btrfs", "subvolume", "sync", str(mountpoint)], capture_output=True, timeout=300)
    subprocess.run(["btrfs", "qgroup", "clear-stale", str(mountpoint)], capture_output=True, timeout=60)
