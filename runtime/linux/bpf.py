"""A small eBPF instruction encoder and the bpf(2) calls that load a program and attach it to a cgroup.

No maintained Python library builds eBPF programs without a C compiler and the running kernel's headers
(bcc needs both), and the programs isolab needs are a dozen instructions long. So instructions are
written with the opcode names of the kernel's documented format (linux/bpf.h, linux/bpf_common.h,
Documentation/bpf/standardization/instruction-set.rst): each is `struct bpf_insn` {u8 code;
u8 dst_reg:4, src_reg:4; s16 off; s32 imm}, little-endian on x86_64 and arm64. Jumps name a label;
`Program.assemble()` turns labels into the relative offsets the kernel wants.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import os
import struct
from dataclasses import dataclass, field

_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
_libc.syscall.restype = ctypes.c_long
_SYS_BPF = {"x86_64": 321, "aarch64": 280}.get(os.uname().machine, 321)

# instruction classes (linux/bpf_common.h, linux/bpf.h)
BPF_LDX = 0x01
BPF_ALU = 0x04  # 32-bit arithmetic (writes the low 32 bits, zeroes the upper ones)
BPF_JMP = 0x05
BPF_ALU64 = 0x07
# size and mode of loads
BPF_W = 0x00
BPF_MEM = 0x60
# ALU operations
BPF_AND = 0x50
BPF_RSH = 0x70
BPF_MOV = 0xB0
# jump operations
BPF_JNE = 0x50
BPF_EXIT = 0x90
# operand source: immediate or register
BPF_K = 0x00
BPF_X = 0x08

# bpf(2) commands, program and attach types (linux/bpf.h)
BPF_PROG_LOAD = 5
BPF_PROG_ATTACH = 8
BPF_PROG_QUERY = 16
BPF_PROG_TYPE_CGROUP_DEVICE = 15
BPF_CGROUP_DEVICE = 6
BPF_F_ALLOW_MULTI = 2

R0, R1, R2, R3, R4, R5 = range(6)


@dataclass(frozen=True)
class Insn:
    """One instruction; `target` is a label for jumps (resolved by Program.assemble)."""

    code: int
    dst: int = 0
    src: int = 0
    off: int = 0
    imm: int = 0
    target: str | None = None

    def encode(self, off: int | None = None) -> bytes:
        return struct.pack("<BBhi", self.code, (self.src << 4) | self.dst,
                           self.off if off is None else off, self.imm)


# constructors named after the instructions they make (the kernel's BPF_* macros in filter.h)
def ldx_mem_w(dst: int, src: int, off: int) -> Insn:
    """dst = *(u32 *)(src + off)"""
    return Insn(BPF_LDX | BPF_MEM | BPF_W, dst, src, off)


def alu32_imm(op: int, dst: int, imm: int) -> Insn:
    """(u32) dst op= imm"""
    return Insn(BPF_ALU | op | BPF_K, dst, imm=imm)


def mov32_reg(dst: int, src: int) -> Insn:
    """(u32) dst = src"""
    return Insn(BPF_ALU | BPF_MOV | BPF_X, dst, src)


def mov64_imm(dst: int, imm: int) -> Insn:
    return Insn(BPF_ALU64 | BPF_MOV | BPF_K, dst, imm=imm)


def jne_imm(dst: int, imm: int, target: str) -> Insn:
    """if dst != imm goto target"""
    return Insn(BPF_JMP | BPF_JNE | BPF_K, dst, imm=imm, target=target)


def jne_reg(dst: int, src: int, target: str) -> Insn:
    """if dst != src goto target"""
    return Insn(BPF_JMP | BPF_JNE | BPF_X, dst, src, target=target)


def exit_insn() -> Insn:
    return Insn(BPF_JMP | BPF_EXIT)


@dataclass
class Program:
    """Instructions with labels. `label(name)` marks the position of the next instruction."""

    insns: list[Insn] = field(default_factory=list)
    labels: dict[str, int] = field(default_factory=dict)

    def emit(self, *insns: Insn) -> None:
        self.insns.extend(insns)

    def label(self, name: str) -> None:
        if name in self.labels:
            raise ValueError(f"bpf: label {name!r} defined twice")
        self.labels[name] = len(self.insns)

    def assemble(self) -> bytes:
        out = []
        for index, insn in enumerate(self.insns):
            off = None
            if insn.target is not None:
                if insn.target not in self.labels:
                    raise ValueError(f"bpf: jump to undefined label {insn.target!r}")
                off = self.labels[insn.target] - (index + 1)
                if not 0 <= off < 2**15:
                    raise ValueError(f"bpf: jump to {insn.target!r} out of range ({off})")
            out.append(insn.encode(off))
        return b"".join(out)


def _bpf(cmd: int, attr: ctypes.Array[ctypes.c_char], what: str) -> int:
    result = _libc.syscall(_SYS_BPF, ctypes.c_int(cmd), attr, ctypes.c_uint(len(attr)))
    if result < 0:
        err = ctypes.get_errno()
        raise OSError(err, f"bpf({what}): {os.strerror(err)}")
    return int(result)


def prog_load(prog_type: int, code: bytes, license: str = "GPL", name: str = "") -> int:
    """BPF_PROG_LOAD -> program fd (close-on-exec). A rejected program is loaded once more with the
    verifier's log on, and the error carries that log."""
    insns = ctypes.create_string_buffer(code, len(code))
    lic = ctypes.create_string_buffer(license.encode())

    def load(log: ctypes.Array[ctypes.c_char] | None) -> int:
        attr = ctypes.create_string_buffer(128)  # union bpf_attr, the BPF_PROG_LOAD member (zero-padded)
        struct.pack_into("<IIQQIIQ", attr, 0, prog_type, len(code) // 8, ctypes.addressof(insns),
                         ctypes.addressof(lic), 1 if log else 0, len(log) if log else 0,
                         ctypes.addressof(log) if log else 0)
        attr[48:48 + len(name[:15])] = name[:15].encode()  # prog_name[16]
        return _bpf(BPF_PROG_LOAD, attr, "BPF_PROG_LOAD")

    try:
        return load(None)  # the verifier's log costs time: only asked for to explain a rejection
    except OSError as exc:
        if exc.errno not in (errno.EINVAL, errno.EACCES):
            raise
        log = ctypes.create_string_buffer(65536)
        try:
            os.close(load(log))
        except OSError:
            verifier = log.value.decode(errors="replace").strip()
            raise OSError(exc.errno, f"{exc.strerror}; verifier log: {verifier[-800:]}") from exc
        raise


def prog_attach(target_fd: int, prog_fd: int, attach_type: int, flags: int = 0) -> None:
    """BPF_PROG_ATTACH `prog_fd` to the cgroup directory `target_fd`."""
    attr = ctypes.create_string_buffer(struct.pack("<IIII", target_fd, prog_fd, attach_type, flags), 32)
    _bpf(BPF_PROG_ATTACH, attr, "BPF_PROG_ATTACH")


def prog_query_count(target_fd: int, attach_type: int) -> int:
    """How many programs of `attach_type` are attached to the cgroup directory `target_fd` itself."""
    attr = ctypes.create_string_buffer(40)
    struct.pack_into("<IIII", attr, 0, target_fd, attach_type, 0, 0)
    _bpf(BPF_PROG_QUERY, attr, "BPF_PROG_QUERY")
    return int(struct.unpack_from("<I", attr, 24)[0])  # prog_cnt
