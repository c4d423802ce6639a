"""InstanceSpec(disk_quota=...) for real, on the overlay, btrfs and vfs drivers: a write past the quota
fails inside the container with ENOSPC (or EDQUOT) while the host's file system loses at most the quota
(measured on the file that holds the container's writes: the quota's own image or the btrfs pool's; the
host-wide free space also moves with every other job on this shared machine); the writable layer and the volume
share the one limit; an unenforceable quota is one SpecError; and a runtime SIGKILLed after it made the
quota's filesystem leaves no mount, loop device or image behind after `python -m bench cleanup`.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from runtime.container import quota
from runtime.container.container import Container
from runtime.container.storage import get_driver
from runtime.errors import SpecError
from runtime.naming import SCRATCH_ROOT, STATE_ROOT
from runtime.spec import VOLUME_DIR, InstanceSpec

REPO = Path(__file__).resolve().parents[2]
MIB = 2**20
QUOTA = 32 * MIB


def _loops_of(instance_id: str) -> list[str]:
    return [device for device, _, iid in quota.our_loops() if iid == instance_id]


def _gone(instance_id: str, timeout: float = 5.0) -> list[str]:
    """What of the instance's quota is still on the host (waits for autoclear to free the loop)."""
    deadline = time.monotonic() + timeout
    while True:
        left = [*_loops_of(instance_id),
                *[m for m in (STATE_ROOT / instance_id / quota.MOUNT_NAME,) if os.path.ismount(m)],
                *[str(p) for p in (SCRATCH_ROOT / instance_id / quota.IMAGE_NAME,) if p.exists()]]
        if not left or time.monotonic() > deadline:
            return left
        time.sleep(0.1)


@pytest.mark.parametrize("driver", ["overlay", "btrfs", "vfs"])
def test_write_past_the_quota_fails_inside_and_the_host_keeps_its_space(image, require_root, driver):
    reason = get_driver(driver).unavailable()
    if reason is not None:
        pytest.skip(f"storage driver {driver}: {reason}")
    volume = driver != "btrfs"  # btrfs's qgroup limits the root only (its volume is a host directory)
    container = Container(InstanceSpec(disk_quota=QUOTA, volume=volume, storage_driver=driver), [image.rootfs])
    with container:
        container.create()
        container.start()
        if container.quota_disk is not None:
            assert os.path.ismount(container.quota_disk.mountpoint) and len(_loops_of(container.instance_id)) == 1
        # the file that holds the container's writes on the host: its own image, or the btrfs pool's
        backing = container.quota_disk.image if container.quota_disk is not None else \
            get_driver(driver).pool.image  # type: ignore[attr-defined]
        os.sync()  # what making the root wrote (a vfs copy, a pool import) reaches the host's disk first
        allocated_before = backing.stat().st_blocks * 512
        attempt = 4 * QUOTA // MIB
        result = container.exec(["sh", "-c", f"dd if=/dev/zero of=/tmp/fill bs=1M count={attempt} 2>&1; "
                                             "echo status=$?; stat -c %s /tmp/fill"])
        written = int(result.stdout.split()[-1])
        os.sync()
        grown = backing.stat().st_blocks * 512 - allocated_before
        assert "status=1" in result.stdout and ("No space left on device" in result.stdout
                                                or "Disk quota exceeded" in result.stdout), result.stdout
        assert QUOTA - 2 * MIB <= written <= QUOTA, written  # the limit, less what the filesystem keeps for itself
        # the host lost at most the quota (and the filesystem's own metadata): 4x the quota was attempted
        assert grown < QUOTA + 8 * MIB, grown
        meta = container.quota_facts
        assert meta["disk_quota_bytes"] == QUOTA and meta["disk_quota_mechanism"]
        if volume:
            assert container.quota_disk is not None
            # the volume shares the limit: the root and the volume together hold at most the quota
            more = container.exec(["sh", "-c", f"dd if=/dev/zero of={VOLUME_DIR}/more bs=1M count=8 2>&1; "
                                               f"echo status=$?; stat -c %s {VOLUME_DIR}/more"])
            assert "status=1" in more.stdout and "No space left on device" in more.stdout, more.stdout
            assert written + int(more.stdout.split()[-1]) <= QUOTA
            again = container.exec(["sh", "-c", f"rm /tmp/fill && dd if=/dev/zero of={VOLUME_DIR}/v bs=1M count=8"])
            assert again.ok, again.stderr
            assert meta["disk_quota_room_bytes"] >= QUOTA
    assert _gone(container.instance_id) == []
    assert not (STATE_ROOT / container.instance_id).exists() and not (SCRATCH_ROOT / container.instance_id).exists()
    qgroup = container.quota_facts.get("disk_quota_qgroup")
    if qgroup:  # the deleted snapshot's qgroup went with it (no quota group left behind)
        pool = get_driver(driver).pool.mnt  # type: ignore[attr-defined]
        shown = subprocess.run(["btrfs", "qgroup", "show", str(pool)], capture_output=True, text=True)
        assert qgroup not in shown.stdout.split(), shown.stdout


