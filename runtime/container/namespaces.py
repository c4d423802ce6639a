"""Linux namespaces of a container: which ones, how the pid-1 child is forked, how exec joins them.

The container's pid namespace is made without a second fork: the forking thread unshares
CLONE_NEWPID (which only changes the namespace of its *future* children), forks, and immediately
returns its own `pid_for_children` to its active namespace with setns. The child is pid 1 of the new
namespace and unshares mnt, uts, ipc and net itself. `exec` into a running container uses the same
trick with setns into the container's pid namespace, and joins the others in the child.

With a user namespace (fork_pid1_userns) the pid namespace must belong to the user namespace (else the
container's root could not mount its /proc), so pid 1 is cloned with CLONE_NEWUSER | CLONE_NEWPID by a
helper the runtime forks, with CLONE_PARENT so that the runtime stays its parent (waitpid works as
without a user namespace); the helper sets the namespace up as host root and exits. `exec` then joins
the user namespace first.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from runtime.errors import InstanceError
from runtime.linux import idmap
from runtime.linux import syscalls as sc
from runtime.linux.process import forking

#: Namespaces the container's pid 1 unshares after the fork (pid comes from the fork itself).
CHILD_FLAGS = sc.CLONE_NEWNS | sc.CLONE_NEWUTS | sc.CLONE_NEWIPC | sc.CLONE_NEWNET

#: Order in which exec joins a running container: mnt last (it changes the root directory).
JOIN_ORDER = (("ipc", sc.CLONE_NEWIPC), ("uts", sc.CLONE_NEWUTS), ("net", sc.CLONE_NEWNET),
              ("mnt", sc.CLONE_NEWNS))


@contextmanager
def children_in_pidns(target_fd: int | None = None) -> Iterator[None]:
    """Inside the block, processes forked by this thread land in a new pid namespace (or target_fd's)."""
    own = os.open("/proc/thread-self/ns/pid", os.O_RDONLY | os.O_CLOEXEC)
    try:
        if target_fd is None:
            sc.unshare(sc.CLONE_NEWPID)
        else:
            sc.setns(target_fd, sc.CLONE_NEWPID)
        try:
            yield
        finally:
            sc.setns(own, sc.CLONE_NEWPID)
    finally:
        os.close(own)


def fork_pid1(child: Callable[[], None]) -> int:
    """Fork `child` as pid 1 of a new pid namespace; returns its host pid. `child` must never return."""
    with forking(), children_in_pidns():
        pid = os.fork()
        if pid == 0:
            try:
                child()
            finally:
                os._exit(127)
    return pid


def fork_pid1_userns(child: Callable[[], None], setup: Callable[[int], str], workdir: Path) -> tuple[int, str]:
    """Clone `child` as pid 1 of a new user + pid namespace, in `workdir`, sharing a private mount namespace
    with a helper that runs `setup(pid)` as host root first (maps, mounts); returns pid 1's host pid and
    the one-line note `setup` returned."""
    info_r, info_w = os.pipe()
    try:
        with forking():
            helper = os.fork()
            if helper == 0:
                _userns_helper(child, setup, workdir, info_r, info_w)
        os.close(info_w)
        info_w = -1
        chunks = []
        while chunk := os.read(info_r, 65536):
            chunks.append(chunk)
    finally:
        os.close(info_r)
        if info_w >= 0:
            os.close(info_w)
    os.waitpid(helper, 0)
    pid, error, note = 0, "the helper died", ""
    for line in b"".join(chunks).decode(errors="replace").splitlines():
        if line.startswith("P"):
            pid = int(line[1:])
        elif line.startswith("N"):
            note = line[1:]
        elif line.startswith("E"):
            error = line[1:]
        elif line == "OK":
            error = ""
    if pid and not error:
        return pid, note
    if pid:
        try:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        except (ProcessLookupError, ChildProcessError):
            pass
    raise InstanceError(f"user namespace setup: {error}")


def _userns_helper(child: Callable[[], None], setup: Callable[[int], str], workdir: Path,
                   info_r: int, info_w: int) -> None:
    """The helper (host root, never returns): private mounts, clone pid 1, setup(pid 1), release it."""
    try:
        os.close(info_r)
        sc.unshare(sc.CLONE_NEWNS)
        sc.mount(None, "/", None, sc.MS_REC | sc.MS_PRIVATE)
        os.chdir(workdir)  # inherited by pid 1, which reaches its root through it
        gate_r, gate_w = os.pipe()
        pid = idmap.clone_parent(sc.CLONE_NEWUSER | sc.CLONE_NEWPID)
        if pid == 0:
            try:
                os.close(gate_w)
                os.close(info_w)
                if os.read(gate_r, 1) == b"g":
                    os.close(gate_r)
                    child()
            finally:
                os._exit(127)
        os.close(gate_r)
        os.write(info_w, f"P{pid}\n".encode())
        note = setup(pid)
        os.write(info_w, ("N" + note.replace("\n", " ") + "\n").encode())
        os.write(gate_w, b"g")
        os.write(info_w, b"OK\n")
        os._exit(0)
    except BaseException as exc:
        try:
            os.write(info_w, ("E" + str(exc).replace("\n", " ") + "\n").encode())
        finally:
            os._exit(1)


def open_namespaces(pid: int, user: bool = False) -> dict[str, int]:
    """O_CLOEXEC fds of a process's namespaces (they keep the namespaces alive while open).

    A namespace the process shares with the caller (the host's network of a `host`-network container) is left
    out: joining it is a no-op, and after entering a user namespace it would fail with EPERM, since the
    host's namespaces belong to the initial user namespace."""
    fds: dict[str, int] = {}
    try:
        for name in ("user",) * user + ("ipc", "uts", "net", "pid", "mnt"):
            theirs, ours = os.stat(f"/proc/{pid}/ns/{name}"), os.stat(f"/proc/self/ns/{name}")
            if (theirs.st_dev, theirs.st_ino) == (ours.st_dev, ours.st_ino) and name not in ("pid", "mnt"):
                continue
            fds[name] = os.open(f"/proc/{pid}/ns/{name}", os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        close_namespaces(fds)
        raise
    return fds


def close_namespaces(fds: dict[str, int]) -> None:
    for fd in fds.values():
        try:
            os.close(fd)
        except OSError:
            pass
    fds.clear()


def join_namespaces(fds: dict[str, int]) -> None:
    """In a forked child: setns into the user namespace if any (then become its root), ipc, uts, net and
    finally mnt (which also sets root and cwd)."""
    if "user" in fds:
        sc.setns(fds["user"], sc.CLONE_NEWUSER)
        idmap.become_root()
    for name, flag in JOIN_ORDER:
        if name in fds:  # (left out by open_namespaces when shared with the caller)
            sc.setns(fds[name], flag)
    os.chdir("/")
