"""Linux namespaces of a container: which ones, how the pid-1 child is forked, how exec joins them.

The container's pid namespace is made without a second fork: the forking thread unshares
CLONE_NEWPID (which only changes the namespace of its *future* children), forks, and immediately
returns its own `pid_for_children` to its active namespace with setns. The child is pid 1 of the new
namespace and unshares mnt, uts, ipc and net itself. `exec` into a running container uses the same
trick with setns into the container's pid namespace, and joins the others in the child.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager

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


def open_namespaces(pid: int) -> dict[str, int]:
    """O_CLOEXEC fds of a process's namespaces (they keep the namespaces alive while open)."""
    fds: dict[str, int] = {}
    try:
        for name in ("ipc", "uts", "net", "pid", "mnt"):
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
    """In a forked child: setns into ipc, uts, net and finally mnt (which also sets root and cwd)."""
    for name, flag in JOIN_ORDER:
        sc.setns(fds[name], flag)
    os.chdir("/")
