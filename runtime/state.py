"""Who owns what: one state record per instance (every kind), its owner, liveness and the suite's file locks.

An instance's state dir (/run/isolab/<kind>-<token>/, mode 0700; a VM's lives under its own root) holds
`state.json` (mode 0600, replaced atomically), which always carries the owner: the pid of the process
that runs the instance and that process's start time (field 22 of /proc/<pid>/stat, in clock ticks
since boot). A pid alone is not an identity: pids are reused, so an owner counts as alive only while a
process with that pid *and* that start time exists, and a recorded pid is only ever signalled through a
pidfd opened after the start time matched (`signal_owner`).

`locked(name)` is the suite's one cross-process mutex: fcntl.flock on /run/isolab/locks/<name>.lock.
The kernel drops the lock when its holder dies, so a SIGKILLed run never leaves a lock held.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import re
import signal
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from runtime.linux.process import pid_alive
from runtime.naming import STATE_ROOT, new_instance_id

STATE_FILE = "state.json"
LOCK_DIR = STATE_ROOT / "locks"
#: A state dir this young without a readable owner record is still being created (mkdir, then record).
YOUNG_S = 60.0
#: An instance id as runtime.naming.new_instance_id makes them (other names under the roots are not ours to sweep).
_ID = re.compile(r"[a-z]+-[0-9a-f]{8}")


# ---- process identity ---------------------------------------------------------------------------

def start_time(pid: int) -> int | None:
    """Start time of `pid` in clock ticks after boot (/proc/<pid>/stat field 22), None if it is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return None
    # The command name (field 2) may hold spaces and parentheses: fields after it follow the last ')'.
    fields = stat[stat.rfind(b")") + 2:].split()
    try:
        return int(fields[19])  # field 22 overall: 20th after the name (pid, comm are fields 1 and 2)
    except (IndexError, ValueError):
        return None


@dataclass(frozen=True)
class Owner:
    """A process identity that survives pid reuse: pid and start time."""

    pid: int
    start: int

    def alive(self) -> bool:
        return self.pid > 0 and start_time(self.pid) == self.start

    def to_dict(self) -> dict[str, int]:
        return {"pid": self.pid, "start": self.start}

    @classmethod
    def from_dict(cls, data: object) -> Owner | None:
        if not isinstance(data, dict):
            return None
        pid, start = data.get("pid"), data.get("start")
        if isinstance(pid, int) and isinstance(start, int) and pid > 0:
            return cls(pid, start)
        return None

    @classmethod
    def of(cls, pid: int) -> Owner | None:
        start = start_time(pid)
        return None if start is None else cls(pid, start)


_ME: dict[int, Owner] = {}


def me() -> Owner:
    """This process as an owner (recomputed after a fork: the child is another process)."""
    pid = os.getpid()
    if pid not in _ME:
        owner = Owner.of(pid)
        assert owner is not None, "/proc/self/stat is unreadable"
        _ME.clear()
        _ME[pid] = owner
    return _ME[pid]


def owner_fields() -> dict[str, object]:
    """The owner part of a state record. (`owner_pid` repeats the pid for sweeps of isolab versions
    before start times were recorded, so that they spare this run's instances.)"""
    return {"owner": me().to_dict(), "owner_pid": me().pid}


def signal_owner(owner: Owner, sig: int) -> bool:
    """Send `sig` to the recorded process only if it is still that process; True if sent.

    The pidfd is opened first and the start time checked after: the pidfd pins the process, so the
    check cannot be overtaken by the pid's reuse between check and kill."""
    try:
        fd = os.pidfd_open(owner.pid)
    except OSError:
        return False
    try:
        if start_time(owner.pid) != owner.start:
            return False
        signal.pidfd_send_signal(fd, sig)
        return True
    except ProcessLookupError:
        return False
    finally:
        os.close(fd)


# ---- files --------------------------------------------------------------------------------------

