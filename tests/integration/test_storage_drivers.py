"""Real (root) storage drivers: the same changes give the same diff and the same committed layer on every
driver; a committed image runs on its driver; devicemapper says why it cannot run here; a runtime killed
with SIGKILL while it makes a btrfs root leaves no subvolume, loop device or mount after `cleanup`."""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from runtime.container.container import Container
from runtime.container.layers import LayerStore
from runtime.container.storage import get_driver
from runtime.container.storage.changes import manifest
from runtime.errors import PlatformUnavailable
from runtime.platform import load_platform
from runtime.spec import InstanceSpec

REPO = Path(__file__).resolve().parents[2]
DRIVERS = ("overlay", "btrfs", "vfs")
# new file, modified file, deleted file (-> whiteout), replaced directory (-> opaque), a new directory
CHANGES = ("echo added > /etc/isl-new && echo changed > /etc/hostname && rm /etc/issue"
           " && rm -rf /etc/default && mkdir /etc/default && echo only > /etc/default/isl"
           " && mkdir -p /opt/isl/deep && ln -s ../etc/isl-new /opt/isl/link"
           " && head -c 300000 /dev/zero > /opt/isl/blob")
SEEN = ("cat /etc/isl-new /etc/hostname /etc/default/*; ls /etc/default; test -e /etc/issue || echo gone;"
        " readlink /opt/isl/link")


@pytest.fixture
def store(image, tmp_path, require_root):
    return LayerStore(image.rootfs, root=tmp_path / "layers")


def _available(name: str) -> None:
    reason = get_driver(name).unavailable()
    if reason is not None:
        pytest.skip(f"storage driver {name}: {reason}")


def test_same_changes_same_layer_on_every_driver_and_round_trip(image, store):
    layers, diffs = {}, {}
    for name in DRIVERS:
        _available(name)
        with Container(InstanceSpec(storage_driver=name), [image.rootfs]) as box:
            box.start()
            assert box.exec(["sh", "-c", CHANGES]).ok
            diffs[name] = box.diff()
            layer = store.commit(box.write_layer, "base", f"isl-{name}-{secrets.token_hex(3)}")
            layers[name] = layer
            assert box.disk_usage_bytes() >= 300000, name  # the blob (small files may live in btrfs metadata)
    trees = {name: manifest(layer.path) for name, layer in layers.items()}
    reference = trees["overlay"]
    assert reference["etc/issue"] == ("whiteout",)
    assert reference["etc/default"][0] == "dir" and reference["etc/default"][4] is True  # opaque
    assert reference["etc/isl-new"][4] == b"added\n" and reference["etc/hostname"][4] == b"changed\n"
    assert set(k for k in reference if k.startswith("etc/default/")) == {"etc/default/isl"}
    assert not any(k.startswith(("usr", "bin", "var")) for k in reference)  # only the change set
    for name in DRIVERS:
        assert trees[name] == reference, name
        assert diffs[name] == diffs["overlay"], name
    assert ("D", "/etc/issue") in diffs["overlay"] and ("A", "/etc/isl-new") in diffs["overlay"]
    for name, layer in layers.items():  # each committed image runs on its own driver and shows the changes
        with Container(InstanceSpec(storage_driver=name), store.resolve(layer.name), image_name=layer.name) as box:
            box.start()
            seen = box.exec(["sh", "-c", SEEN]).stdout.split()
            assert seen == ["added", "changed", "only", "isl", "gone", "../etc/isl-new"], name
            assert box.diff() == [], name
    assert (image.rootfs / "etc" / "issue").exists()  # the image is untouched


def test_devicemapper_needs_dm_thin(require_root):
    reason = get_driver("devicemapper").unavailable()
    platform = load_platform("container[devicemapper]", image=None)
    if reason is None:
        pytest.skip("dm-thin is present here (the driver is detection-only)")
    with pytest.raises(PlatformUnavailable, match="storage driver devicemapper: the kernel has no"):
        platform.check_available()
    print(f"devicemapper unavailable: {reason}")


def _mounts_under(prefix: Path) -> list[str]:
    return [line.split()[4] for line in open("/proc/self/mountinfo") if line.split()[4].startswith(str(prefix))]


