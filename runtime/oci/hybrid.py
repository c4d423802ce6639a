"""crun on a cgroup v1 hybrid host: crun 1.8 refuses the hybrid layout (v1 controllers plus a
controller-less cgroup2 at /sys/fs/cgroup/unified) unless that cgroup2 mount is out of its sight.

Two ways, same effect (crun then drives the v1 hierarchies like runc): a command prefix that runs crun in
a fresh private mount namespace with the cgroup2 mount detached (for the platform; any process, any
thread), and a (host, private) pair of mount-namespace fds a single-threaded process setns()es between
(for the start benchmark, which must spawn crun exactly like runc).
"""

from __future__ import annotations

import os
from pathlib import Path

from runtime.linux import syscalls as sc

UNIFIED = Path("/sys/fs/cgroup/unified")


def hybrid_host() -> bool:
    """True on a cgroup v1 hybrid host (a cgroup2 mount at /sys/fs/cgroup/unified)."""
    return os.path.ismount(UNIFIED)


def private_prefix() -> list[str]:
    """argv prefix: run the command in a private mount namespace without the cgroup2 mount."""
    return ["unshare", "--mount", "--propagation", "private", "--", "sh", "-c",
            f'umount -l {UNIFIED} 2>/dev/null; exec "$@"', "isolab-crun"]


WORKAROUND = (f"crun runs in a private mount namespace with {UNIFIED} (the controller-less cgroup2 of this "
              "v1 hybrid host) unmounted, since crun refuses the hybrid layout; it then uses the v1 "
              "hierarchies like runc")


def crun_mount_namespace() -> tuple[int, int]:
    """(host, private) mount-namespace fds; the private one lacks the controller-less cgroup2 mount, so
    crun uses v1 there. A (single-threaded) process setns()es into it just around each crun run, so
    crun is spawned like runc (vfork, no preexec hook) and the other runtimes see the host as it is."""
    cwd = os.getcwd()
    host = os.open("/proc/self/ns/mnt", os.O_RDONLY | os.O_CLOEXEC)
    sc.unshare(sc.CLONE_NEWNS)
    sc.mount(None, "/", None, sc.MS_REC | sc.MS_PRIVATE)
    if os.path.ismount(UNIFIED):
        sc.umount2(UNIFIED, sc.MNT_DETACH)
    private = os.open("/proc/self/ns/mnt", os.O_RDONLY | os.O_CLOEXEC)
    sc.setns(host, sc.CLONE_NEWNS)
    os.chdir(cwd)  # setns() into a mount namespace moves to its root
    return host, private
