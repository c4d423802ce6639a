"""The `btrfs` storage driver: each image a read-only subvolume, each instance a writable snapshot of it.

Where the subvolumes live (the *pool*), under STORAGE_ROOT (/var/lib/isolab/storage, or
$ISOLAB_STORAGE_DIR): the directory `btrfs/` itself when STORAGE_ROOT is on btrfs; otherwise a btrfs
filesystem in the sparse file `btrfs.img` (POOL_SIZE), loop-mounted at `btrfs/`, made on first use.
In the pool: `images/<key>` (read-only; the key hashes the chain of layer directories, so an image is
imported once: its base layer copied in, each further layer a snapshot of its parent with the layer
applied) and `containers/<instance id>` (a writable snapshot of its image).

Who uses the pool: every process that does holds a shared flock on `btrfs.lock` for its life (the
kernel drops it at exit, kill -9 included). Setting the pool up and importing images happen under
`btrfs-setup.lock`. The pool is torn down (unmounted, loop device detached, file and lock files
removed) by whoever gets `btrfs.lock` exclusively once no live or kept container has a snapshot in it:
the last user at its exit, or `cleanup`. A pool on the host's own btrfs is never torn down (its images
stay as a cache); only dead instances' snapshots and interrupted imports are removed. Private pools
(a test's or a benchmark's $ISOLAB_STORAGE_DIR named `storage-*` beside the default) are swept alike.
"""

from __future__ import annotations

import atexit
import contextlib
import fcntl
import hashlib
import os
import re
import shutil
import signal
import subprocess
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

from runtime.container import quota
from runtime.container.rootfs import bind_root
from runtime.container.storage.base import InstanceRoot, StorageDriver
from runtime.container.storage.changes import apply_layer
from runtime.errors import InstanceError, SpecError
from runtime.linux import syscalls as sc

POOL_SIZE = 32 * 1024**3  # the sparse image file's size (it takes only what is written)
PARTIAL = ".partial-"


def storage_root() -> Path:
    return Path(os.environ.get("ISOLAB_STORAGE_DIR", "/var/lib/isolab/storage"))


def _die_with_parent() -> None:
    """In the child before exec: killed with its parent, so a `cp -a` into the pool does not outlive a
    killed run and keep the pool's mount (and its loop device) busy after `cleanup`."""
    sc.prctl(sc.PR_SET_PDEATHSIG, signal.SIGKILL)


def _run(argv: Sequence[str], what: str) -> str:
    try:
        proc = subprocess.run(list(argv), capture_output=True, text=True, timeout=600, preexec_fn=_die_with_parent)
    except FileNotFoundError:
        raise InstanceError(f"storage btrfs: {argv[0]} not found (Debian package btrfs-progs)") from None
    if proc.returncode != 0:
        detail = (proc.stderr.strip() or proc.stdout.strip())[-300:]
        raise InstanceError(f"storage btrfs: {what}: {' '.join(argv)}: {detail}")
    return proc.stdout


def fs_type(path: Path) -> str:
    """The filesystem type of the mount holding `path` (its nearest existing ancestor)."""
    while not path.exists():
        path = path.parent
    out = subprocess.run(["findmnt", "-n", "-o", "FSTYPE", "-T", str(path)], capture_output=True, text=True)
    return out.stdout.strip().splitlines()[-1] if out.stdout.strip() else ""


def mounted(path: Path) -> bool:
    target = os.fspath(path)
    with open("/proc/self/mountinfo") as f:
        return any(line.split()[4] == target for line in f)


def loops_of(image: Path) -> list[str]:
    """Loop devices backed by `image` (losetup -j)."""
    if not image.exists():
        return []
    out = subprocess.run(["losetup", "-j", str(image), "-O", "NAME", "-n"], capture_output=True, text=True)
    return [line.strip() for line in out.stdout.splitlines() if line.strip()]


@contextlib.contextmanager
def _flock_path(path: Path, mode: int) -> Iterator[int]:
    fd = _open_lock(path, mode)
    try:
        yield fd
    finally:
        os.close(fd)


def _open_lock(path: Path, mode: int) -> int:
    """An fd holding flock `mode` on `path`, whose inode is still the one at `path` (a teardown may
    have removed the file while we waited)."""
    while True:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, mode)
            try:
                same = os.stat(path).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                same = False
        except BaseException:
            os.close(fd)
            raise
        if same:
            return fd
        os.close(fd)
        if mode & fcntl.LOCK_NB:
            raise BlockingIOError("lock file replaced")


