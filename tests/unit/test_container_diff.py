"""Whiteout/opaque-dir parsing of `diff` on a temporary layer tree (no overlay mount involved)."""

from __future__ import annotations

import os
import stat

import pytest

from runtime.container.layers import diff, is_opaque
from runtime.container.rootfs import overlay_options


def test_overlay_options_topmost_first(tmp_path):
    lowers = [tmp_path / "base", tmp_path / "mid", tmp_path / "top"]
    text = overlay_options(lowers, tmp_path / "up", tmp_path / "wk")
    assert text == (f"lowerdir={tmp_path}/top:{tmp_path}/mid:{tmp_path}/base,"
                    f"upperdir={tmp_path}/up,workdir={tmp_path}/wk")


def test_diff_added_changed_and_plain_files(tmp_path):
    base, upper = tmp_path / "base", tmp_path / "upper"
    (base / "etc").mkdir(parents=True)
    (base / "etc" / "hosts").write_text("old")
    (upper / "etc").mkdir(parents=True)
    (upper / "etc" / "hosts").write_text("new")
    (upper / "etc" / "added").write_text("x")
    (upper / "srv" / "deep").mkdir(parents=True)
    assert diff(upper, [base]) == [("C", "/etc"), ("A", "/etc/added"), ("C", "/etc/hosts"),
                                   ("A", "/srv"), ("A", "/srv/deep")]


def test_diff_reads_whiteouts_as_deletions(tmp_path):
    if os.geteuid() != 0:
        pytest.skip("creating an overlay whiteout (0:0 char device) needs CAP_MKNOD")
    base, mid, upper = tmp_path / "base", tmp_path / "mid", tmp_path / "upper"
    for d in (base, mid, upper):
        d.mkdir()
    (base / "gone").write_text("x")
    (base / "hidden").write_text("x")
    os.mknod(mid / "hidden", stat.S_IFCHR | 0o600, 0)  # deleted in a middle layer
    os.mknod(upper / "gone", stat.S_IFCHR | 0o600, 0)
    (upper / "hidden").write_text("back")
    assert diff(upper, [base, mid]) == [("D", "/gone"), ("A", "/hidden")]


def test_opaque_directory_detected(tmp_path):
    if os.geteuid() != 0:
        pytest.skip("trusted.* xattrs need CAP_SYS_ADMIN")
    d = tmp_path / "dir"
    d.mkdir()
    assert not is_opaque(str(d))
    os.setxattr(d, "trusted.overlay.opaque", b"y")
    assert is_opaque(str(d))
