"""Bad input and broken guests: one clear error each, and nothing left behind (domains, dirs, taps)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from runtime.errors import ImageError, InstanceError, PlatformUnavailable, SpecError
from runtime.spec import InstanceSpec

pytestmark = [pytest.mark.vm, pytest.mark.root, pytest.mark.image]


def _other_runs(path: Path) -> bool:
    """A VM dir that another live process owns (another test session or run beside this one; not a
    driver process this test started)."""
    from runtime import state

    pid = state.owner_pid(path)
    if pid is None or pid == os.getpid():
        return False
    try:
        parent = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, ValueError, IndexError):
        parent = None
    return parent != os.getpid() and state.is_live(path)


def isolab_domains() -> list[str]:
    from runtime.vm.instance import VM_STATE_ROOT

    out = subprocess.run(["virsh", "-c", "qemu:///system", "list", "--all", "--name"], capture_output=True,
                         text=True, timeout=30).stdout.split()
    return [n for n in out if n.startswith("isolab-vm-")
            and not _other_runs(VM_STATE_ROOT / n.removeprefix("isolab-"))]


def vm_dirs() -> list[Path]:
    from runtime.vm.instance import VM_STATE_ROOT

    return sorted(p for p in VM_STATE_ROOT.glob("vm-*") if not _other_runs(p)) if VM_STATE_ROOT.is_dir() else []


@pytest.fixture(scope="module")
def vm_module(require_root, image):
    for tool in ("qemu-system-x86_64", "qemu-img", "virsh"):
        if shutil.which(tool) is None:
            pytest.skip(f"VM tests need {tool} (not installed)")
    from runtime.vm import platform

    platform.VmPlatform(image).check_available()
    return platform


@pytest.fixture
def clean(vm_module):
    yield
    assert isolab_domains() == []
    assert vm_dirs() == []


def test_missing_image(vm_module, image, tmp_path, clean):
    from runtime.image.store import Image

    broken = Image(digest="0" * 16, path=tmp_path / "nowhere", manifest={})
    with pytest.raises(ImageError, match="missing"):
        vm_module.VmPlatform(broken).create(InstanceSpec())


def test_memory_zero_and_too_small(vm_module, image, clean):
    with pytest.raises(SpecError, match="memory"):
        InstanceSpec(memory=0)
    with pytest.raises(SpecError, match="below"):
        vm_module.VmPlatform(image).create(InstanceSpec(memory=32 * 1024**2))


def test_libvirtd_unreachable(vm_module, image, clean):
    bad = vm_module.VmPlatform(image, uri="qemu:///system?socket=/nonexistent/libvirt-sock")
    with pytest.raises(PlatformUnavailable, match="cannot connect to libvirtd"):
        bad.check_available()
    with pytest.raises(PlatformUnavailable, match="cannot connect to libvirtd"):
        bad.create(InstanceSpec(memory=256 * 1024**2))
    assert "libvirt_error" in bad.environment()
    assert any("domains not checked" in r for r in bad.cleanup_leftovers())


def test_hung_guest_times_out_and_keeps_serial_log(vm_module, image, clean):
    from runtime.vm.bootwatch import BootFailed

    platform = vm_module.VmPlatform(image, boot_timeout=1.0)
    started = time.monotonic()
    with pytest.raises(BootFailed, match="boot timeout") as info:
        platform.create(InstanceSpec(cpus=1, memory=256 * 1024**2))
    assert time.monotonic() - started < 60
    kept = Path(str(info.value).rsplit("serial log kept at ", 1)[1].rstrip(")"))
    assert kept.is_file()
    kept.unlink()


def test_forced_kvm_fails_clearly_here(vm_module, image, clean):
    from runtime.vm.accel import detect

    if detect("auto").accel == "kvm":
        pytest.skip("hardware KVM works on this host; the forced-KVM failure cannot be shown")
    platform = vm_module.VmPlatform(image, accel="kvm", boot_timeout=30)
    started = time.monotonic()
    with pytest.raises(InstanceError, match="KVM") as info:
        platform.create(InstanceSpec(cpus=1, memory=256 * 1024**2))
    assert time.monotonic() - started < 60
    print("forced KVM error:", info.value)
    for log in Path("/var/log/isolab/vm").glob("*-serial.log") if Path("/var/log/isolab/vm").is_dir() else []:
        log.unlink()


CHILD = """
import sys
from runtime.image.build import ensure_image
from runtime.spec import InstanceSpec
from runtime.vm.platform import VmPlatform
VmPlatform(ensure_image()).create(InstanceSpec(cpus=1, memory=256 * 1024**2, network="bridge"))
"""


def _child_booting_a_vm(**popen: object) -> subprocess.Popen:
    """A driver process that has defined its domain and is booting the guest.

    Waits for a domain that was not there before the child started: another run's domain caught between its
    state dir and its definition (or its undefinition) must not pass for the child's, which would signal a
    child still starting Python (killed silently by the default SIGINT action, seen beside a concurrent run)."""
    before = set(isolab_domains())
    child = subprocess.Popen([sys.executable, "-c", CHILD], cwd=Path(__file__).resolve().parents[2], **popen)
    deadline = time.monotonic() + 60

    def defined() -> bool:
        return bool(set(isolab_domains()) - before)

    while not defined() and time.monotonic() < deadline:
        time.sleep(0.1)
    if not defined():
        child.kill()
        child.wait(timeout=30)
        raise AssertionError("the child never defined its domain")
    time.sleep(0.5)
    return child


def test_sigkill_mid_boot_then_cleanup(vm_module, image):
    child = _child_booting_a_vm()
    os.kill(child.pid, signal.SIGKILL)
    child.wait(timeout=30)
    assert isolab_domains() and vm_dirs()  # what a killed run leaves
    removed = vm_module.VmPlatform(image).cleanup_leftovers()
    assert any(r.startswith("domain isolab-vm-") for r in removed)
    assert isolab_domains() == [] and vm_dirs() == []
    tokens = [r.removeprefix("domain isolab-vm-") for r in removed if r.startswith("domain isolab-vm-")]
    assert not [t for t in tokens if Path(f"/sys/class/net/isl{t}").exists()]


def test_ctrl_c_mid_boot_leaves_nothing(vm_module, image):
    """SIGINT (Ctrl-C) while the guest boots: the driver itself removes domain, overlay and tap."""
    child = _child_booting_a_vm(stderr=subprocess.PIPE, text=True)
    try:
        child.send_signal(signal.SIGINT)
        _, stderr = child.communicate(timeout=60)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    assert "KeyboardInterrupt" in stderr
    assert isolab_domains() == [] and vm_dirs() == []