class Pool:
    """The btrfs filesystem holding images and instance snapshots (see the module docstring)."""

    def __init__(self, root: Path | None = None) -> None:
        self.root = root or storage_root()
        self.mnt = self.root / "btrfs"
        self.image = self.root / "btrfs.img"
        self.lock = self.root / "btrfs.lock"
        self.setup_lock = self.root / "btrfs-setup.lock"
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        """Whether this process holds the pool."""
        return self._fd is not None

    @property
    def host_btrfs(self) -> bool:
        return fs_type(self.root) == "btrfs"

    @property
    def images(self) -> Path:
        return self.mnt / "images"

    @property
    def containers(self) -> Path:
        return self.mnt / "containers"

    def ready(self) -> bool:
        return self.containers.is_dir() and (self.host_btrfs or mounted(self.mnt))

    def acquire(self) -> None:
        """Hold the pool for this process (set it up if needed) until exit."""
        if self._fd is not None and self.ready():
            return
        with _flock_path(self.setup_lock, fcntl.LOCK_EX):
            if self._fd is None:
                self._fd = _open_lock(self.lock, fcntl.LOCK_SH)
                atexit.register(self.release)
            if not self.ready():
                self._setup()

    def _setup(self) -> None:
        os.chmod(self.root, 0o700)
        if self.host_btrfs:
            self.mnt.mkdir(exist_ok=True, mode=0o700)
        else:
            self._drop_image()  # what an interrupted setup left
            self.mnt.mkdir(exist_ok=True, mode=0o700)
            try:
                with open(self.image, "wb") as f:
                    f.truncate(POOL_SIZE)
                _run(["mkfs.btrfs", "-q", "-L", "isolab-storage", str(self.image)], "mkfs")
                _run(["mount", "-t", "btrfs", "-o", "loop,noatime", str(self.image), str(self.mnt)], "mount")
            except BaseException:
                self._drop_image()
                raise
        os.chmod(self.mnt, 0o700)
        self.images.mkdir(exist_ok=True)
        self.containers.mkdir(exist_ok=True)

    def _drop_image(self) -> list[str]:
        """Unmount the loop-mounted pool, detach its loop devices, remove the file (holder of the setup
        lock or of the exclusive pool lock only)."""
        removed = []
        if mounted(self.mnt):
            try:
                sc.umount2(self.mnt)
            except OSError:
                sc.umount2(self.mnt, sc.MNT_DETACH)
            removed.append(f"mount {self.mnt}")
        for loop in loops_of(self.image):
            subprocess.run(["losetup", "-d", loop], capture_output=True)
            removed.append(f"loop device {loop}")
        if self.image.exists():
            self.image.unlink()
            removed.append(str(self.image))
        with contextlib.suppress(OSError):
            self.mnt.rmdir()
        return removed

    def release(self) -> None:
        """This process no longer uses the pool (at exit): drop the hold, tear it down if unused."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        with contextlib.suppress(Exception):
            from runtime.container.storage.sweep import instance_dead

            self.sweep(instance_dead)

    # ---- images and snapshots -------------------------------------------------------------------
    @staticmethod
    def keys(layers: Sequence[Path]) -> list[str]:
        """One key per prefix of the layer chain (its path and inode identify a layer directory)."""
        keys, digest = [], hashlib.sha256()
        for layer in layers:
            st = os.stat(layer)
            digest.update(f"{os.path.realpath(layer)}:{st.st_ino}:{st.st_mtime_ns}\n".encode())
            keys.append(digest.copy().hexdigest()[:20])
        return keys

    def image_subvolume(self, layers: Sequence[Path]) -> Path:
        """The read-only subvolume of the image `layers`, imported on first use."""
        keys = self.keys(layers)
        top = self.images / keys[-1]
        if top.is_dir():
            return top
        with _flock_path(self.setup_lock, fcntl.LOCK_EX):
            for index, (layer, key) in enumerate(zip(layers, keys, strict=True)):
                done = self.images / key
                if done.is_dir():
                    continue
                partial = self.images / f"{PARTIAL}{key}"
                if partial.exists():  # an interrupted import (we hold the setup lock)
                    delete_subvolume(partial)
                if index == 0:
                    _run(["btrfs", "subvolume", "create", str(partial)], "import")
                    _run(["cp", "-a", "--reflink=auto", f"{layer}/.", f"{partial}/"], "import")
                else:
                    _run(["btrfs", "subvolume", "snapshot", str(self.images / keys[index - 1]), str(partial)],
                         "import")
                    apply_layer(Path(layer), partial)
                _run(["btrfs", "property", "set", "-ts", str(partial), "ro", "true"], "import")
                os.rename(partial, done)
        return top

    def sweep(self, dead: Callable[[str], bool]) -> list[str]:
        """Dead instances' snapshots; the whole pool when nobody holds it and no container is left."""
        removed: list[str] = []
        if self.ready():
            for snapshot in sorted(self.containers.iterdir()):
                if dead(snapshot.name):
                    delete_subvolume(snapshot)
                    removed.append(f"btrfs snapshot {snapshot}")
            if removed and not self.host_btrfs:
                quota.btrfs_clear_stale(self.mnt)  # their qgroups (disk quotas), if quotas are on
        if not self.root.is_dir():
            return removed
        try:
            fd = _open_lock(self.lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return removed  # a live process uses the pool
        try:
            if self.ready() and any(self.containers.iterdir()):
                return removed  # kept containers (python -m runtime run without --rm)
            if self.host_btrfs:
                if self.images.is_dir():
                    for partial in self.images.glob(f"{PARTIAL}*"):
                        delete_subvolume(partial)
                        removed.append(f"btrfs subvolume {partial}")
                return removed
            removed += self._drop_image()
            for lock in (self.setup_lock, self.lock):
                with contextlib.suppress(FileNotFoundError):
                    lock.unlink()
            with contextlib.suppress(OSError):
                self.root.rmdir()
        finally:
            os.close(fd)
        return removed


def delete_subvolume(path: Path) -> None:
    """Delete a subvolume (a read-only one too); plain directories are removed as such."""
    if not path.exists():
        return
    if os.stat(path).st_ino != 256:  # not a subvolume root: an interrupted create left a directory
        shutil.rmtree(path, ignore_errors=True)
        return
    subprocess.run(["btrfs", "property", "set", "-ts", str(path), "ro", "false"], capture_output=True)
    _run(["btrfs", "subvolume", "delete", str(path)], "delete")


_USAGE = re.compile(r"^\s*(\d+)\s+(\d+)\s+(\S+)\s+(.*)$")


class BtrfsDriver(StorageDriver):
    name = "btrfs"
    mechanism = "btrfs snapshots"

    def __init__(self) -> None:
        self.pool = Pool()

    def unavailable(self) -> str | None:
        if "btrfs" not in Path("/proc/filesystems").read_text():
            probe = subprocess.run(["modprobe", "btrfs"], capture_output=True, text=True)
            if probe.returncode != 0:
                return f"the kernel has no btrfs (/proc/filesystems; modprobe btrfs: {probe.stderr.strip()})"
        for tool in ("btrfs", "mkfs.btrfs"):
            if shutil.which(tool) is None:
                return f"{tool} is not installed (Debian package btrfs-progs)"
        return None

    def layout(self, instance_id: str, layers: Sequence[Path], layer_dir: Path) -> InstanceRoot:
        return InstanceRoot(self.name, instance_id, tuple(str(p) for p in layers),
                            upper=str(self.pool.containers / instance_id), extra={"pool": str(self.pool.root)})

    def prepare(self, root: InstanceRoot) -> None:
        self.pool.acquire()
        image = self.pool.image_subvolume(root.layer_paths)
        _run(["btrfs", "subvolume", "snapshot", str(image), root.upper], "snapshot")

    quota_kind = "driver"

    def limit(self, root: InstanceRoot, size: int) -> dict[str, object]:
        """A qgroup limit on the snapshot's exclusive bytes (runtime.container.quota.btrfs_limit)."""
        if self.pool.host_btrfs:
            raise SpecError(f"storage driver {self.name}: a disk quota would turn quotas on for the host's own "
                            f"btrfs at {self.pool.root} (every subvolume of it pays for qgroup accounting)")
        root.extra["qgroup"] = quota.btrfs_limit(Path(root.upper), self.pool.mnt, size)
        return {"disk_quota_bytes": size, "disk_quota_mechanism": quota.BTRFS_MECHANISM,
                "disk_quota_qgroup": root.extra["qgroup"]}

    def mount(self, root: InstanceRoot, target: Path, volatile: bool = False) -> None:
        bind_root(Path(root.upper), target)

    def remove(self, root: InstanceRoot) -> None:
        upper = Path(root.upper)
        if upper.exists():
            delete_subvolume(upper)
            if root.extra.get("qgroup"):
                quota.btrfs_clear_stale(self.pool.mnt)
            if not self.pool.held:  # e.g. `python -m runtime rm` of the last kept container: the pool goes too
                from runtime.container.storage.sweep import instance_dead

                self.pool.sweep(instance_dead)

    def disk_usage_bytes(self, root: InstanceRoot) -> int:
        """Bytes of data extents only this snapshot references (`btrfs filesystem du`'s Exclusive, after a
        sync: delayed allocations have no extent yet): what it does not share with its image. Metadata is
        not counted, so neither are small files btrfs stores inline in it."""
        upper = Path(root.upper)
        if not upper.exists():
            return 0
        _run(["btrfs", "filesystem", "sync", str(upper)], "sync")
        out = _run(["btrfs", "filesystem", "du", "-s", "--raw", str(upper)], "disk usage")
        for line in out.splitlines():
            match = _USAGE.match(line)
            if match:
                return int(match.group(2))
        raise InstanceError(f"storage btrfs: no usage line in `btrfs filesystem du` output: {out!r}")

    def block_device(self, root: InstanceRoot) -> str | None:
        """The loop device under a loop-mounted pool (a btrfs subvolume's st_dev is anonymous)."""
        for loop in loops_of(self.pool.image):
            st = os.stat(loop)
            return f"{os.major(st.st_rdev)}:{os.minor(st.st_rdev)}"
        return None

    def sweep(self, dead: Callable[[str], bool], everything: bool = False) -> list[str]:
        """The pool, and private pools beside it (`storage-*`: a test's or a benchmark's own
        $ISOLAB_STORAGE_DIR) that a killed process left."""
        removed: list[str] = []
        root = self.pool.root
        for other in [root, *sorted(root.parent.glob(f"{root.name}-*"))]:
            if other.is_dir():
                removed += (self.pool if other == root else Pool(other)).sweep(dead)
        return removed
