"""Shared fixtures: capability checks that skip with the reason printed, and the built image."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

FIXTURES = Path(__file__).parent / "fixtures"


@pytest.fixture(scope="session")
def fixtures_dir() -> Path:
    return FIXTURES


@pytest.fixture(scope="session")
def require_root() -> None:
    if os.geteuid() != 0:
        pytest.skip(f"needs root (namespaces, cgroups, mounts); running as uid {os.geteuid()}")


@pytest.fixture(scope="session")
def image(require_root):
    """The shared root filesystem, built on first use (about 2 minutes) and cached afterwards."""
    from runtime.image.build import ensure_image

    return ensure_image(progress=lambda msg: print(f"image: {msg}", flush=True))
