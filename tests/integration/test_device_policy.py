"""The container's device policy for real: the host's root disk cannot be read from inside, on every
cgroup layout, while Docker's default devices keep working.

- `test_bpf_device_filter_on_cgroup2`: the v2 backend (CgroupV2 + its BPF device filter) on whatever
  cgroup2 mount the host has: /sys/fs/cgroup on a v2 host, /sys/fs/cgroup/unified on a hybrid one (the
  kernel runs cgroup-device programs of the task's cgroup2 cgroup in hybrid mode too). A forked process
  in that cgroup tries the accesses.
- The container tests run through whichever backend the host uses (v1 devices cgroup here; the BPF
  filter in the cgroup v2 guest): mknod + read of the root disk, a device node shipped in an image
  layer (the overlay root is not nodev, as with Docker), and one planted in the data volume (nodev).
"""

from __future__ import annotations

import errno
import json
import os
import secrets
import stat
from pathlib import Path

import pytest

from runtime.container.cgroups.v2 import CgroupV2
from runtime.container.container import Container, block_device_of
from runtime.linux import bpf
from runtime.spec import InstanceSpec


def _cgroup2_mount() -> Path | None:
    with open("/proc/self/mountinfo") as info:
        for line in info:
            left, _, right = line.partition(" - ")
            if right.split()[:1] == ["cgroup2"]:
                return Path(left.split()[4])
    return None


@pytest.fixture(scope="module")
def root_disk() -> tuple[int, int]:
    """(major, minor) of the whole disk holding /."""
    found = block_device_of(Path("/"))
    if found is None:
        pytest.skip("/ is not on a block device here: no host disk to attack")
    major, minor = found.split(":")
    return int(major), int(minor)


def _try(action) -> str:
    try:
        action()
        return "ok"
    except OSError as exc:
        return errno.errorcode.get(exc.errno or 0, str(exc.errno))


def _read(path: str, count: int = 16) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.read(fd, count)
    finally:
        os.close(fd)


def _write(path: str) -> None:
    fd = os.open(path, os.O_WRONLY)
    try:
        os.write(fd, b"x")
    finally:
        os.close(fd)


def _accesses_in(cgroup: CgroupV2, workdir: Path, disk: tuple[int, int]) -> dict[str, str]:
    """Fork a process into `cgroup`, try each access there, return {access: 'ok' or errno name}."""
    host_node = workdir / "disk-made-on-host"
    os.mknod(host_node, stat.S_IFBLK | 0o600, os.makedev(*disk))
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: join, try, report, exit without returning into pytest
        try:
            os.close(read_end)
            cgroup.join(0)
            results = {
                "read /dev/zero": _try(lambda: _read("/dev/zero")),
                "read /dev/urandom": _try(lambda: _read("/dev/urandom")),
                "write /dev/null": _try(lambda: _write("/dev/null")),
                "write /dev/full": _try(lambda: _write("/dev/full")),
                "mknod c 1:3": _try(lambda: os.mknod(workdir / "null", stat.S_IFCHR | 0o600, os.makedev(1, 3))),
                "mknod disk": _try(lambda: os.mknod(workdir / "disk", stat.S_IFBLK | 0o600, os.makedev(*disk))),
                "read disk node": _try(lambda: _read(str(host_node), 512)),
            }
            os.write(write_end, json.dumps(results).encode())
        finally:
            os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end) as report:
        text = report.read()
    os.waitpid(pid, 0)
    return json.loads(text)


def test_bpf_device_filter_on_cgroup2(require_root, root_disk, tmp_path):
    mount = _cgroup2_mount()
    if mount is None:
        pytest.skip("no cgroup2 hierarchy mounted on this host")
    cgroup = CgroupV2(f"devtest-{secrets.token_hex(4)}", mount)
    cgroup.create()
    try:
        cgroup.apply(InstanceSpec(), None)
        dir_fd = os.open(cgroup.dir, os.O_RDONLY | os.O_DIRECTORY)
        try:
            assert bpf.prog_query_count(dir_fd, bpf.BPF_CGROUP_DEVICE) == 1
        finally:
            os.close(dir_fd)
        _read(str(Path(f"/sys/dev/block/{root_disk[0]}:{root_disk[1]}/uevent")))  # the disk is real
        results = _accesses_in(cgroup, tmp_path, root_disk)
    finally:
        cgroup.kill_all()
        assert cgroup.remove() == []
        cgroup.remove_parent_if_empty()
    assert results == {
        "read /dev/zero": "ok", "read /dev/urandom": "ok", "write /dev/null": "ok",
        "write /dev/full": "ENOSPC",  # opened (allowed); the device itself says full
        "mknod c 1:3": "ok",
        "mknod disk": "EPERM", "read disk node": "EPERM",
    }


