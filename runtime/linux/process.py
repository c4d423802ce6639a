"""Process helpers shared by the platforms: forking safely from threads, liveness of a pid, running a command
with captured output, and finding (and killing, for cleanup) processes by where they run.

Forks that run Python in the child before exec (the container's pid 1, `preexec_fn` of an exec into an
instance) happen only inside `forking()`: one fork at a time per process, with the cyclic GC off across
the fork. Instances are created from threads (the startup scenario's pool), and Python documents fork
and preexec_fn as unsafe there: only the forking thread survives in the child, and a lock another thread
held stays locked forever. The child code on these paths takes no lock (syscalls through os and ctypes,
module-level imports only, no logging, no pyroute2), so what remains is what the lock removes: two of
our forks interleaving (one child inheriting the other's half-made pipes and namespace fds) and a
collection in the child running finalizers of the parent's objects.
"""

from __future__ import annotations

import gc
import os
import subprocess
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from runtime.errors import ExecTimeout
from runtime.spec import ExecResult

_FORK_LOCK = threading.Lock()


@contextmanager
def forking() -> Iterator[None]:
    """Hold while forking a child that runs Python code before it execs (see the module docstring)."""
    with _FORK_LOCK:
        enabled = gc.isenabled()
        gc.disable()
        try:
            yield
        finally:
            if enabled:
                gc.enable()


def pid_alive(pid: object) -> bool:
    """Whether a process with this pid exists (a pid we may not signal counts as alive)."""
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


#: Multiplies every captured exec's timeout, for slow (emulated) machines such as the cgroup v2 test guest
#: under TCG, where a timeout meant as a hang guard on real hardware would fire on a merely slow command.
TIMEOUT_SCALE = float(os.environ.get("ISOLAB_TIMEOUT_SCALE") or 1)


def run_captured(start: Callable[[], subprocess.Popen[str]], argv: Sequence[str], timeout: float,
                 where: str) -> ExecResult:
    """Start a process with `start()` (stdout/stderr piped, text), wait up to `timeout` and capture it.

    A command missing in the image becomes exit status 127 with a clear stderr; a timeout kills the
    process and raises ExecTimeout naming `where`."""
    started = time.perf_counter()
    timeout *= TIMEOUT_SCALE
    try:
        proc = start()
    except FileNotFoundError:
        return ExecResult(tuple(argv), 127, "", f"{argv[0]}: command not found in the image",
                          time.perf_counter() - started)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        proc.kill()
        proc.communicate()
        raise ExecTimeout(f"{where}: {argv[0]} did not finish in {timeout:.0f} s") from exc
    return ExecResult(tuple(argv), proc.returncode, out or "", err or "", time.perf_counter() - started)


def _link(path: str) -> str | None:
    try:
        return os.readlink(path)
    except OSError:
        return None


def processes() -> list[int]:
    """Pids of every process on the host (a snapshot of /proc), this one excluded."""
    me = os.getpid()
    return sorted(int(p) for p in os.listdir("/proc") if p.isdigit() and int(p) != me)


def process_root(pid: int) -> str | None:
    """Where the process is chrooted (as its /proc/<pid>/root reads), None if unreadable."""
    return _link(f"/proc/{pid}/root")


def process_cwd(pid: int) -> str | None:
    return _link(f"/proc/{pid}/cwd")


def process_netns_inode(pid: int) -> int | None:
    try:
        return os.stat(f"/proc/{pid}/ns/net").st_ino
    except OSError:
        return None


def process_cmdline(pid: int) -> list[str]:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return [a.decode(errors="replace") for a in f.read().split(b"\0") if a]
    except OSError:
        return []


def kill_matching(match: Callable[[int], str | None], timeout: float = 5.0) -> list[str]:
    """SIGKILL every process for which match(pid) gives a reason (a string), until none is left.

    Returns "process <pid> (<comm>): <reason>" for each one killed. Used by cleanup to end processes
    of dead runs (found by where they are chrooted, their netns, their command line)."""
    killed: dict[int, str] = {}
    deadline = time.monotonic() + timeout
    while True:
        found = {pid: why for pid in processes() if (why := match(pid))}
        if not found:
            break
        for pid, why in found.items():
            try:
                comm = open(f"/proc/{pid}/comm").read().strip()
            except OSError:
                comm = "?"
            try:
                os.kill(pid, 9)
            except ProcessLookupError:
                continue
            killed.setdefault(pid, f"process {pid} ({comm}): {why}")
        if time.monotonic() > deadline:
            break
        time.sleep(0.02)
    return list(killed.values())


def descendants(pids: list[int]) -> list[int]:
    """The pids and all their descendants (by walking /proc/*/stat parent links)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, todo = [], list(pids)
    while todo:
        pid = todo.pop()
        if pid not in found:
            found.append(pid)
            todo.extend(children.get(pid, []))
    return found


_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def tree_cpu_seconds(pids: list[int]) -> float:
    """User + system CPU seconds the processes `pids` and their descendants have used (their threads
    included); processes that vanished meanwhile count nothing."""
    total = 0
    for pid in descendants(pids) if pids else []:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15 of stat)
    return total / _CLOCK_TICKS
