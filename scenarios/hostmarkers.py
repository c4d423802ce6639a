"""Marker objects on the host that an isolation probe looks for from inside an instance.

One `HostMarkers` set holds, under a unique token `isl-probe-<pid>-<hex>`: a sleeping marker process
(argv[0] is the token), a marker file outside any image (/run/isolab/probe-<token>/marker), a tmpfs
mounted with the token as its source (it shows in every mountinfo of the host's mount namespace), a
SysV message queue and a POSIX message queue (`/<token>`). The set is a context manager and removes
all of it; what a killed run left is found by `sweep_leftovers` through the set's state record
(runtime.state: owner pid and start time), and only when the owning process is gone.

ctypes is used for msgget/msgctl and mq_open/mq_unlink: the standard library has no binding.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import secrets
import shutil
import signal
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

from runtime import state
from runtime.linux import syscalls as sc
from runtime.naming import STATE_ROOT

PROBE_PREFIX = "isl-probe-"
KIND = "isl-probe"  # runtime.state kind: the state dir is /run/isolab/isl-probe-<pid>-<hex>
IPC_CREAT, IPC_EXCL, IPC_RMID = 0o1000, 0o2000, 0
MARKER_SLEEP_S = 900  # the marker process ends by itself even if nothing removes it

_libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
_libc.msgget.argtypes = (ctypes.c_int, ctypes.c_int)
_libc.msgctl.argtypes = (ctypes.c_int, ctypes.c_int, ctypes.c_void_p)
_libc.mq_open.argtypes = (ctypes.c_char_p, ctypes.c_int, ctypes.c_uint, ctypes.c_void_p)
_libc.mq_unlink.argtypes = (ctypes.c_char_p,)


def _oserror(call: str) -> OSError:
    err = ctypes.get_errno()
    return OSError(err, f"{call}: {os.strerror(err)}")


@dataclass
class HostMarkers:
    """Host-side markers; `facts()` is what the probe compares its findings against."""

    token: str = field(default_factory=lambda: f"{PROBE_PREFIX}{os.getpid()}-{secrets.token_hex(3)}")
    process: subprocess.Popen[bytes] | None = None
    msg_key: int = 0
    msg_id: int = -1
    mq_name: str = ""

    @property
    def directory(self) -> Path:
        return STATE_ROOT / self.token

    @property
    def marker_file(self) -> Path:
        return self.directory / "marker"

    @property
    def mount_point(self) -> Path:
        return self.directory / "mnt"

    def create(self) -> HostMarkers:
        try:
            state.claim(self.directory, KIND)  # owner record: a sweep beside a live run spares it
            self.marker_file.write_text(self.token + "\n")
            self.mount_point.mkdir()
            sc.mount(self.token, self.mount_point, "tmpfs", sc.MS_NOSUID | sc.MS_NODEV | sc.MS_NOEXEC, "size=4k")
            # argv[0] is the token, so the process is findable by its command line; its own session,
            # so a signal to the harness's process group does not reach it.
            self.process = subprocess.Popen([self.token, str(MARKER_SLEEP_S)], executable="/bin/sleep",
                                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                            stderr=subprocess.DEVNULL, start_new_session=True)
            self.msg_key = 0x1501_0000 | secrets.randbits(16)
            self.msg_id = _libc.msgget(self.msg_key, IPC_CREAT | IPC_EXCL | 0o600)
            if self.msg_id < 0:
                raise _oserror("msgget")
            self.mq_name = "/" + self.token
            fd = _libc.mq_open(self.mq_name.encode(), os.O_CREAT | os.O_EXCL | os.O_RDWR, 0o600, None)
            if fd < 0:
                self.mq_name = ""
                raise _oserror(f"mq_open({self.token})")
            os.close(fd)
            self._record()
        except BaseException:
            self.remove()
            raise
        return self

    def _record(self) -> None:
        state.update(self.directory, token=self.token, msg_id=self.msg_id, mq_name=self.mq_name,
                     pid=self.process.pid if self.process else None)

    def facts(self) -> dict[str, object]:
        assert self.process is not None
        return {"token": self.token, "marker_pid": self.process.pid, "marker_file": str(self.marker_file),
                "msg_key": self.msg_key, "mq_name": self.mq_name.lstrip("/")}

    def remove(self) -> None:
        """Remove every marker made so far. Idempotent."""
        if self.process is not None and self.process.returncode is None:
            self.process.kill()
            self.process.wait()
        if self.msg_id >= 0:
            _libc.msgctl(self.msg_id, IPC_RMID, None)
            self.msg_id = -1
        if self.mq_name:
            _libc.mq_unlink(self.mq_name.encode())
            self.mq_name = ""
        _remove_dir(self.directory)

    def __enter__(self) -> HostMarkers:
        return self.create()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.remove()


def _remove_dir(directory: Path) -> None:
    mount_point = directory / "mnt"
    if os.path.ismount(mount_point):
        sc.umount2(mount_point, sc.MNT_DETACH)
    shutil.rmtree(directory, ignore_errors=True)


def sweep_leftovers() -> list[str]:
    """Remove the markers of probe runs whose owner is gone (a killed harness); spare live ones."""
    removed: list[str] = []
    if not STATE_ROOT.is_dir():
        return removed
    for directory in STATE_ROOT.glob(f"{PROBE_PREFIX}*"):
        if state.is_live(directory):
            continue
        record = state.read(directory)
        pid = record.get("pid")
        if pid and _is_marker_process(pid, directory.name):
            os.kill(pid, signal.SIGKILL)
        if isinstance(record.get("msg_id"), int) and record["msg_id"] >= 0:
            _libc.msgctl(record["msg_id"], IPC_RMID, None)
        if record.get("mq_name"):
            _libc.mq_unlink(str(record["mq_name"]).encode())
        _remove_dir(directory)
        removed.append(str(directory))
    return removed


def _is_marker_process(pid: int, token: str) -> bool:
    """True only for the marker itself (guards against a reused pid)."""
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0", 1)[0].decode() == token
    except OSError:
        return False
