"""File transfer into and out of an instance's root, resolved by the kernel inside that root.

The harness runs as root on the host; an instance's files are the workload's to shape. So every path
is resolved with openat2(RESOLVE_IN_ROOT) on an O_PATH fd of the instance's root directory: symlinks
(absolute or relative, in the final component or any parent) and ".." never leave that root.
`put_file` never follows a symlink in the final component (O_NOFOLLOW / O_EXCL: a dangling link cannot
redirect the write), and both directions refuse anything but a regular file (a FIFO would block the
harness, a device node would read or write the host's device) with one clear error. The file is
inspected through an O_PATH fd and only then reopened through /proc/self/fd, so what was checked is
exactly what is read or written, and a device is never opened at all.
"""

from __future__ import annotations

import os
import posixpath
import shutil
import stat
from pathlib import Path

from runtime.errors import InstanceError
from runtime.linux.openat2 import RESOLVE_BENEATH, RESOLVE_NO_MAGICLINKS, open_in_root, openat2

_KINDS = {stat.S_IFDIR: "a directory", stat.S_IFCHR: "a character device", stat.S_IFBLK: "a block device",
          stat.S_IFIFO: "a FIFO", stat.S_IFSOCK: "a socket", stat.S_IFLNK: "a symbolic link"}


class TransferError(InstanceError):
    """A file transfer was refused or failed; `errno` is set when a syscall failed."""

    def __init__(self, message: str, err: int | None = None) -> None:
        super().__init__(message)
        self.errno = err


def _split(remote: str, where: str) -> tuple[str, str]:
    parent, name = posixpath.split(remote)
    if not remote or name in ("", ".", ".."):
        raise TransferError(f"{where}: {remote!r} does not name a file")
    return parent or "/", name


def _kind(mode: int) -> str:
    return _KINDS.get(stat.S_IFMT(mode), "not a regular file")


def _reopen(path_fd: int, flags: int) -> int:
    """Open the very inode an O_PATH fd refers to (the host's own /proc, not the instance's)."""
    return os.open(f"/proc/self/fd/{path_fd}", flags | os.O_CLOEXEC)


def _open_root(root: Path, where: str) -> int:
    try:
        return os.open(root, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError as exc:
        raise TransferError(f"{where}: cannot open the instance root {root}: {exc.strerror}", exc.errno) from exc


def _open_for_write(parent_fd: int, name: str, mode: int, what: str) -> int:
    """A writable fd on regular file `name` in directory `parent_fd`: created, or an existing one
    truncated. Never through a symlink, never a special file."""
    beneath = RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS
    try:  # a new file: O_EXCL never follows a symlink, dangling or not
        return openat2(parent_fd, name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, mode, beneath)
    except FileExistsError:
        pass
    except OSError as exc:
        raise TransferError(f"{what}: {exc.strerror}", exc.errno) from exc
    try:  # it exists: look at it without opening it, then reopen that very inode
        path_fd = openat2(parent_fd, name, os.O_PATH | os.O_NOFOLLOW, 0, beneath)
    except OSError as exc:
        raise TransferError(f"{what}: {exc.strerror}", exc.errno) from exc
    try:
        kind = os.fstat(path_fd).st_mode
        if not stat.S_ISREG(kind):
            raise TransferError(f"{what}: refused: it is {_kind(kind)} inside the instance "
                                "(file transfer writes regular files only, never through links)")
        return _reopen(path_fd, os.O_WRONLY | os.O_TRUNC)
    except OSError as exc:
        raise TransferError(f"{what}: {exc.strerror}", exc.errno) from exc
    finally:
        os.close(path_fd)


def put_file(root: Path, local: Path, remote: str, where: str, owner: tuple[int, int] | None = None) -> None:
    """Copy host file `local` to `remote` inside the tree rooted at `root` (created or truncated), owned by
    host (uid, gid) `owner` if given (a user namespace's root), else by the caller."""
    parent, name = _split(remote, where)
    mode = os.stat(local).st_mode & 0o777
    root_fd = _open_root(root, where)
    try:
        try:
            parent_fd = open_in_root(root_fd, parent, os.O_PATH | os.O_DIRECTORY)
        except OSError as exc:
            raise TransferError(f"{where}: put_file {remote}: directory {parent}: {exc.strerror}",
                                exc.errno) from exc
        try:
            fd = _open_for_write(parent_fd, name, mode, f"{where}: put_file {remote}")
        finally:
            os.close(parent_fd)
        if owner is not None:
            os.fchown(fd, *owner)
        with os.fdopen(fd, "wb") as out, open(local, "rb") as src:
            shutil.copyfileobj(src, out, 1 << 20)
    finally:
        os.close(root_fd)


def get_file(root: Path, remote: str, local: Path, where: str) -> None:
    """Copy regular file `remote` of the tree rooted at `root` to host path `local`. Symlinks on the way
    are followed, but only inside that tree."""
    what = f"{where}: get_file {remote}"
    root_fd = _open_root(root, where)
    try:
        path_fd = open_in_root(root_fd, remote, os.O_PATH)
    except OSError as exc:
        raise TransferError(f"{what}: {exc.strerror}", exc.errno) from exc
    finally:
        os.close(root_fd)
    try:
        kind = os.fstat(path_fd).st_mode
        if not stat.S_ISREG(kind):
            raise TransferError(f"{what}: refused: it is {_kind(kind)} inside the instance "
                                "(file transfer reads regular files only)")
        fd = _reopen(path_fd, os.O_RDONLY)
    except OSError as exc:
        raise TransferError(f"{what}: {exc.strerror}", exc.errno) from exc
    finally:
        os.close(path_fd)
    with os.fdopen(fd, "rb") as src, open(local, "wb") as out:
        shutil.copyfileobj(src, out, 1 << 20)
