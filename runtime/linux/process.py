"""Process helpers shared by the platforms: liveness of a pid, and running a command with captured output."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Callable, Sequence

from runtime.errors import ExecTimeout
from runtime.spec import ExecResult


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


def run_captured(start: Callable[[], subprocess.Popen[str]], argv: Sequence[str], timeout: float,
                 where: str) -> ExecResult:
    """Start a process with `start()` (stdout/stderr piped, text), wait up to `timeout` and capture it.

    A command missing in the image becomes exit status 127 with a clear stderr; a timeout kills the
    process and raises ExecTimeout naming `where`."""
    started = time.perf_counter()
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
