"""The container init is built from source once per host and can be replaced by a prebuilt binary."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from runtime.container import init
from runtime.errors import PlatformUnavailable


def test_init_builds_and_refuses_bad_usage(tmp_path):
    if shutil.which("gcc") is None:
        pytest.skip("no gcc on this machine (host setup installs it)")
    path = init.build(tmp_path)
    assert path == init.binary_path(tmp_path) and path.is_file()
    assert init.build(tmp_path) == path  # cached: same file, not rebuilt
    usage = subprocess.run([str(path)], capture_output=True, text=True)
    assert usage.returncode == 125 and "usage: isolab-init" in usage.stderr


def test_prebuilt_init_from_the_environment(tmp_path, monkeypatch):
    binary = tmp_path / "isolab-init"
    binary.write_bytes(b"\x7fELF")
    monkeypatch.setenv("ISOLAB_CONTAINER_INIT", str(binary))
    assert init.build(tmp_path / "cache") == binary
    monkeypatch.setenv("ISOLAB_CONTAINER_INIT", str(tmp_path / "missing"))
    with pytest.raises(PlatformUnavailable, match="ISOLAB_CONTAINER_INIT"):
        init.build(tmp_path / "cache")
