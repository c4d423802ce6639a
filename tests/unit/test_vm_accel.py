"""Accelerator choice from sample /proc/cpuinfo text and module facts."""

from __future__ import annotations

import pytest

from runtime.errors import SpecError
from runtime.vm.accel import HostFacts, choose, cpu_flags, read_host_facts

INTEL_VMX = """processor\t: 0
vendor_id\t: GenuineIntel
model name\t: Intel(R) Xeon(R) Gold 6248 CPU @ 2.50GHz
flags\t\t: fpu vme de pse tsc msr pae mce cx8 apic sep mtrr vmx smx est tm2 ssse3 sse4_1 sse4_2
"""
AMD_SVM = """processor\t: 0
vendor_id\t: AuthenticAMD
flags\t\t: fpu vme de pse tsc msr pae mce cx8 svm extapic cr8_legacy abm sse4a
"""
AMD_GUEST_NO_VIRT = """processor\t: 0
vendor_id\t: AuthenticAMD
model name\t: AMD EPYC
flags\t\t: fpu vme de pse tsc msr pae mce cx8 apic sep hypervisor lahf_lm cmp_legacy
"""


def facts(cpuinfo: str, kvm: bool = True, pvm: bool = False) -> HostFacts:
    return HostFacts(cpu_flags=cpu_flags(cpuinfo), kvm_device=kvm, kvm_pvm=pvm)


def test_flags_parsed():
    assert "vmx" in cpu_flags(INTEL_VMX)
    assert "svm" in cpu_flags(AMD_SVM)
    assert cpu_flags("no flags here") == frozenset()


@pytest.mark.parametrize("cpuinfo, virt", [(INTEL_VMX, "vmx"), (AMD_SVM, "svm")])
def test_auto_picks_kvm_with_hardware_virt(cpuinfo, virt):
    choice = choose("auto", facts(cpuinfo))
    assert choice.accel == "kvm" and choice.libvirt_type == "kvm"
    assert virt in choice.reason


def test_auto_picks_tcg_under_kvm_pvm():
    choice = choose("auto", facts(AMD_GUEST_NO_VIRT, kvm=True, pvm=True))
    assert choice.accel == "tcg" and choice.libvirt_type == "qemu"
    assert "KVM-PVM" in choice.reason


def test_pvm_wins_even_with_vmx():
    choice = choose("auto", facts(INTEL_VMX, pvm=True))
    assert choice.accel == "tcg" and "PVM" in choice.reason


def test_auto_tcg_without_flags_or_device():
    assert "neither vmx nor svm" in choose("auto", facts(AMD_GUEST_NO_VIRT)).reason
    assert "/dev/kvm does not exist" in choose("auto", facts(INTEL_VMX, kvm=False)).reason


def test_forced_choices_say_so():
    forced_tcg = choose("tcg", facts(INTEL_VMX))
    assert forced_tcg.accel == "tcg" and "forced" in forced_tcg.reason
    forced_kvm = choose("kvm", facts(AMD_GUEST_NO_VIRT, pvm=True))
    assert forced_kvm.accel == "kvm" and not forced_kvm.kvm_usable
    assert "expected to fail" in forced_kvm.reason


def test_unknown_accel_rejected():
    with pytest.raises(SpecError, match="unknown accelerator"):
        choose("hvf", facts(INTEL_VMX))


def test_read_host_facts_from_files(tmp_path):
    proc, sys, dev = tmp_path / "proc", tmp_path / "sys", tmp_path / "dev"
    for d in (proc, sys / "module/kvm_pvm", dev):
        d.mkdir(parents=True)
    (proc / "cpuinfo").write_text(AMD_GUEST_NO_VIRT)
    (dev / "kvm").touch()
    found = read_host_facts(proc, sys, dev)
    assert found.kvm_pvm and found.kvm_device and found.hw_virt is None
    assert choose("auto", found).accel == "tcg"
