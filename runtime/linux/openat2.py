"""ctypes wrapper for openat2(2) (Linux >= 5.6), which Python 3.11's standard library lacks.

`open_in_root(root_fd, path, flags)` resolves `path` as if `root_fd` were "/" (RESOLVE_IN_ROOT):
absolute symlinks and ".." stop at that root, for the final component and every parent, and magic
links (/proc/<pid>/fd/...) are never followed. The kernel does the whole walk atomically, so a
workload that swaps a directory for a symlink cannot steer the walk out of its root.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import os

_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
_libc.syscall.restype = ctypes.c_long

_SYS_OPENAT2 = {"x86_64": 437, "aarch64": 437}.get(os.uname().machine, 437)  # asm-generic number

# linux/openat2.h
RESOLVE_NO_XDEV = 0x01
RESOLVE_NO_MAGICLINKS = 0x02
RESOLVE_NO_SYMLINKS = 0x04
RESOLVE_BENEATH = 0x08
RESOLVE_IN_ROOT = 0x10


class OpenHow(ctypes.Structure):
    """struct open_how (linux/openat2.h)."""

    _fields_ = [("flags", ctypes.c_uint64), ("mode", ctypes.c_uint64), ("resolve", ctypes.c_uint64)]


def openat2(dir_fd: int, path: str | os.PathLike[str], flags: int, mode: int = 0, resolve: int = 0) -> int:
    """openat2(dir_fd, path, {flags, mode, resolve}) -> fd. Raises OSError naming the path.

    EAGAIN (a concurrent rename while RESOLVE_IN_ROOT walked "..") is retried a few times."""
    how = OpenHow(flags | os.O_CLOEXEC, mode if flags & (os.O_CREAT | getattr(os, "O_TMPFILE", 0)) else 0,
                  resolve)
    raw = os.fsencode(path)
    for _ in range(16):
        fd = _libc.syscall(_SYS_OPENAT2, ctypes.c_int(dir_fd), ctypes.c_char_p(raw), ctypes.byref(how),
                           ctypes.c_size_t(ctypes.sizeof(how)))
        if fd >= 0:
            return int(fd)
        err = ctypes.get_errno()
        if err != errno.EAGAIN:
            break
    if err == errno.ENOSYS:
        raise OSError(err, "openat2: the kernel lacks openat2(2) (needs Linux >= 5.6)", os.fsdecode(raw))
    raise OSError(err, f"openat2: {os.strerror(err)}", os.fsdecode(raw))


def open_in_root(root_fd: int, path: str | os.PathLike[str], flags: int, mode: int = 0) -> int:
    """Open `path` resolved inside the tree whose root is `root_fd` (never outside it)."""
    return openat2(root_fd, path, flags, mode, RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS)