def write_json(path: Path, data: object, mode: int = 0o600) -> None:
    """Replace `path` with `data` as JSON atomically (temp file in the same dir, then rename), mode 0600."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{time.monotonic_ns()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, mode)
    try:
        os.write(fd, json.dumps(data, sort_keys=True).encode())
    except BaseException:
        os.close(fd)
        tmp.unlink(missing_ok=True)
        raise
    os.close(fd)
    os.replace(tmp, path)


def read_json(path: Path) -> dict[str, object]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def ensure_root(root: Path = STATE_ROOT, mode: int = 0o700) -> None:
    """Make a state root if missing: root-only (0700), or `mode` (e.g. 0755) when another user must
    search it to reach an instance's files (QEMU as libvirt-qemu opening a VM's disk images)."""
    root.mkdir(mode=mode, parents=True, exist_ok=True)
    if mode != 0o700 and root.stat().st_mode & 0o777 != mode:
        root.chmod(mode)


# ---- instance state -----------------------------------------------------------------------------

def claim(directory: Path, kind: str, mode: int = 0o700, **fields: object) -> None:
    """Make `directory` (exclusively: FileExistsError if another instance has it) and record us as owner.

    `mode` 0700 (root only) unless the instance's files must be reachable by another user (a VM's disk
    images, opened by QEMU)."""
    for _ in range(10):
        ensure_root(directory.parent, 0o755 if mode & 0o001 else 0o700)  # others search it if they must
        try:
            directory.mkdir(mode=mode)
            break
        except FileNotFoundError:
            continue  # another process removed the (empty) root just now
    else:
        directory.mkdir(mode=mode)
    directory.chmod(mode)  # (mkdir's mode is masked by the umask)
    write_json(directory / STATE_FILE, {"id": directory.name, "kind": kind, "created": time.time(),
                                        **owner_fields(), **fields})


def create(kind: str, root: Path = STATE_ROOT, **fields: object) -> tuple[str, Path]:
    """A new instance id of `kind` and its claimed state dir under `root` (retries on an id clash)."""
    while True:
        instance_id = new_instance_id(kind)
        try:
            claim(root / instance_id, kind, **fields)
        except FileExistsError:
            continue
        return instance_id, root / instance_id


def read(directory: Path) -> dict[str, object]:
    """The state record of an instance ({} if missing or unreadable)."""
    return read_json(directory / STATE_FILE)


def update(directory: Path, **fields: object) -> None:
    """Rewrite the state record with `fields` changed (only the owner writes its record)."""
    data = read(directory)
    if not data:
        data = {"id": directory.name, "created": time.time(), **owner_fields()}
    data.update(fields)
    write_json(directory / STATE_FILE, data)


def owner_of(directory: Path) -> Owner | None:
    return Owner.from_dict(read(directory).get("owner"))


def owner_pid(directory: Path) -> int | None:
    """The owner's pid, from the owner record or an older version's pid-only record."""
    record = read(directory)
    owner = Owner.from_dict(record.get("owner"))
    return owner.pid if owner is not None else _legacy_owner_pid(directory, record)


def is_live(directory: Path) -> bool:
    """Whether the instance with this state dir belongs to a running process (ourselves included).

    Read now, not from a snapshot: another run may be creating instances while we sweep. A dir with no
    readable record counts as live while it is young (its creator is between mkdir and writing it)."""
    if not directory.is_dir():
        return False
    record = read(directory)
    owner = Owner.from_dict(record.get("owner"))
    if owner is not None:
        return owner.alive()
    legacy = _legacy_owner_pid(directory, record)
    if legacy is not None:
        return pid_alive(legacy)
    try:
        return time.time() - directory.stat().st_mtime < YOUNG_S
    except OSError:
        return False


def is_kept(directory: Path) -> bool:
    """Whether the instance was stopped and kept on purpose (its record says `kept`): no process of its
    own and its owner gone, but not a leftover (a container kept after `run` without `--rm`)."""
    return read(directory).get("kept") is True


def _legacy_owner_pid(directory: Path, record: dict[str, object]) -> int | None:
    """The pid recorded by isolab before start times were recorded (`owner_pid` in state.json or an
    `owner.pid` file), so that a sweep by this version spares instances of a live older run."""
    pid = record.get("owner_pid")
    if isinstance(pid, int):
        return pid
    try:
        return int((directory / "owner.pid").read_text().strip())
    except (OSError, ValueError):
        return None


def instances(root: Path = STATE_ROOT, kind: str | None = None) -> list[Path]:
    """State dirs of instances under `root` (of one kind, or all), sorted by name; only names that are
    instance ids (`<kind>-<8 hex>`)."""
    if not root.is_dir():
        return []
    pattern = f"{kind}-*" if kind else "*-*"
    return sorted(p for p in root.glob(pattern) if p.is_dir() and _ID.fullmatch(p.name))


def token_live(token: str, roots: tuple[Path, ...] = (STATE_ROOT,)) -> bool:
    """Whether any live instance has the id token `token` (links, netns and cgroups are named by it)."""
    return any(is_live(p) for root in roots if root.is_dir() for p in root.glob(f"*-{token}"))


# ---- locks --------------------------------------------------------------------------------------

@contextmanager
def locked(name: str) -> Iterator[None]:
    """Hold the suite-wide exclusive lock `name` (fcntl.flock on /run/isolab/locks/<name>.lock).

    After the flock, the fd must still be the file at that path: a holder may have removed the lock
    file (`drop_lock`), and a lock on an unlinked file excludes nobody; then lock the new file."""
    path = LOCK_DIR / f"{name}.lock"
    while True:
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except FileNotFoundError:  # no lock dir yet (or a sweep just removed the empty one)
            ensure_root()
            LOCK_DIR.mkdir(mode=0o700, exist_ok=True)
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            try:
                same = os.stat(path).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
        except BaseException:
            os.close(fd)
            raise
        os.close(fd)
    try:
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)  # now, even if a child forked meanwhile still has the fd open
        os.close(fd)


def drop_lock(name: str) -> None:
    """Remove a lock's file; call only while holding `locked(name)`."""
    try:
        (LOCK_DIR / f"{name}.lock").unlink()
    except FileNotFoundError:
        pass


def drop_idle_locks() -> list[str]:
    """For cleanup: remove lock files nobody holds (taken with LOCK_NB, removed while held)."""
    removed = []
    for path in sorted(LOCK_DIR.glob("*.lock")) if LOCK_DIR.is_dir() else []:
        try:
            fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
        except FileNotFoundError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            continue  # held by a live process
        try:
            if os.stat(path).st_ino == os.fstat(fd).st_ino:
                path.unlink()
                removed.append(str(path))
        except FileNotFoundError:
            pass
        finally:
            os.close(fd)
    remove_empty_dirs(LOCK_DIR)
    return removed


def remove_empty_dirs(*dirs: Path) -> None:
    for directory in dirs:
        try:
            directory.rmdir()
        except OSError as exc:
            if exc.errno not in (errno.ENOTEMPTY, errno.ENOENT, errno.EEXIST, errno.EBUSY):
                raise