def _loops_of(path: Path) -> list[str]:
    out = subprocess.run(["losetup", "-a"], capture_output=True, text=True).stdout
    return [line for line in out.splitlines() if str(path) in line]


def test_kill_during_btrfs_create_then_cleanup_leaves_nothing(image, tmp_path):
    _available("btrfs")
    pool = Path(f"/var/lib/isolab/storage-test-{secrets.token_hex(4)}")  # a pool of this test's own
    env = {**os.environ, "PYTHONPATH": str(REPO), "ISOLAB_STORAGE_DIR": str(pool)}
    proc = subprocess.Popen([sys.executable, "-m", "runtime", "run", "--rm", "--storage-driver", "btrfs",
                             "--", "sleep", "60"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 120
        while not list((pool / "btrfs" / "images").glob(".partial-*")):  # the image import is under way
            assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
            assert time.monotonic() < deadline, "the btrfs import never started"
            time.sleep(0.05)
        time.sleep(0.5)
        assert _mounts_under(pool) and _loops_of(pool)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    done = subprocess.run([sys.executable, "-m", "bench", "cleanup"], env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr
    assert _mounts_under(pool) == []
    assert _loops_of(pool) == []
    assert not pool.exists(), sorted(str(p) for p in pool.rglob("*"))


def test_cleanup_beside_a_live_run_removes_only_the_dead_snapshot(image):
    """Two runtimes share a btrfs pool; one is killed with SIGKILL while its container runs: `cleanup` removes
    its snapshot and leaves the live one's (and the pool); the pool goes when the live one ends."""
    _available("btrfs")
    pool = Path(f"/var/lib/isolab/storage-test-{secrets.token_hex(4)}")
    env = {**os.environ, "PYTHONPATH": str(REPO), "ISOLAB_STORAGE_DIR": str(pool)}
    containers = pool / "btrfs" / "containers"

    def start() -> tuple[subprocess.Popen[bytes], str]:
        before = set(containers.iterdir()) if containers.is_dir() else set()
        proc = subprocess.Popen([sys.executable, "-m", "runtime", "run", "--rm", "--storage-driver", "btrfs",
                                 "--", "sleep", "120"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 180
        while not (containers.is_dir() and set(containers.iterdir()) - before):
            assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
            assert time.monotonic() < deadline, "no snapshot appeared"
            time.sleep(0.05)
        return proc, (set(containers.iterdir()) - before).pop().name

    live, live_id = start()
    try:
        dead, dead_id = start()
        dead.send_signal(signal.SIGKILL)
        dead.wait()
        done = subprocess.run([sys.executable, "-m", "bench", "cleanup"], env=env, capture_output=True, text=True,
                              timeout=300)
        assert done.returncode == 0, done.stderr
        assert not (containers / dead_id).exists()
        assert (containers / live_id).is_dir() and _mounts_under(pool)
    finally:
        live.send_signal(signal.SIGTERM)  # forwarded to the container; the runtime then removes it and exits
        live.wait(timeout=120)
    assert _mounts_under(pool) == [] and _loops_of(pool) == []
    assert not pool.exists(), sorted(str(p) for p in pool.rglob("*"))


@pytest.mark.parametrize("name", ["btrfs", "vfs"])
def test_user_namespace_on_a_snapshot_root(image, store, name):
    """container-userns[btrfs], [vfs]: the snapshot or copy is mounted idmapped into the container's user
    namespace: root inside is host uid 100000, image files look root-owned inside, what root writes is stored
    with image ids, so a commit is an ordinary image layer."""
    _available(name)
    with Container(InstanceSpec(storage_driver=name, userns=True), [image.rootfs]) as box:
        box.start()
        seen = box.exec(["sh", "-c", "cat /proc/self/uid_map; stat -c %u /etc/passwd; echo x > /root/made;"
                                     " stat -c %u /root/made"]).stdout.split()
        assert seen == ["0", "100000", "65536", "0", "0"]
        assert (box.upper / "root" / "made").stat().st_uid == 0  # on disk: the image's id for root
        assert box.diff() == [("C", "/root"), ("A", "/root/made")]
        layer = store.commit(box.write_layer, "base", f"isl-userns-{name}-{secrets.token_hex(3)}",
                             fix_ids=box.owners_to_image())
    assert (layer.path / "root" / "made").stat().st_uid == 0
