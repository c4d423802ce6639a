"""Which leftover VM state dirs cleanup may remove: only those whose owner process is gone."""

from __future__ import annotations

import os
import subprocess

from runtime.naming import OWNER_FILE, owner_alive


def test_owner_alive(tmp_path):
    assert owner_alive(tmp_path) is None  # no owner file: an orphan
    (tmp_path / OWNER_FILE).write_text(f"{os.getpid()}\n")
    assert owner_alive(tmp_path) is None  # ourselves: our own leftovers may go
    other = subprocess.Popen(["sleep", "30"])
    try:
        (tmp_path / OWNER_FILE).write_text(f"{other.pid}\n")
        assert owner_alive(tmp_path) == other.pid
    finally:
        other.kill()
        other.wait()
    assert owner_alive(tmp_path) is None  # dead owner
    (tmp_path / OWNER_FILE).write_text("garbage")
    assert owner_alive(tmp_path) is None
