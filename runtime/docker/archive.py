"""Files in and out of a container as Docker moves them: tar archives (`put_archive`, `get_archive`).

Docker resolves the directory of a path inside the container's root (symlinks on the way cannot leave
it) and replaces, never follows, a symlink at the name it extracts to. What comes back from
`get_archive` is checked here before a byte reaches the host: exactly one member, a regular file, with
the expected name (no links, devices, FIFOs, directories or paths of its own), like
runtime.linux.transfer does for the platforms that reach an instance's root directly.
"""

from __future__ import annotations

import os
import posixpath
import shutil
import stat
import tarfile
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import IO

from runtime.linux.transfer import TransferError

SPOOL = 16 * 2**20  # archives up to this size stay in memory
# Go's os.FileMode type bits, as Docker reports a path's mode (X-Docker-Container-Path-Stat).
_GO_TYPES = {1 << 31: "a directory", 1 << 27: "a symbolic link", 1 << 26: "a device",
             1 << 25: "a FIFO", 1 << 24: "a socket", 1 << 21: "a character device", 1 << 19: "not a regular file"}


def split(remote: str, what: str) -> tuple[str, str]:
    """('/dir', 'name') of an absolute path inside the container; TransferError if it names no file."""
    norm = posixpath.normpath("/" + remote.lstrip("/"))
    parent, name = posixpath.split(norm)
    if not remote or name in ("", ".", ".."):
        raise TransferError(f"{what}: {remote!r} does not name a file")
    return parent, name


def go_mode_kind(mode: int) -> str | None:
    """What a Go FileMode is when it is not a regular file, None for a regular file."""
    for bit, kind in _GO_TYPES.items():
        if mode & bit:
            return kind
    return None


def file_archive(local: Path, name: str) -> IO[bytes]:
    """A tar stream holding host file `local` as one regular file `name` (root-owned, its mode kept)."""
    info = os.stat(local)
    if not stat.S_ISREG(info.st_mode):
        raise TransferError(f"put_file {local}: not a regular file on the host")
    spool = tempfile.SpooledTemporaryFile(max_size=SPOOL)
    with tarfile.open(fileobj=spool, mode="w", format=tarfile.PAX_FORMAT) as tar, open(local, "rb") as src:
        member = tarfile.TarInfo(name)
        member.size = info.st_size
        member.mode = stat.S_IMODE(info.st_mode)
        member.mtime = int(info.st_mtime)
        tar.addfile(member, src)
    spool.seek(0)
    return spool  # type: ignore[return-value]


def extract_single_file(chunks: Iterable[bytes], name: str, local: Path, what: str) -> None:
    """Write the one regular file `name` of the tar stream `chunks` to `local`; refuse anything else."""
    with tempfile.SpooledTemporaryFile(max_size=SPOOL) as spool:
        for chunk in chunks:
            spool.write(chunk)
        spool.seek(0)
        try:
            with tarfile.open(fileobj=spool, mode="r:") as tar:  # type: ignore[call-overload]
                members = tar.getmembers()
                if len(members) != 1:
                    raise TransferError(f"{what}: refused: the archive holds {len(members)} entries, not one file")
                member = members[0]
                if member.name != name:
                    raise TransferError(f"{what}: refused: the archive's entry is {member.name!r}, not {name!r}")
                if not member.isreg():
                    raise TransferError(f"{what}: refused: it is {_tar_kind(member)} inside the instance "
                                        "(file transfer reads regular files only)")
                src = tar.extractfile(member)
                assert src is not None
                with src, open(local, "wb") as out:
                    shutil.copyfileobj(src, out, 1 << 20)
        except tarfile.TarError as exc:
            raise TransferError(f"{what}: unreadable archive from Docker: {exc}") from exc


def _tar_kind(member: tarfile.TarInfo) -> str:
    if member.isdir():
        return "a directory"
    if member.issym() or member.islnk():
        return "a link"
    if member.isfifo():
        return "a FIFO"
    if member.ischr() or member.isblk():
        return "a device"
    return "not a regular file"