def test_btrfs_quota_refuses_a_volume(image, require_root):
    with pytest.raises(SpecError, match="not its data volume"):
        Container(InstanceSpec(disk_quota=QUOTA, volume=True, storage_driver="btrfs"), [image.rootfs])


def test_cli_disk_quota(image, require_root):
    proc = subprocess.run([sys.executable, "-m", "runtime", "run", "--rm", "--disk-quota", "16M", "--", "sh", "-c",
                           "dd if=/dev/zero of=/tmp/f bs=1M count=64"], capture_output=True, text=True,
                          timeout=120, cwd=REPO)
    assert proc.returncode != 0 and "No space left on device" in proc.stderr, proc.stderr
    bad = subprocess.run([sys.executable, "-m", "runtime", "run", "--rm", "--disk-quota", "0", "--", "true"],
                         capture_output=True, text=True, timeout=60, cwd=REPO)
    assert bad.returncode != 0 and "disk-quota" in bad.stderr and "Traceback" not in bad.stderr, bad.stderr


def test_an_unenforceable_quota_is_one_spec_error(image, require_root, monkeypatch):
    with pytest.raises(SpecError, match="at least 16 MiB"):
        Container(InstanceSpec(disk_quota=MIB), [image.rootfs]).create()
    monkeypatch.setattr(quota, "unsupported_reason", lambda: "no loop device support (test)")
    container = Container(InstanceSpec(disk_quota=QUOTA), [image.rootfs])
    with pytest.raises(SpecError, match="disk_quota cannot be enforced on this host: no loop device support"):
        container.create()
    assert not (STATE_ROOT / container.instance_id).exists()  # refused before anything was made


KILLED_MID_CREATE = textwrap.dedent("""
    import time
    from runtime.container.container import Container
    from runtime.image.build import ensure_image
    from runtime.spec import InstanceSpec
    c = Container(InstanceSpec(disk_quota=32 << 20, volume=True), [ensure_image().rootfs])
    c.create()  # the quota's filesystem is made and mounted; the container is not started
    (c.volume / "left").write_text("data")
    print("created", c.instance_id, flush=True)
    time.sleep(60)
""")


def test_cleanup_after_sigkill_mid_create_leaves_no_mount_loop_or_image(image, require_root):
    proc = subprocess.Popen([sys.executable, "-c", KILLED_MID_CREATE], cwd=REPO, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        line = proc.stdout.readline()  # type: ignore[union-attr]
        assert line.startswith("created"), proc.stderr.read() if proc.stderr else ""
        instance_id = line.split()[1]
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert _loops_of(instance_id) and os.path.ismount(STATE_ROOT / instance_id / quota.MOUNT_NAME)
    result = subprocess.run([sys.executable, "-m", "bench", "cleanup"], capture_output=True, text=True,
                            timeout=300, cwd=REPO)
    assert result.returncode == 0, result.stderr
    assert _gone(instance_id) == []
    assert not (STATE_ROOT / instance_id).exists() and not (SCRATCH_ROOT / instance_id).exists()
