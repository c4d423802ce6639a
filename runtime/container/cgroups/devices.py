"""The container's device policy, one list for both cgroup versions: v1 `devices.allow` lines, and on v2
a BPF_PROG_TYPE_CGROUP_DEVICE program attached to the container's cgroup (as runc and crun do).

The allowed devices are Docker's defaults (runc libcontainer/specconv AllowedDevices, which Docker
inherits): null, zero, full, random, urandom, tty, ptmx (5:2), the pts slaves (136:*) and tun (10:200),
read/write/mknod. Everything else is denied: open for read or write, and mknod. One deliberate step
past Docker: Docker also allows mknod (not open) of *any* device (`c *:* m`, `b *:* m`); we do not,
because a node made in the writable layer sits in a host directory, where a host process opening it
is not subject to the container's filter.

The v2 program is runc's/crun's shape: load type, access and major/minor from `struct
bpf_cgroup_dev_ctx`, one block per rule that returns 1 (allow) on a match, and return 0 (deny) at the end.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from pathlib import Path

from runtime.linux import bpf
from runtime.linux.bpf import R0, R1, R2, R3, R4, R5

# linux/bpf.h: struct bpf_cgroup_dev_ctx {u32 access_type (type | access << 16); u32 major; u32 minor;}
BPF_DEVCG_ACC_MKNOD = 1
BPF_DEVCG_ACC_READ = 2
BPF_DEVCG_ACC_WRITE = 4
BPF_DEVCG_DEV_BLOCK = 1
BPF_DEVCG_DEV_CHAR = 2
_ACCESS = {"m": BPF_DEVCG_ACC_MKNOD, "r": BPF_DEVCG_ACC_READ, "w": BPF_DEVCG_ACC_WRITE}
_TYPE = {"b": BPF_DEVCG_DEV_BLOCK, "c": BPF_DEVCG_DEV_CHAR}


@dataclass(frozen=True)
class DeviceRule:
    """An allow rule: kind 'c' or 'b', major/minor (None = any), access from 'rwm'."""

    kind: str
    major: int | None
    minor: int | None
    access: str = "rwm"

    def v1_line(self) -> str:
        """The cgroup v1 devices.allow syntax, e.g. 'c 136:* rwm'."""
        star = lambda n: "*" if n is None else str(n)  # noqa: E731
        return f"{self.kind} {star(self.major)}:{star(self.minor)} {self.access}"


DEFAULT_RULES = (
    DeviceRule("c", 1, 3),  # /dev/null
    DeviceRule("c", 1, 5),  # /dev/zero
    DeviceRule("c", 1, 7),  # /dev/full
    DeviceRule("c", 1, 8),  # /dev/random
    DeviceRule("c", 1, 9),  # /dev/urandom
    DeviceRule("c", 5, 0),  # /dev/tty
    DeviceRule("c", 5, 2),  # /dev/ptmx
    DeviceRule("c", 136, None),  # /dev/pts/*
    DeviceRule("c", 10, 200),  # /dev/net/tun (Docker's list has it since its first days)
)


def filter_program(rules: tuple[DeviceRule, ...] = DEFAULT_RULES) -> bpf.Program:
    """The BPF_PROG_TYPE_CGROUP_DEVICE program: 1 (allow) when a rule matches, else 0 (deny)."""
    p = bpf.Program()
    p.emit(bpf.ldx_mem_w(R2, R1, 0), bpf.alu32_imm(bpf.BPF_AND, R2, 0xFFFF),  # r2 = device type
           bpf.ldx_mem_w(R3, R1, 0), bpf.alu32_imm(bpf.BPF_RSH, R3, 16),  # r3 = requested access
           bpf.ldx_mem_w(R4, R1, 4),  # r4 = major
           bpf.ldx_mem_w(R5, R1, 8))  # r5 = minor
    for index, rule in enumerate(rules):
        p.label(f"rule{index}")
        following = f"rule{index + 1}"
        p.emit(bpf.jne_imm(R2, _TYPE[rule.kind], following))
        allowed = sum(_ACCESS[a] for a in set(rule.access))
        if allowed != BPF_DEVCG_ACC_MKNOD | BPF_DEVCG_ACC_READ | BPF_DEVCG_ACC_WRITE:
            # the requested access must be a subset of the allowed one: (r3 & allowed) == r3
            p.emit(bpf.mov32_reg(R1, R3), bpf.alu32_imm(bpf.BPF_AND, R1, allowed), bpf.jne_reg(R1, R3, following))
        if rule.major is not None:
            p.emit(bpf.jne_imm(R4, rule.major, following))
        if rule.minor is not None:
            p.emit(bpf.jne_imm(R5, rule.minor, following))
        p.emit(bpf.mov64_imm(R0, 1), bpf.exit_insn())
    p.label(f"rule{len(rules)}")
    p.emit(bpf.mov64_imm(R0, 0), bpf.exit_insn())
    return p


_loaded: dict[tuple[DeviceRule, ...], tuple[int, int]] = {}  # rules -> (pid that loaded it, program fd)
_loading = threading.Lock()


def _program_fd(rules: tuple[DeviceRule, ...]) -> int:
    """The filter for `rules`, loaded once per process and kept (one fd, close-on-exec): loading runs the
    verifier and the JIT (~0.2-0.6 ms here), attaching a loaded program ~15 us. A forked child loads its own
    (it may have closed the inherited fd)."""
    with _loading:
        pid, fd = _loaded.get(rules, (0, -1))
        if pid != os.getpid():
            code = filter_program(rules).assemble()
            fd = bpf.prog_load(bpf.BPF_PROG_TYPE_CGROUP_DEVICE, code, license="GPL", name="isolab_devices")
            _loaded[rules] = (os.getpid(), fd)
        return fd


def attach_device_filter(cgroup_dir: Path, rules: tuple[DeviceRule, ...] = DEFAULT_RULES) -> None:
    """Attach the filter to a cgroup v2 directory. It stays attached for the cgroup's life (the kernel
    holds it; rmdir releases it). BPF_F_ALLOW_MULTI: a filter of a parent cgroup (systemd's, say) keeps
    applying too; a device must pass all of them."""
    prog_fd = _program_fd(rules)
    dir_fd = os.open(cgroup_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        bpf.prog_attach(dir_fd, prog_fd, bpf.BPF_CGROUP_DEVICE, bpf.BPF_F_ALLOW_MULTI)
    finally:
        os.close(dir_fd)
