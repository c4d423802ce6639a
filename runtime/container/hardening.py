"""Hardening like a real runtime: Docker's default capability set, no_new_privs, a seccomp filter
(Docker's default profile, compiled by runtime.container.seccomp), masked /proc paths, read-only
/proc/sys and friends.
"""

from __future__ import annotations

import glob
import os

from runtime.linux import syscalls as sc

# Docker's default capabilities (moby oci/caps/defaults.go), by number (linux/capability.h).
DEFAULT_CAPS = {
    "CAP_CHOWN": 0, "CAP_DAC_OVERRIDE": 1, "CAP_FOWNER": 3, "CAP_FSETID": 4, "CAP_KILL": 5,
    "CAP_SETGID": 6, "CAP_SETUID": 7, "CAP_SETPCAP": 8, "CAP_NET_BIND_SERVICE": 10, "CAP_NET_RAW": 13,
    "CAP_SYS_CHROOT": 18, "CAP_MKNOD": 27, "CAP_AUDIT_WRITE": 29, "CAP_SETFCAP": 31,
}
DEFAULT_CAP_MASK = sum(1 << n for n in DEFAULT_CAPS.values())
DEFAULT_CAP_NAMES = frozenset(DEFAULT_CAPS)

# Docker's masked paths (moby daemon/pkg/oci/defaults.go, docker-v29.7.2): /proc/interrupts and the CPUs'
# thermal_throttle directories since advisory GHSA-6fw5-f8r9-fgfm.
MASKED_PATHS = ("/proc/asound", "/proc/acpi", "/proc/interrupts", "/proc/kcore", "/proc/keys",
                "/proc/latency_stats", "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug",
                "/proc/scsi", "/sys/firmware", "/sys/devices/virtual/powercap",
                *sorted(glob.glob("/sys/devices/system/cpu/cpu[0-9]*/thermal_throttle")))
READONLY_PATHS = ("/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger")


def _last_cap() -> int:
    try:
        with open("/proc/sys/kernel/cap_last_cap") as f:
            return int(f.read())
    except OSError:
        return 40


LAST_CAP = _last_cap()


def mask_proc(root: str) -> None:
    """Hide sensitive /proc and /sys paths (bind /dev/null or an empty read-only tmpfs over them)
    and make the kernel-tunable ones read-only. `root` is the container root before pivot_root."""
    for path in MASKED_PATHS:
        target = root + path
        if os.path.isdir(target):
            sc.mount("tmpfs", target, "tmpfs", sc.MS_RDONLY, "size=0")
        elif os.path.exists(target):
            sc.mount(f"{root}/dev/null", target, None, sc.MS_BIND)
    for path in READONLY_PATHS:
        target = root + path
        if os.path.exists(target):
            sc.mount(target, target, None, sc.MS_BIND | sc.MS_REC)
            sc.mount(None, target, None, sc.MS_REMOUNT | sc.MS_BIND | sc.MS_RDONLY | sc.MS_NOSUID
                     | sc.MS_NODEV | sc.MS_NOEXEC)


def drop_capabilities(keep: int = DEFAULT_CAP_MASK) -> None:
    """Reduce the bounding set to `keep`, clear ambient caps, and set effective/permitted/inheritable."""
    for cap in range(LAST_CAP + 1):
        if not keep & (1 << cap):
            sc.prctl(sc.PR_CAPBSET_DROP, cap)
    sc.prctl(sc.PR_CAP_AMBIENT, sc.PR_CAP_AMBIENT_CLEAR_ALL)
    sc.capset(keep, keep, 0)


def no_new_privs() -> None:
    sc.prctl(sc.PR_SET_NO_NEW_PRIVS, 1)


def harden_process(seccomp_bpf: bytes | None = None) -> None:
    """The last steps before exec: capabilities, no_new_privs, then the seccomp filter (if any)."""
    drop_capabilities()
    no_new_privs()
    if seccomp_bpf is not None:
        sc.seccomp_set_filter(seccomp_bpf)
