"""The container's pid 1: isolab-init, a small static C program (isolab-init.c beside this file) that
reaps zombies, forwards signals, exits with the workload's status, pauses when there is no workload,
and makes itself non-dumpable.

It is built on the host with `gcc -static` on first use (gcc and libc6-dev come from host setup) and
cached under <cache>/init/<hash of source and flags>/; ISOLAB_CONTAINER_INIT names a prebuilt binary
instead (for a machine without a compiler, e.g. a test guest given the host's build). Each runtime
process copies it once into a sealed memfd; the container's first process fexecve()s that fd after
pivot_root, capability drop and seccomp, with the container's environment only. So pid 1 is no fork
of the runtime's Python process (none of its memory, environment or fds survive the exec), and the
file it runs is not a host file the container could reach (like runc's cloned binary).
"""

from __future__ import annotations

import fcntl
import functools
import hashlib
import os
import shutil
import subprocess
from importlib import resources
from pathlib import Path

from runtime.errors import PlatformUnavailable
from runtime.naming import CACHE_ROOT

SOURCE = "isolab-init.c"
CFLAGS = ("-static", "-Os", "-Wall", "-Wextra", "-Werror", "-s")


def source_bytes() -> bytes:
    return resources.files("runtime.container").joinpath(SOURCE).read_bytes()


def binary_path(cache: Path = CACHE_ROOT) -> Path:
    digest = hashlib.sha256(source_bytes() + " ".join(CFLAGS).encode()).hexdigest()[:16]
    return cache / "init" / digest / "isolab-init"


def build(cache: Path = CACHE_ROOT) -> Path:
    """The compiled init, built now if this source was never built on this host."""
    if prebuilt := os.environ.get("ISOLAB_CONTAINER_INIT"):
        if not os.path.isfile(prebuilt):
            raise PlatformUnavailable(f"container: ISOLAB_CONTAINER_INIT={prebuilt} is not a file")
        return Path(prebuilt)
    path = binary_path(cache)
    if path.is_file():
        return path
    compiler = shutil.which("gcc") or shutil.which("cc")
    if compiler is None:
        raise PlatformUnavailable("container: no C compiler to build the container init "
                                  "(install gcc and libc6-dev; `nox -s setup` does)")
    path.parent.mkdir(parents=True, exist_ok=True)
    source = path.parent / SOURCE
    source.write_bytes(source_bytes())
    tmp = path.with_name(f".isolab-init.{os.getpid()}")
    proc = subprocess.run([compiler, *CFLAGS, "-o", str(tmp), str(source)], capture_output=True, text=True)
    if proc.returncode != 0:
        tmp.unlink(missing_ok=True)
        last = " | ".join(proc.stderr.strip().splitlines()[-3:])
        raise PlatformUnavailable(f"container: building the init ({compiler} -static {source}) failed: {last} "
                                  "(a static build needs libc6-dev)")
    os.chmod(tmp, 0o500)
    os.replace(tmp, path)  # atomic: concurrent builders produce the same file
    return path


@functools.cache
def memfd() -> int:
    """A sealed, close-on-exec memfd holding the init binary (made once per process)."""
    data = build().read_bytes()
    fd = os.memfd_create("isolab-init", os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]
    fcntl.fcntl(fd, fcntl.F_ADD_SEALS,
                fcntl.F_SEAL_SEAL | fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_GROW | fcntl.F_SEAL_WRITE)
    return fd


def exec_init(fd: int, ready_fd: int, argv: list[str] | None, env: dict[str, str]) -> None:
    """In the container's first process: become isolab-init (does not return on success)."""
    os.set_inheritable(ready_fd, True)
    os.execve(fd, ["isolab-init", str(ready_fd), *(argv or [])], env)


def set_oom_score_adj(value: int) -> bool:
    """Lowering needs CAP_SYS_RESOURCE; raising never does. False if the kernel refused."""
    try:
        with open("/proc/self/oom_score_adj", "w") as f:
            f.write(str(value))
    except PermissionError:
        return False
    return True
