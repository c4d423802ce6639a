"""The seccomp profile data (Docker's default, restated) and its compilation by libseccomp."""

from __future__ import annotations

import pytest

from runtime.container import seccomp
from runtime.container.hardening import DEFAULT_CAP_NAMES
from runtime.errors import PlatformUnavailable, SpecError


def test_profile_data_is_consistent():
    data = seccomp.load_profile_data()
    allowed = data["allow"]["syscalls"]
    assert len(allowed) == len(set(allowed))
    for blocked in ("keyctl", "add_key", "request_key", "bpf", "perf_event_open", "userfaultfd", "kexec_load",
                    "reboot", "unshare", "mount", "open_by_handle_at", "init_module", "ptrace", "socket"):
        assert blocked not in allowed, blocked  # only conditional rules may allow these
    for rule in data["rule"]:
        assert rule["syscalls"]
        assert set(rule) <= {"syscalls", "action", "errno", "args", "if_caps", "unless_caps", "if_arches",
                             "unless_arches", "if_kernel_at_least"}
    assert "moby" in data["profile"]["source"]


def test_rule_conditions():
    caps = frozenset(DEFAULT_CAP_NAMES)
    assert seccomp.rule_applies({"if_caps": ["CAP_SYS_CHROOT"]}, caps, "x86_64", (6, 1))
    assert not seccomp.rule_applies({"if_caps": ["CAP_SYS_ADMIN"]}, caps, "x86_64", (6, 1))
    assert seccomp.rule_applies({"unless_caps": ["CAP_SYS_ADMIN"], "unless_arches": ["s390x"]}, caps,
                                "x86_64", (6, 1))
    assert not seccomp.rule_applies({"if_arches": ["s390x"]}, caps, "x86_64", (6, 1))
    assert not seccomp.rule_applies({"if_kernel_at_least": "4.8"}, caps, "x86_64", (4, 4))
    assert seccomp.rule_applies({"if_kernel_at_least": "4.8"}, caps, "x86_64", (6, 18))
    assert seccomp.kernel_version("6.18.0-isolab") == (6, 18)


def test_compiles_once_to_a_bpf_program():
    try:
        program = seccomp.program("default", DEFAULT_CAP_NAMES)
    except PlatformUnavailable as exc:
        pytest.skip(str(exc))
    assert program is not None
    assert len(program.bpf) % 8 == 0 and len(program.bpf) > 8 * 100
    assert seccomp.program("default", DEFAULT_CAP_NAMES) is program  # cached per process
    assert seccomp.program("unconfined", DEFAULT_CAP_NAMES) is None
    assert seccomp.describe("unconfined", DEFAULT_CAP_NAMES) == "unconfined"
    assert "keyctl" not in program.unknown_syscalls
    with pytest.raises(SpecError):
        seccomp.program("bogus", DEFAULT_CAP_NAMES)
