"""InstanceSpec(volume=True) for real on every platform: a data volume at /mnt past the copy-on-write root.

native and container: the file written to /mnt lands in the per-instance host directory (not in /tmp nor
the writable layer, so disk_usage_bytes() does not count it) and the directory is gone after destroy (and
after `cleanup` of a SIGKILLed runtime). vm (one boot): /mnt is the raw disk /dev/vdb, its writes land in
volume.raw and not in the qcow2 overlay, and the state dir and domain are gone after destroy.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from runtime.container.platform import ContainerPlatform
from runtime.naming import SCRATCH_ROOT, STATE_ROOT
from runtime.native import NativePlatform
from runtime.spec import VOLUME_DIR, InstanceSpec

REPO = Path(__file__).resolve().parents[2]
PAYLOAD = "written inside\n"


def _write_probe(instance) -> None:
    result = instance.exec(["sh", "-c", f"printf '{PAYLOAD.strip()}\\n' > {VOLUME_DIR}/probe && sync"])
    assert result.ok, result.stderr


def test_native_volume(image):
    with NativePlatform(image).create(InstanceSpec(volume=True)) as instance:
        volume = instance.volume
        assert volume is not None and volume.is_dir() and volume.parent == SCRATCH_ROOT / instance.instance_id
        _write_probe(instance)
        assert (volume / "probe").read_text() == PAYLOAD
        assert instance.disk_usage_bytes() == 0  # /tmp only: the volume is not the instance's own disk
        assert instance.exec(["cat", f"{VOLUME_DIR}/probe"]).stdout == PAYLOAD
        assert not instance.exec(["touch", "/etc/isolab-probe"]).ok  # the root stays read-only
    assert not volume.exists() and not (SCRATCH_ROOT / instance.instance_id).exists()
    assert not (STATE_ROOT / instance.instance_id).exists()


def test_native_without_volume_has_none(image):
    with NativePlatform(image).create(InstanceSpec()) as instance:
        assert instance.volume is None
        assert not instance.exec(["touch", f"{VOLUME_DIR}/probe"]).ok  # /mnt of the read-only image


@pytest.mark.parametrize("userns", [False, True], ids=["plain", "userns"])
def test_container_volume(image, require_root, userns):
    with ContainerPlatform(image).create(InstanceSpec(volume=True, userns=userns)) as instance:
        container = instance.container
        volume = container.volume
        assert volume == SCRATCH_ROOT / instance.instance_id / "volume" and volume.is_dir()
        _write_probe(instance)
        assert (volume / "probe").read_text() == PAYLOAD
        assert not list(container.upper.rglob("probe"))  # past the overlay: not in the writable layer
        assert instance.disk_usage_bytes() < 64 * 1024
        instance.exec(["sh", "-c", "echo layer > /tmp/in-layer"])
        assert list(container.upper.rglob("in-layer"))
        mounts = instance.exec(["cat", "/proc/mounts"]).stdout
        assert f" {VOLUME_DIR} " in mounts
    assert not volume.exists() and not (SCRATCH_ROOT / instance.instance_id).exists()
    assert not (STATE_ROOT / instance.instance_id).exists()


def test_container_without_volume_makes_no_dir(image, require_root):
    with ContainerPlatform(image).create(InstanceSpec()) as instance:
        assert instance.container.volume is None
        assert sorted(p.name for p in instance.container.layer_dir.iterdir()) == ["upper", "work"]


def test_container_cli_volume(image, require_root):
    proc = subprocess.run([sys.executable, "-m", "runtime", "run", "--rm", "--volume", "--", "sh", "-c",
                           f"grep ' {VOLUME_DIR} ' /proc/mounts && echo x > {VOLUME_DIR}/f && cat {VOLUME_DIR}/f"],
                          capture_output=True, text=True, timeout=60, cwd=REPO)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.endswith("x\n")


KILLED_WITH_VOLUME = textwrap.dedent("""
    import time
    from runtime.container.container import Container
    from runtime.image.build import ensure_image
    from runtime.spec import InstanceSpec
    c = Container(InstanceSpec(volume=True), [ensure_image().rootfs])
    c.create()
    c.start()
    (c.volume / "left").write_text("data")
    print("started", c.instance_id, flush=True)
    time.sleep(60)
""")


def test_container_volume_removed_by_cleanup_after_sigkill(image, require_root):
    proc = subprocess.Popen([sys.executable, "-c", KILLED_WITH_VOLUME], cwd=REPO, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        line = proc.stdout.readline()  # type: ignore[union-attr]
        assert line.startswith("started"), proc.stderr.read() if proc.stderr else ""
        instance_id = line.split()[1]
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    volume = SCRATCH_ROOT / instance_id / "volume"
    assert (volume / "left").exists()
    result = subprocess.run([sys.executable, "-m", "runtime", "cleanup"], capture_output=True, text=True,
                            timeout=120, cwd=REPO)
    assert result.returncode == 0, result.stderr
    assert not volume.exists() and not (SCRATCH_ROOT / instance_id).exists()


@pytest.mark.vm
def test_vm_volume(image, require_root):
    missing = [t for t in ("qemu-system-x86_64", "qemu-img", "virsh", "mkfs.ext4") if shutil.which(t) is None]
    if missing:
        pytest.skip(f"VM volume test needs {', '.join(missing)} (not installed)")
    pytest.importorskip("libvirt")
    from runtime.vm import libvirt_conn
    from runtime.vm.platform import VmPlatform

    platform = VmPlatform(image, accel="auto", volume_size="1G")
    platform.check_available()
    vm = platform.create(InstanceSpec(volume=True, cpus=1, memory=512 * 1024**2))
    try:
        assert list(vm.start_phases.phases)[-1] == "volume"
        assert vm.volume is not None and vm.volume.stat().st_size == 1024**3
        df = vm.exec(["df", "-P", VOLUME_DIR], timeout=60)
        assert df.ok and df.stdout.splitlines()[-1].split()[0] == "/dev/vdb", df.stdout + df.stderr
        assert df.stdout.splitlines()[-1].split()[-1] == VOLUME_DIR
        overlay_before = vm.disk_usage_bytes()
        volume_before = vm.volume.stat().st_blocks * 512
        write = vm.exec(["dd", "if=/dev/urandom", f"of={VOLUME_DIR}/blob", "bs=1M", "count=32", "oflag=direct"],
                        timeout=120)
        assert write.ok, write.stderr
        _write_probe(vm)
        assert vm.volume.stat().st_blocks * 512 - volume_before >= 32 * 1024**2  # landed in the raw disk
        assert vm.disk_usage_bytes() - overlay_before < 16 * 1024**2  # not in the qcow2 overlay
        assert vm.exec(["cat", f"{VOLUME_DIR}/probe"], timeout=60).stdout == PAYLOAD
        state, name = vm.dir, vm.name
    finally:
        vm.destroy()
    assert not state.exists()
    assert libvirt_conn.lookup(platform.conn, name) is None
