"""User-namespace syscalls Python's standard library lacks (ctypes; no maintained library covers them):
clone(2) with namespace flags from a single-threaded child, uid/gid maps, and idmapped mounts
(open_tree + mount_setattr(MOUNT_ATTR_IDMAP) + move_mount, Linux >= 5.12; overlayfs accepts idmapped
lower layers since 5.19).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
from dataclasses import dataclass

_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
_libc.syscall.restype = ctypes.c_long

# x86_64 syscall numbers
_SYS_CLONE = 56
_SYS_OPEN_TREE = 428
_SYS_MOVE_MOUNT = 429
_SYS_MOUNT_SETATTR = 442

CLONE_PARENT = 0x00008000
SIGCHLD = 17
AT_FDCWD = -100
AT_EMPTY_PATH = 0x1000
AT_RECURSIVE = 0x8000
OPEN_TREE_CLONE = 1
OPEN_TREE_CLOEXEC = os.O_CLOEXEC
MOVE_MOUNT_F_EMPTY_PATH = 0x4
MOUNT_ATTR_RDONLY = 0x1
MOUNT_ATTR_NOSUID = 0x2
MOUNT_ATTR_NODEV = 0x4
MOUNT_ATTR_IDMAP = 0x00100000


class _MountAttr(ctypes.Structure):
    _fields_ = [("attr_set", ctypes.c_uint64), ("attr_clr", ctypes.c_uint64),
                ("propagation", ctypes.c_uint64), ("userns_fd", ctypes.c_uint64)]


def _fail(call: str) -> OSError:
    err = ctypes.get_errno()
    return OSError(err, f"{call}: {os.strerror(err)}")


@dataclass(frozen=True)
class IdMapping:
    """One contiguous mapping: ids 0..count-1 inside are host ids first..first+count-1 (uids and gids)."""

    first: int
    count: int

    def line(self) -> str:
        return f"0 {self.first} {self.count}\n"

    def host_id(self, inside: int) -> int:
        if not 0 <= inside < self.count:
            raise ValueError(f"id {inside} is outside the mapping 0..{self.count - 1}")
        return self.first + inside

    def describe(self) -> str:
        return f"0-{self.count - 1} -> {self.first}-{self.first + self.count - 1}"


def clone_parent(flags: int) -> int:
    """clone(flags | CLONE_PARENT | SIGCHLD) on the current stack, like fork(): 0 in the child, the child's
    pid (in the caller's pid namespace) in the caller. The child's parent is the caller's parent, so the
    caller may exit and its parent waits for the child. Only from a single-threaded process (a fork's child):
    none of the fork hooks of Python or libc run."""
    pid = _libc.syscall(_SYS_CLONE, ctypes.c_ulong(flags | CLONE_PARENT | SIGCHLD), None, None, None, None)
    if pid < 0:
        raise _fail(f"clone({flags:#x})")
    return int(pid)


def write_maps(pid: int, mapping: IdMapping) -> None:
    """Write uid_map and gid_map of `pid`'s user namespace (the caller is root in the parent namespace,
    so setgroups stays allowed inside)."""
    for name in ("uid_map", "gid_map"):
        with open(f"/proc/{pid}/{name}", "w") as f:
            f.write(mapping.line())


def idmapped_clone(source: str, userns_fd: int, readonly: bool = True) -> int:
    """A detached clone of the mount tree at `source` whose ids go through `userns_fd`'s mapping
    (files owned by host uid 0 appear owned by the namespace's root). Returns the mount fd."""
    fd = _libc.syscall(_SYS_OPEN_TREE, AT_FDCWD, os.fsencode(source),
                       ctypes.c_uint(OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC))
    if fd < 0:
        raise _fail(f"open_tree({source})")
    attr = _MountAttr(MOUNT_ATTR_IDMAP | (MOUNT_ATTR_RDONLY if readonly else 0), 0, 0, userns_fd)
    if _libc.syscall(_SYS_MOUNT_SETATTR, int(fd), b"", ctypes.c_uint(AT_EMPTY_PATH), ctypes.byref(attr),
                     ctypes.c_size_t(ctypes.sizeof(attr))) != 0:
        error = _fail(f"mount_setattr({source}, MOUNT_ATTR_IDMAP)")
        os.close(fd)
        raise error
    return int(fd)


def attach(mount_fd: int, target: str) -> None:
    """Attach a detached mount (from idmapped_clone) at `target` in the caller's mount namespace."""
    if _libc.syscall(_SYS_MOVE_MOUNT, mount_fd, b"", AT_FDCWD, os.fsencode(target),
                     ctypes.c_uint(MOVE_MOUNT_F_EMPTY_PATH)) != 0:
        raise _fail(f"move_mount(-> {target})")


def become_root() -> None:
    """In a fresh user namespace whose maps are written: become its uid/gid 0, no supplementary groups."""
    os.setgroups([])
    os.setresgid(0, 0, 0)
    os.setresuid(0, 0, 0)
