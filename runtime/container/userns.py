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

No chowned-copy fallback: this runtime needs idmapped mounts on the layers' filesystem (Linux >= 5.19 for
overlayfs on idmapped layers; ext4, xfs, btrfs, tmpfs since 6.3); without them `userns=True` fails with one
clear error.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable, Sequence
from pathlib import Path

from runtime.container import rootfs
from runtime.linux import idmap

#: The suite's mapping: ids 0..65535 inside are host ids 100000..165535 (uids and gids alike).
SUITE_MAPPING = idmap.IdMapping(first=100000, count=65536)
#: The directory (inside the instance's state dir) the container's first process starts in.
WORKDIR = "userns"


def prepare_dirs(workdir: Path, upper: Path, volume: Path | None,
                 mapping: idmap.IdMapping = SUITE_MAPPING) -> None:
    """Host side, at create: the first process's working directory (with the root mount point in it), the
    writable layer's root and the volume belong to the mapped root (0700: no other host user enters)."""
    workdir.mkdir(0o700)
    (workdir / "root").mkdir(0o755)
    for path in (workdir, workdir / "root", upper, *(() if volume is None else (volume,))):
        os.chown(path, mapping.first, mapping.first)


def mount_root(pid: int, workdir: Path, lowers: Sequence[Path], upper: Path, work: Path,
               volatile: bool, volume: Path | None, mapping: idmap.IdMapping = SUITE_MAPPING) -> None:
    """In the helper (host root, in the private mount namespace the first process shares): write `pid`'s
    maps, mount each layer idmapped into its user namespace, then the overlay and the volume at
    `workdir`/root."""
    idmap.write_maps(pid, mapping)
    userns_fd = os.open(f"/proc/{pid}/ns/user", os.O_RDONLY | os.O_CLOEXEC)
    try:
        mapped = []
        for index, layer in enumerate(lowers):
            target = workdir / f"lower{index}"
            target.mkdir(0o700)
            try:
                mount_fd = idmap.idmapped_clone(str(layer), userns_fd)
            except OSError as exc:
                raise OSError(exc.errno, f"{exc.strerror} (idmapped mounts unsupported on the layer's "
                                         "filesystem here; this runtime has no chowned-copy fallback)") from exc
            try:
                idmap.attach(mount_fd, str(target))
            finally:
                os.close(mount_fd)
            mapped.append(target)
    finally:
        os.close(userns_fd)
    rootfs.mount_layers(mapped, upper, work, workdir / "root", volatile, volume)


def unshift_tree(top: Path, mapping: idmap.IdMapping = SUITE_MAPPING) -> None:
    """Rewrite owners in a copied writable layer from host ids (mapped root 100000...) back to the ids seen
    inside (0...), so that a committed layer is an ordinary image layer. Ids outside the mapping (overlayfs's
    whiteouts, made as host root) stay; modes are restored (chown clears setuid/setgid bits)."""
    def inside(value: int) -> int:
        return value - mapping.first if mapping.first <= value < mapping.first + mapping.count else value

    _unshift(str(top), inside)
    for dirpath, dirnames, filenames in os.walk(top):
        for name in dirnames + filenames:
            _unshift(os.path.join(dirpath, name), inside)


def _unshift(path: str, inside: Callable[[int], int]) -> None:
    st = os.lstat(path)
    uid, gid = inside(st.st_uid), inside(st.st_gid)
    if (uid, gid) == (st.st_uid, st.st_gid):
        return
    os.chown(path, uid, gid, follow_symlinks=False)
    if not stat.S_ISLNK(st.st_mode):
        os.chmod(path, stat.S_IMODE(st.st_mode))


def describe(mapping: idmap.IdMapping = SUITE_MAPPING) -> str:
    """For metadata: 'uid/gid 0-65535 -> 100000-165535'."""
    return f"uid/gid {mapping.describe()}"
