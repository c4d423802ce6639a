"""The storage drivers' one layer format (runtime.container.storage.changes) on temporary trees: the change
set of an overlay-style view equals that of a plain copy with the same changes; written layers apply back."""

from __future__ import annotations

import os
import stat
import subprocess
from pathlib import Path

import pytest

from runtime.container.storage.changes import OPAQUE_XATTR, apply_layer, compare, manifest, summary, write_layer


@pytest.fixture(autouse=True)
def _root():
    if os.geteuid() != 0:
        pytest.skip("whiteouts (0:0 character devices) and trusted.* xattrs need root")


def make_image(base: Path) -> None:
    (base / "etc").mkdir(parents=True)
    (base / "etc" / "hosts").write_text("old hosts\n")
    (base / "etc" / "issue").write_text("Debian\n")
    (base / "etc" / "keep").write_text("same\n")
    (base / "srv" / "data").mkdir(parents=True)
    (base / "srv" / "data" / "a").write_text("a\n")
    (base / "srv" / "data" / "b").write_text("b\n")
    (base / "usr" / "lib").mkdir(parents=True)
    (base / "usr" / "lib" / "big").write_bytes(b"x" * 10000)
    (base / "usr" / "link").symlink_to("lib/big")
    (base / "swap").write_text("file\n")


def change(root: Path) -> None:
    """The same change set, made with plain file operations on a tree."""
    (root / "etc" / "new").write_text("added\n")
    (root / "etc" / "hosts").write_text("new hosts\n")
    (root / "etc" / "issue").unlink()
    subprocess.run(["rm", "-rf", str(root / "srv" / "data")], check=True)
    (root / "srv" / "data").mkdir()
    (root / "srv" / "data" / "c").write_text("c\n")
    (root / "swap").unlink()
    (root / "swap").mkdir()
    (root / "swap" / "inner").write_text("in\n")


def copy_tree(src: Path, dst: Path) -> None:
    dst.mkdir()
    subprocess.run(["cp", "-a", f"{src}/.", f"{dst}/"], check=True)


def test_plain_copy_change_set(tmp_path):
    base, copy = tmp_path / "base", tmp_path / "copy"
    make_image(base)
    copy_tree(base, copy)
    assert compare([base], [copy]) == []  # a copy with its times kept is unchanged
    change(copy)
    assert summary(compare([base], [copy])) == [
        ("C", "/etc"), ("C", "/etc/hosts"), ("D", "/etc/issue"), ("A", "/etc/new"),
        ("C", "/srv"), ("C", "/srv/data"), ("A", "/srv/data/c"), ("A", "/swap"), ("A", "/swap/inner"),
    ]  # parents of changes count as changed; the opaque /srv/data does not list its old names
    layer = tmp_path / "layer"
    write_layer(compare([base], [copy]), layer)
    tree = manifest(layer)
    assert tree["etc/issue"] == ("whiteout",)
    assert tree["etc/new"][4] == b"added\n" and tree["etc/hosts"][4] == b"new hosts\n"
    assert "etc/keep" not in tree and "usr" not in tree
    assert tree["srv/data"][4] is True  # replaced directory: opaque, with only its new entry
    assert set(k for k in tree if k.startswith("srv/data/")) == {"srv/data/c"}
    assert tree["swap"][0] == "dir" and tree["swap/inner"][4] == b"in\n"


def test_overlay_view_gives_the_same_layer_as_a_copy(tmp_path):
    """An overlay upper dir holding the change set (whiteout, opaque dir, copied-up file) is read as overlayfs
    reads it; its layer equals the plain copy's, whatever overlay's own representation was."""
    base, copy, upper = tmp_path / "base", tmp_path / "copy", tmp_path / "upper"
    make_image(base)
    copy_tree(base, copy)
    change(copy)
    # what overlayfs would have in its upper dir for the same operations
    upper.mkdir()
    os.chmod(upper, os.stat(base).st_mode & 0o7777)
    (upper / "etc").mkdir()
    os.utime(upper / "etc", ns=(0, os.stat(base / "etc").st_mtime_ns))
    os.chmod(upper / "etc", os.stat(base / "etc").st_mode & 0o7777)
    subprocess.run(["cp", "-a", str(copy / "etc" / "hosts"), str(copy / "etc" / "new"), f"{upper}/etc/"], check=True)
    os.mknod(upper / "etc" / "issue", stat.S_IFCHR | 0o600, 0)
    (upper / "srv" / "data").mkdir(parents=True)
    os.chmod(upper / "srv", os.stat(base / "srv").st_mode & 0o7777)
    os.chmod(upper / "srv" / "data", os.stat(copy / "srv" / "data").st_mode & 0o7777)
    os.setxattr(upper / "srv" / "data", OPAQUE_XATTR, b"y")
    subprocess.run(["cp", "-a", str(copy / "srv" / "data" / "c"), f"{upper}/srv/data/"], check=True)
    subprocess.run(["cp", "-a", str(copy / "swap"), f"{upper}/"], check=True)
    from_copy, from_overlay = tmp_path / "l1", tmp_path / "l2"
    write_layer(compare([base], [copy]), from_copy)
    write_layer(compare([base], [base, upper]), from_overlay)
    assert manifest(from_copy) == manifest(from_overlay)
    assert summary(compare([base], [copy])) == summary(compare([base], [base, upper]))


def test_rm_children_and_rm_rf_give_the_same_layer(tmp_path):
    base = tmp_path / "base"
    make_image(base)
    one, two = tmp_path / "one", tmp_path / "two"
    copy_tree(base, one)
    copy_tree(base, two)
    subprocess.run(["rm", "-rf", str(one / "srv" / "data")], check=True)
    (one / "srv" / "data").mkdir()
    for name in ("a", "b"):
        (two / "srv" / "data" / name).unlink()
    os.chmod(one / "srv" / "data", os.stat(two / "srv" / "data").st_mode & 0o7777)
    l1, l2 = tmp_path / "l1", tmp_path / "l2"
    write_layer(compare([base], [one]), l1)
    write_layer(compare([base], [two]), l2)
    assert manifest(l1) == manifest(l2)
    assert manifest(l1)["srv/data"][4] is True


def test_written_layer_applies_back_onto_the_image(tmp_path):
    base, copy, layer, rebuilt = tmp_path / "base", tmp_path / "copy", tmp_path / "layer", tmp_path / "rebuilt"
    make_image(base)
    copy_tree(base, copy)
    change(copy)
    write_layer(compare([base], [copy]), layer)
    copy_tree(base, rebuilt)
    apply_layer(layer, rebuilt)
    assert compare([copy], [rebuilt]) == []
    # and the overlay reading of image + layer is the same tree as well
    assert compare([copy], [base, layer]) == []
