"""The container's user namespace (`InstanceSpec(userns=True)`): which host ids its root maps to, and the
host-side setup that must happen as host root once the namespace exists.

Mapping: one fixed suite range, uids and gids 0-65535 inside -> 100000-165535 on the host, for every
container (as Docker's `userns-remap` gives every container the one range of its remap user). Per-container
ranges would also keep containers apart from each other, but they must be allocated without overlap across
concurrent runs and crashes; the suite's threat is a workload against the host, which one unprivileged range
already answers. Each instance records its mapping in its state file and in every sample's metadata.

Start order (runtime.container.namespaces.fork_pid1_userns): a helper forked from the runtime (host root)
makes a private mount namespace, clones the container's first process into a new user and pid namespace,
writes its uid/gid maps, and mounts the container's root there: every read-only layer as an idmapped mount
(mount_setattr MOUNT_ATTR_IDMAP with the container's user namespace; files owned by host uid 0 appear owned
by the namespace's root) below an overlay whose writable layer is owned by the mapped root (files the
container makes belong to host uid 100000+). The overlay is mounted by host root, so overlayfs keeps its
trusted.* xattrs (opaque directories of committed layers work as without a user namespace). The first process
then finishes the tree itself (runtime.container.rootfs.finish_root): it reaches the root through its working
directory, a directory owned by the mapped root, so the instance's state directory stays 0700.

Where a layer's filesystem cannot be idmapped (before Linux 5.19 for overlayfs on idmapped layers; ext4, xfs
and btrfs allow it since 5.12-5.15, tmpfs since 6.3), the helper falls back to a chowned copy of that layer
(every owner shifted into the mapping), built once and cached beside the layer, keyed by the mapping:
<layer>.userns-100000-65536/fs in a root-only directory (the image hash is in the base layer's path; a
committed layer is immutable). ISOLAB_USERNS_COPY=1 forces the copies, ISOLAB_USERNS_COPY=<dir>:<dir> for
those layers only (to test the fallback on a kernel that has idmapped mounts). Which of the two ran is in
every sample's metadata (`userns_layers`).
"""

from __future__ import annotations

import errno
import os
import shutil
import stat
import subprocess
from collections.abc import Callable, Sequence
from pathlib import Path

from runtime.container import rootfs
from runtime.linux import idmap

#: The suite's mapping: ids 0..65535 inside are host ids 100000..165535 (uids and gids alike).
SUITE_MAPPING = idmap.IdMapping(first=100000, count=65536)
#: The directory (inside the instance's state dir) the container's first process starts in.
WORKDIR = "userns"
#: "1": chowned copies of every layer even where idmapped mounts work; "<dir>:<dir>": of these layers.
FORCE_COPY_ENV = "ISOLAB_USERNS_COPY"
IDMAPPED = "idmapped mounts"
COPIES = "chowned copies"
# mount_setattr(MOUNT_ATTR_IDMAP) on a filesystem or kernel without idmapped mounts
_NO_IDMAP = (errno.EINVAL, errno.EPERM, errno.EOPNOTSUPP, errno.ENOSYS)


def prepare_dirs(workdir: Path, upper: Path | None, volume: Path | None,
                 mapping: idmap.IdMapping = SUITE_MAPPING) -> None:
    """Host side, at create: the first process's working directory (with the root mount point in it), the
    writable layer's root (None: a whole root mounted idmapped, see mount_idmapped_root) and the volume
    belong to the mapped root (0700: no other host user enters)."""
    workdir.mkdir(0o700)
    (workdir / "root").mkdir(0o755)
    for path in (workdir, workdir / "root", *(() if upper is None else (upper,)),
                 *(() if volume is None else (volume,))):
        os.chown(path, mapping.first, mapping.first)


def mount_idmapped_root(pid: int, workdir: Path, root_dir: Path, volume: Path | None,
                        mapping: idmap.IdMapping = SUITE_MAPPING) -> str:
    """In the helper (as mount_root), for a storage driver whose root is one plain directory (a btrfs
    snapshot, a vfs copy): write `pid`'s maps and mount that directory writable and idmapped into its user
    namespace at `workdir`/root, then the volume. Files keep their image owners on disk (what the container's
    root writes is stored as uid 0), so diff and commit need no shifting; there is no chowned-copy fallback."""
    idmap.write_maps(pid, mapping)
    userns_fd = os.open(f"/proc/{pid}/ns/user", os.O_RDONLY | os.O_CLOEXEC)
    try:
        try:
            mount_fd = idmap.idmapped_clone(str(root_dir), userns_fd, readonly=False)
        except OSError as exc:
            raise OSError(exc.errno, f"an idmapped mount of {root_dir} (needed for a user namespace on this "
                                     f"storage driver): {exc.strerror or exc}") from exc
        try:
            idmap.attach(mount_fd, str(workdir / "root"))
        finally:
            os.close(mount_fd)
    finally:
        os.close(userns_fd)
    if volume is not None:
        rootfs.mount_volume(volume, str(workdir / "root"))
    return f"{IDMAPPED} (the whole root)"


