"""The BPF device filter as data: instruction encodings against the kernel's documented format, and the
program's decisions, run through a tiny interpreter of the opcodes it uses (no kernel needed).
The kernel itself loads and enforces the program in tests/integration/test_device_policy.py."""

from __future__ import annotations

import struct

import pytest

from runtime.container.cgroups import devices as dv
from runtime.linux import bpf


def test_encodings_match_the_kernel_format():
    # well-known encodings (struct bpf_insn, little-endian): r0 = 1; exit; r2 = *(u32 *)(r1 + 4)
    assert bpf.mov64_imm(bpf.R0, 1).encode() == bytes.fromhex("b700000001000000")
    assert bpf.exit_insn().encode() == bytes.fromhex("9500000000000000")
    assert bpf.ldx_mem_w(bpf.R2, bpf.R1, 4).encode() == bytes.fromhex("6112040000000000")
    assert bpf.alu32_imm(bpf.BPF_RSH, bpf.R3, 16).encode() == bytes.fromhex("7403000010000000")
    assert bpf.mov32_reg(bpf.R1, bpf.R3).encode() == bytes.fromhex("bc31000000000000")


def test_labels_become_relative_offsets():
    p = bpf.Program()
    p.emit(bpf.jne_imm(bpf.R2, 7, "out"), bpf.mov64_imm(bpf.R0, 1), bpf.exit_insn())
    p.label("out")
    p.emit(bpf.mov64_imm(bpf.R0, 0), bpf.exit_insn())
    code = p.assemble()
    assert code[:8] == bytes.fromhex("5502020007000000")  # if r2 != 7 goto +2
    bad = bpf.Program()
    bad.emit(bpf.jne_imm(bpf.R2, 7, "nowhere"))
    with pytest.raises(ValueError, match="undefined label 'nowhere'"):
        bad.assemble()


def run(code: bytes, kind: str, major: int, minor: int, access: str) -> int:
    """Interpret the filter for one device access (only the opcodes the filter uses)."""
    ctx = {0: dv._TYPE[kind] | sum(dv._ACCESS[a] for a in access) << 16, 4: major, 8: minor}
    regs = [0] * 11
    pc = 0
    while True:
        op, regbyte, off, imm = struct.unpack_from("<BBhi", code, pc * 8)
        dst, src = regbyte & 0xF, regbyte >> 4
        pc += 1
        if op == bpf.BPF_LDX | bpf.BPF_MEM | bpf.BPF_W:
            regs[dst] = ctx[off]
        elif op == bpf.BPF_ALU | bpf.BPF_AND | bpf.BPF_K:
            regs[dst] &= imm
        elif op == bpf.BPF_ALU | bpf.BPF_RSH | bpf.BPF_K:
            regs[dst] = (regs[dst] & 0xFFFFFFFF) >> imm
        elif op == bpf.BPF_ALU | bpf.BPF_MOV | bpf.BPF_X:
            regs[dst] = regs[src] & 0xFFFFFFFF
        elif op == bpf.BPF_ALU64 | bpf.BPF_MOV | bpf.BPF_K:
            regs[dst] = imm
        elif op == bpf.BPF_JMP | bpf.BPF_JNE | bpf.BPF_K:
            pc += off if regs[dst] != imm else 0
        elif op == bpf.BPF_JMP | bpf.BPF_JNE | bpf.BPF_X:
            pc += off if regs[dst] != regs[src] else 0
        elif op == bpf.BPF_JMP | bpf.BPF_EXIT:
            return regs[0]
        else:
            raise AssertionError(f"unexpected opcode {op:#x}")


@pytest.mark.parametrize(("kind", "major", "minor", "access", "allowed"), [
    ("c", 1, 3, "rw", 1), ("c", 1, 5, "r", 1), ("c", 1, 9, "r", 1), ("c", 5, 0, "rw", 1),
    ("c", 136, 7, "rw", 1), ("c", 5, 2, "rwm", 1), ("c", 10, 200, "rw", 1), ("c", 1, 3, "m", 1),
    ("b", 254, 0, "r", 0), ("b", 8, 0, "m", 0), ("b", 1, 3, "r", 0),  # a block device with null's numbers
    ("c", 1, 1, "r", 0),  # /dev/mem
    ("c", 4, 1, "rw", 0), ("c", 10, 232, "rw", 0),  # a console tty, /dev/kvm
])
def test_default_policy_decisions(kind, major, minor, access, allowed):
    code = dv.filter_program().assemble()
    assert run(code, kind, major, minor, access) == allowed


def test_partial_access_rule_checks_the_requested_access():
    code = dv.filter_program((dv.DeviceRule("c", 1, 3, "r"),)).assemble()
    assert run(code, "c", 1, 3, "r") == 1
    assert run(code, "c", 1, 3, "rw") == 0
    assert run(code, "c", 1, 3, "m") == 0


def test_v1_lines_are_the_same_list():
    assert [r.v1_line() for r in dv.DEFAULT_RULES] == [
        "c 1:3 rwm", "c 1:5 rwm", "c 1:7 rwm", "c 1:8 rwm", "c 1:9 rwm", "c 5:0 rwm", "c 5:2 rwm",
        "c 136:* rwm", "c 10:200 rwm"]