@pytest.fixture
def layer_with_disk_node(tmp_path, root_disk) -> Path:
    """An image layer that ships a device node of the host's root disk (as a hostile image could)."""
    layer = tmp_path / "layer"
    (layer / "opt").mkdir(parents=True)
    os.mknod(layer / "opt" / "disk", stat.S_IFBLK | 0o666, os.makedev(*root_disk))
    return layer


@pytest.fixture(params=[False, True], ids=["plain", "userns"])
def box(request, image, require_root, layer_with_disk_node):
    with Container(InstanceSpec(volume=True, userns=request.param),
                   [image.rootfs, layer_with_disk_node]) as container:
        container.start()
        yield container


def _no_bytes(box, path: str) -> str:
    result = box.exec(["sh", "-c", f"head -c 512 {path} | wc -c; head -c 512 {path} >/dev/null"])
    assert result.stdout.split()[0] == "0", f"{path}: read {result.stdout.split()[0]} bytes of the host disk"
    assert result.returncode != 0
    return result.stderr


def test_mknod_and_read_of_host_root_disk_fail(box, root_disk):
    major, minor = root_disk
    mknod = box.exec(["mknod", "/tmp/disk", "b", str(major), str(minor)])
    assert mknod.returncode != 0 and "Operation not permitted" in mknod.stderr, mknod
    _no_bytes(box, "/tmp/disk")


def test_device_node_from_an_image_layer_cannot_be_read(box):
    assert box.exec(["test", "-b", "/opt/disk"]).ok  # the node is there, in the overlay root
    assert "Operation not permitted" in _no_bytes(box, "/opt/disk")


def test_device_node_in_the_volume_cannot_be_read(box, root_disk):
    assert box.volume is not None
    os.mknod(box.volume / "disk", stat.S_IFBLK | 0o666, os.makedev(*root_disk))
    assert "Permission denied" in _no_bytes(box, "/mnt/disk")  # nodev: EACCES before any device check
    options = box.exec(["sh", "-c", "grep ' /mnt ' /proc/self/mountinfo"]).stdout.split()[5]
    assert {"nodev", "nosuid"} <= set(options.split(","))


def test_default_devices_still_work(box):
    script = ("head -c 4 /dev/zero | wc -c; head -c 4 /dev/urandom | wc -c; head -c 4 /dev/random | wc -c; "
              "echo x > /dev/null && echo null-ok; (head -c 1 /dev/zero > /dev/full) 2>&1; "
              "(exec 3<>/dev/ptmx) && echo ptmx-ok; (: < /dev/tty) 2>&1 && echo tty-ok; true")
    lines = box.exec(["sh", "-c", script]).stdout.splitlines()
    assert lines[:4] == ["4", "4", "4", "null-ok"], lines
    assert "No space left on device" in lines[4]
    assert lines[5] == "ptmx-ok"
    # /dev/tty opens (a controlling terminal) or says there is none; never "Operation not permitted"
    assert lines[6] == "tty-ok" or "No such device or address" in lines[6], lines


def test_native_scratch_and_volume_are_nodev(image, require_root):
    from runtime.native import NativePlatform

    with NativePlatform(image).create(InstanceSpec(volume=True)) as native:
        info = native.exec(["cat", "/proc/self/mountinfo"]).stdout.splitlines()
    for point in ("/tmp", "/mnt"):
        options = [line.split()[5] for line in info if line.split()[4] == point]
        assert options and {"nodev", "nosuid"} <= set(options[-1].split(",")), (point, options)