def mount_root(pid: int, workdir: Path, lowers: Sequence[Path], upper: Path, work: Path,
               volatile: bool, volume: Path | None, mapping: idmap.IdMapping = SUITE_MAPPING) -> str:
    """In the helper (host root, in the private mount namespace the first process shares): write `pid`'s
    maps, mount each layer idmapped into its user namespace (or use its chowned copy), then the overlay and
    the volume at `workdir`/root. Returns how the layers were mapped (IDMAPPED, COPIES or both)."""
    idmap.write_maps(pid, mapping)
    forced = os.environ.get(FORCE_COPY_ENV, "")
    copy = forced == "1"
    used = set()
    userns_fd = os.open(f"/proc/{pid}/ns/user", os.O_RDONLY | os.O_CLOEXEC)
    try:
        mapped = []
        for index, layer in enumerate(lowers):
            if not copy and str(layer) not in forced.split(":"):
                target = workdir / f"lower{index}"
                target.mkdir(0o700)
                try:
                    mount_fd = idmap.idmapped_clone(str(layer), userns_fd)
                except OSError as exc:
                    if exc.errno not in _NO_IDMAP:
                        raise
                    copy = True  # this kernel or filesystem: copies for the rest too
                else:
                    try:
                        idmap.attach(mount_fd, str(target))
                    finally:
                        os.close(mount_fd)
                    mapped.append(target)
                    used.add(IDMAPPED)
                    continue
            mapped.append(chowned_copy(Path(layer), mapping))
            used.add(COPIES)
    finally:
        os.close(userns_fd)
    rootfs.mount_layers(mapped, upper, work, workdir / "root", volatile, volume)
    return " + ".join(sorted(used))


def copy_path(layer: Path, mapping: idmap.IdMapping = SUITE_MAPPING) -> Path:
    """Where the chowned copy of `layer` for `mapping` lives: beside the layer, in a root-only directory."""
    return layer.parent / f"{layer.name}.userns-{mapping.first}-{mapping.count}" / "fs"


def chowned_copy(layer: Path, mapping: idmap.IdMapping = SUITE_MAPPING) -> Path:
    """The layer with every owner shifted into the mapping (built once: `cp -a`, then lchown), cached."""
    target = copy_path(layer, mapping)
    if target.is_dir():
        return target
    holder = target.parent
    holder.mkdir(0o700, exist_ok=True)
    partial = holder / f".fs.partial-{os.getpid()}"
    shutil.rmtree(partial, ignore_errors=True)
    try:
        proc = subprocess.run(["cp", "-a", f"{layer}/.", str(partial)], capture_output=True, text=True)
        if proc.returncode != 0:
            raise OSError(errno.EIO, f"chowned copy of {layer}: cp -a: {proc.stderr.strip()[-300:]}")

        def outside(value: int) -> int:
            return mapping.first + value if 0 <= value < mapping.count else value

        _shift_tree(partial, outside)
        try:
            os.rename(partial, target)
        except OSError:
            if not target.is_dir():  # (else another runtime finished the same copy first)
                raise
    finally:
        shutil.rmtree(partial, ignore_errors=True)
    return target


def unshift_tree(top: Path, mapping: idmap.IdMapping = SUITE_MAPPING) -> None:
    """Rewrite owners in a copied writable layer from host ids (mapped root 100000...) back to the ids seen
    inside (0...), so that a committed layer is an ordinary image layer. Ids outside the mapping (overlayfs's
    whiteouts, made as host root) stay; modes are restored (chown clears setuid/setgid bits)."""
    def inside(value: int) -> int:
        return value - mapping.first if mapping.first <= value < mapping.first + mapping.count else value

    _shift_tree(top, inside)


def _shift_tree(top: Path, shift: Callable[[int], int]) -> None:
    _shift(str(top), shift)
    for dirpath, dirnames, filenames in os.walk(top):
        for name in dirnames + filenames:
            _shift(os.path.join(dirpath, name), shift)


def _shift(path: str, shift: Callable[[int], int]) -> None:
    st = os.lstat(path)
    uid, gid = shift(st.st_uid), shift(st.st_gid)
    if (uid, gid) == (st.st_uid, st.st_gid):
        return
    os.chown(path, uid, gid, follow_symlinks=False)
    if not stat.S_ISLNK(st.st_mode):
        os.chmod(path, stat.S_IMODE(st.st_mode))


def describe(mapping: idmap.IdMapping = SUITE_MAPPING) -> str:
    """For metadata: 'uid/gid 0-65535 -> 100000-165535'."""
    return f"uid/gid {mapping.describe()}"
