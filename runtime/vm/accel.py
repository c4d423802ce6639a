"""Which accelerator a VM runs under here (KVM or TCG), and a sentence saying why.

`auto` picks KVM only when the CPU advertises vmx/svm, /dev/kvm exists and the KVM module is not
KVM-PVM (which cannot boot a stock kernel); otherwise TCG. Forcing either is allowed; the reason then
says it was forced and, for a forced KVM that cannot work, what will go wrong.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from runtime.errors import SpecError

ACCELS = ("kvm", "tcg", "auto")


@dataclass(frozen=True)
class HostFacts:
    """What the accelerator choice depends on, read from the host (or given by a test)."""

    cpu_flags: frozenset[str]
    kvm_device: bool
    kvm_pvm: bool

    @property
    def hw_virt(self) -> str | None:
        if "vmx" in self.cpu_flags:
            return "vmx"
        if "svm" in self.cpu_flags:
            return "svm"
        return None

    @property
    def kvm_usable(self) -> bool:
        return self.hw_virt is not None and self.kvm_device and not self.kvm_pvm


@dataclass(frozen=True)
class AccelChoice:
    accel: str  # "kvm" or "tcg"
    reason: str
    requested: str
    kvm_usable: bool

    @property
    def libvirt_type(self) -> str:
        return "kvm" if self.accel == "kvm" else "qemu"


def cpu_flags(cpuinfo: str) -> frozenset[str]:
    """The flags of the first CPU in /proc/cpuinfo text."""
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "flags":
            return frozenset(value.split())
    return frozenset()


def read_host_facts(proc: Path = Path("/proc"), sys: Path = Path("/sys"),
                    dev: Path = Path("/dev")) -> HostFacts:
    try:
        cpuinfo = (proc / "cpuinfo").read_text()
    except OSError:
        cpuinfo = ""
    try:
        modules = (proc / "modules").read_text()
    except OSError:
        modules = ""
    loaded = any(line.startswith("kvm_pvm ") for line in modules.splitlines())
    pvm = (sys / "module/kvm_pvm").exists() or loaded
    return HostFacts(cpu_flags=cpu_flags(cpuinfo), kvm_device=os.path.exists(dev / "kvm"), kvm_pvm=pvm)


def _why_not_kvm(facts: HostFacts) -> str:
    if facts.kvm_pvm:
        return ("/dev/kvm is KVM-PVM (module kvm_pvm), which cannot boot a stock guest kernel"
                + ("" if facts.hw_virt else " and the CPU has no vmx/svm"))
    if facts.hw_virt is None:
        return "the CPU advertises neither vmx nor svm in /proc/cpuinfo"
    return "/dev/kvm does not exist (kvm module not loaded?)"


def choose(requested: str, facts: HostFacts) -> AccelChoice:
    """Resolve kvm|tcg|auto to the accelerator to use and the reason, as one human sentence."""
    if requested not in ACCELS:
        raise SpecError(f"unknown accelerator {requested!r}: choose one of {', '.join(ACCELS)}")
    usable = facts.kvm_usable
    if requested == "auto":
        if usable:
            reason = f"auto: hardware KVM available ({facts.hw_virt}, /dev/kvm)"
            return AccelChoice("kvm", reason, requested, True)
        reason = f"auto: TCG software emulation because {_why_not_kvm(facts)}"
        return AccelChoice("tcg", reason, requested, False)
    if requested == "tcg":
        return AccelChoice("tcg", "forced with --accel tcg (software emulation)", requested, usable)
    if usable:
        return AccelChoice("kvm", f"forced with --accel kvm ({facts.hw_virt}, /dev/kvm)", requested, True)
    return AccelChoice("kvm", f"forced with --accel kvm although {_why_not_kvm(facts)}; the boot is "
                       "expected to fail", requested, False)


def detect(requested: str = "auto") -> AccelChoice:
    return choose(requested, read_host_facts())
