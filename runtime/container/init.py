"""The tiny pid 1: reaps zombies, forwards signals to the workload, exits with the workload's status.

It is the forked runtime process itself (no new interpreter is started). With no workload it just
sleeps, reaping whatever `exec` leaves orphaned, until SIGTERM/SIGINT or SIGKILL.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Callable, Sequence
from typing import NoReturn

FORWARDED = {signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1,
             signal.SIGUSR2, signal.SIGWINCH, signal.SIGCONT}
WATCHED = FORWARDED | {signal.SIGCHLD}


def exit_code(status: int) -> int:
    """A wait status as a shell exit code (128+N for death by signal N)."""
    if os.WIFSIGNALED(status):
        return 128 + os.WTERMSIG(status)
    return os.waitstatus_to_exitcode(status)


def run_init(start_workload: Callable[[], int] | None, ready_fd: int) -> NoReturn:
    """Be pid 1. `start_workload` forks the workload and returns its pid; ready_fd is closed once it runs."""
    signal.pthread_sigmask(signal.SIG_BLOCK, WATCHED)
    workload = start_workload() if start_workload is not None else None
    os.close(ready_fd)
    while True:
        info = signal.sigwaitinfo(WATCHED)
        if info.si_signo == signal.SIGCHLD:
            status = _reap(workload)
            if status is not None:
                os._exit(exit_code(status))
        elif workload is not None:
            try:
                os.kill(workload, info.si_signo)
            except ProcessLookupError:
                pass
        elif info.si_signo in (signal.SIGTERM, signal.SIGINT):
            os._exit(0)


def _reap(workload: int | None) -> int | None:
    """Reap every exited child; return the workload's wait status if it was among them."""
    found = None
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return found
        if pid == 0:
            return found
        if pid == workload:
            found = status


def set_oom_score_adj(value: int) -> bool:
    """Lowering needs CAP_SYS_RESOURCE; raising never does. False if the kernel refused."""
    try:
        with open("/proc/self/oom_score_adj", "w") as f:
            f.write(str(value))
    except PermissionError:
        return False
    return True



def unblock_signals() -> None:
    """In the workload, before exec: the signal mask survives exec, so clear what init blocked."""
    signal.pthread_sigmask(signal.SIG_SETMASK, set())


def fork_workload(exec_workload: Callable[[], None], memory_procs_fd: int | None = None) -> Callable[[], int]:
    """The workload: a child of the init that joins the memory cgroup (through an fd opened before
    pivot_root; the init itself stays out of it so that the OOM killer never picks the init), resets
    the OOM score and the signal mask the init changed, and execs."""
    def start() -> int:
        pid = os.fork()
        if pid == 0:
            try:
                if memory_procs_fd is not None:
                    os.write(memory_procs_fd, b"0")
                unblock_signals()
                set_oom_score_adj(0)
                exec_workload()
            finally:
                os._exit(127)
        return pid
    return start


__all__: Sequence[str] = ("exit_code", "fork_workload", "run_init", "set_oom_score_adj", "unblock_signals")
