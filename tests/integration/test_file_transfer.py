"""put_file/get_file against hostile workloads, on a real container and a real native instance.

The workload plants symlinks that point at host paths (absolute, via "..", through a symlinked parent
directory, dangling, through /proc magic links) and special files. Host markers are files this test
creates on the host outside the rootfs (one in /etc, named isolab-marker-*, removed afterwards; one in
pytest's tmp dir): they must never be read or written, and every transfer either lands inside the
instance's root or fails with one clear error. (The VM's file transfer runs through the guest agent,
which resolves paths inside the guest; the host only writes the local path the harness names.)
"""

from __future__ import annotations

import secrets
from pathlib import Path

import pytest

from runtime.container.platform import ContainerPlatform, ContainerUsernsPlatform
from runtime.errors import InstanceError
from runtime.native import NativePlatform
from runtime.spec import InstanceSpec

SECRET = "host secret: must never leave the host\n"


@pytest.fixture(params=["container", "container-userns", "native"])
def instance(request, image, require_root):
    platform = (ContainerPlatform(image) if request.param == "container" else
                ContainerUsernsPlatform(image) if request.param == "container-userns" else NativePlatform(image))
    with platform.create(InstanceSpec()) as inst:
        yield inst


@pytest.fixture
def marker():
    """A host file in /etc (not part of the rootfs), removed afterwards; plus a name that must stay absent."""
    tag = secrets.token_hex(4)
    path, absent = Path(f"/etc/isolab-marker-{tag}"), Path(f"/etc/isolab-absent-{tag}")
    path.write_text(SECRET)
    try:
        yield path, absent
    finally:
        path.unlink(missing_ok=True)
        absent.unlink(missing_ok=True)


@pytest.fixture
def local(tmp_path):
    path = tmp_path / "payload.txt"
    path.write_text("payload\n")
    return path


def _sh(inst, script: str) -> None:
    result = inst.exec(["sh", "-c", script])
    assert result.ok, result.stderr


def _untouched(marker: Path, absent: Path) -> None:
    assert marker.read_text() == SECRET
    assert not absent.exists()


def test_symlink_to_a_host_file_is_resolved_inside(instance, marker, local, tmp_path):
    path, absent = marker
    _sh(instance, f"ln -s {path} /tmp/x && ln -s {tmp_path}/payload.txt /tmp/y")
    for remote in ("/tmp/x", "/tmp/y"):
        with pytest.raises(InstanceError, match="No such file") as caught:
            instance.get_file(remote, tmp_path / "out")
        assert remote in str(caught.value)
        with pytest.raises(InstanceError, match="refused: it is a symbolic link"):
            instance.put_file(local, remote)
    assert not (tmp_path / "out").exists() or SECRET not in (tmp_path / "out").read_text()
    _untouched(path, absent)


def test_dangling_symlink_cannot_redirect_a_write(instance, marker, local):
    path, absent = marker
    _sh(instance, f"ln -s {absent} /tmp/dangling && ln -s ../../../../..{absent} /tmp/dangling-rel")
    for remote in ("/tmp/dangling", "/tmp/dangling-rel"):
        with pytest.raises(InstanceError, match="refused: it is a symbolic link"):
            instance.put_file(local, remote)
    _untouched(path, absent)


def test_dotdot_paths_stay_in_the_root(instance, marker, local, tmp_path):
    path, absent = marker
    instance.put_file(local, "/../../tmp/../../../tmp/dots.txt")
    assert instance.exec(["cat", "/tmp/dots.txt"]).stdout == "payload\n"
    with pytest.raises(InstanceError, match="No such file"):
        instance.get_file(f"../../../..{path}", tmp_path / "out")
    _sh(instance, f"ln -s ../../../../../../../..{path} /tmp/up")
    with pytest.raises(InstanceError, match="No such file"):
        instance.get_file("/tmp/up", tmp_path / "out")
    instance.get_file("../../../../etc/debian_version", tmp_path / "version")  # the image's, via ".."
    assert (tmp_path / "version").read_text().startswith("12")
    _untouched(path, absent)


def test_symlinked_parent_directory_stays_in_the_root(instance, marker, local, tmp_path):
    path, absent = marker
    _sh(instance, f"ln -s /etc /tmp/etc && ln -s {tmp_path} /tmp/hostdir && ln -s /proc/1/root /tmp/magic")
    # /tmp/etc/<marker name> is the instance's /etc: the host's marker is not there
    with pytest.raises(InstanceError, match="No such file"):
        instance.get_file(f"/tmp/etc/{path.name}", tmp_path / "out")
    # the host's tmp dir is not inside the instance, and magic links are never followed
    with pytest.raises(InstanceError, match="No such file"):
        instance.put_file(local, "/tmp/hostdir/planted.txt")
    with pytest.raises(InstanceError, match=r"No such file|Too many levels|Permission denied"):
        instance.get_file(f"/tmp/magic{path}", tmp_path / "out")
    assert not (tmp_path / "planted.txt").exists()
    if instance.platform.startswith("container"):  # the writable layer takes it: it lands in the container's /etc
        instance.put_file(local, f"/tmp/etc/{path.name}")
        assert instance.exec(["cat", str(path)]).stdout == "payload\n"
    else:  # the native root is read-only outside /tmp
        with pytest.raises(InstanceError, match="only /tmp is writable"):
            instance.put_file(local, f"/tmp/etc/{path.name}")
    _untouched(path, absent)


def test_special_files_are_refused(instance, local, tmp_path):
    # (in a user namespace mknod of a device needs host CAP_MKNOD: /dev/zero, a bound host node, is the device)
    node = "/dev/zero" if instance.spec.userns else "/tmp/null"
    _sh(instance, "mkfifo /tmp/fifo" + ("" if instance.spec.userns else " && mknod /tmp/null c 1 3"))
    for remote, kind in (("/tmp/fifo", "a FIFO"), (node, "a character device"),
                         ("/dev/zero", "a character device"), ("/tmp", "a directory")):
        with pytest.raises(InstanceError, match=f"refused: it is {kind}"):
            instance.get_file(remote, tmp_path / "out")
    for remote, kind in (("/tmp/fifo", "a FIFO"), (node, "a character device")):
        with pytest.raises(InstanceError, match=f"refused: it is {kind}"):
            instance.put_file(local, remote)


def test_native_disk_usage_does_not_follow_symlinks(image, require_root, marker):
    path, _ = marker
    with NativePlatform(image).create(InstanceSpec()) as native:
        _sh(native, f"echo data > /tmp/probe && ln -s {path} /tmp/link-to-host")
        assert native.disk_usage_bytes() == 5  # the 5 bytes of "data\n", not the host file's size
