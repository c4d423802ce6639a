"""File transfer resolved inside a root (openat2 RESOLVE_IN_ROOT), on a real temporary tree: links that
point out of the root, "..", symlinked parents, dangling links and special files never reach the host."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from runtime.linux.transfer import TransferError, get_file, put_file


@pytest.fixture
def tree(tmp_path: Path) -> dict[str, Path]:
    """root/ (the instance) and a host marker outside it; root/etc/marker is the in-root look-alike."""
    root = tmp_path / "root"
    (root / "tmp").mkdir(parents=True)
    (root / "etc").mkdir()
    marker = tmp_path / "host-marker"
    marker.write_text("host secret")
    (root / "etc" / "marker").write_text("inside")
    local = tmp_path / "local.txt"
    local.write_text("payload")
    return {"root": root, "marker": marker, "local": local, "out": tmp_path / "out.txt"}


def test_plain_round_trip(tree):
    put_file(tree["root"], tree["local"], "/tmp/a.txt", "test")
    assert (tree["root"] / "tmp" / "a.txt").read_text() == "payload"
    get_file(tree["root"], "/tmp/a.txt", tree["out"], "test")
    assert tree["out"].read_text() == "payload"


def test_absolute_symlink_to_host_path_resolves_inside_root(tree):
    os.symlink(str(tree["marker"]), tree["root"] / "tmp" / "x")  # an absolute host path
    with pytest.raises(TransferError, match="No such file"):
        get_file(tree["root"], "/tmp/x", tree["out"], "test")
    os.symlink("/etc/marker", tree["root"] / "tmp" / "y")
    get_file(tree["root"], "/tmp/y", tree["out"], "test")
    assert tree["out"].read_text() == "inside"  # the root's /etc/marker, not the host's
    assert tree["marker"].read_text() == "host secret"


def test_dotdot_is_clamped_at_the_root(tree):
    put_file(tree["root"], tree["local"], "../../../tmp/b.txt", "test")
    assert (tree["root"] / "tmp" / "b.txt").read_text() == "payload"
    os.symlink("../../../../../host-marker", tree["root"] / "tmp" / "up")
    with pytest.raises(TransferError, match="No such file"):
        get_file(tree["root"], "/tmp/up", tree["out"], "test")


def test_symlinked_parent_directory_stays_inside(tree):
    os.symlink(str(tree["marker"].parent), tree["root"] / "tmp" / "hostdir")  # -> the host's tmp_path
    with pytest.raises(TransferError, match="directory"):
        put_file(tree["root"], tree["local"], "/tmp/hostdir/host-marker", "test")
    assert tree["marker"].read_text() == "host secret"
    os.symlink("/etc", tree["root"] / "tmp" / "etclink")
    put_file(tree["root"], tree["local"], "/tmp/etclink/marker", "test")
    assert (tree["root"] / "etc" / "marker").read_text() == "payload"


def test_put_never_writes_through_a_final_symlink(tree):
    os.symlink(str(tree["marker"]), tree["root"] / "tmp" / "live")
    os.symlink(str(tree["marker"].parent / "new-host-file"), tree["root"] / "tmp" / "dangling")
    for name in ("live", "dangling"):
        with pytest.raises(TransferError, match="refused: it is a symbolic link"):
            put_file(tree["root"], tree["local"], f"/tmp/{name}", "test")
    assert tree["marker"].read_text() == "host secret"
    assert not (tree["marker"].parent / "new-host-file").exists()


def test_special_files_are_refused(tree):
    os.mkfifo(tree["root"] / "tmp" / "fifo")
    with pytest.raises(TransferError, match="refused: it is a FIFO"):
        get_file(tree["root"], "/tmp/fifo", tree["out"], "test")
    with pytest.raises(TransferError, match="refused: it is a FIFO"):
        put_file(tree["root"], tree["local"], "/tmp/fifo", "test")
    with pytest.raises(TransferError, match="refused: it is a directory"):
        get_file(tree["root"], "/tmp", tree["out"], "test")
    with pytest.raises(TransferError, match="does not name a file"):
        put_file(tree["root"], tree["local"], "/tmp/", "test")


def test_existing_file_is_truncated(tree):
    (tree["root"] / "tmp" / "long.txt").write_text("a much longer old content")
    put_file(tree["root"], tree["local"], "/tmp/long.txt", "test")
    assert (tree["root"] / "tmp" / "long.txt").read_text() == "payload"
