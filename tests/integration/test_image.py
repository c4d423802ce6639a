"""The shared image: cached by recipe hash, complete artefacts, and a failed build leaves nothing."""

import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from runtime.errors import ImageError
from runtime.image.build import ensure_image
from runtime.image.recipe import Recipe
from runtime.image.store import ImageStore

ROOT = Path(__file__).resolve().parents[2]


def test_artefacts_are_complete(image):
    assert image.digest == Recipe().digest()
    assert (image.rootfs / "usr/bin/fio").exists() and (image.rootfs / "usr/bin/sysbench").exists()
    assert (image.rootfs / "sbin/isolab-init").stat().st_mode & 0o111
    assert image.vmlinux.read_bytes()[:4] == b"\x7fELF"
    assert image.initramfs.read_bytes()[:6] == b"070701"
    assert image.ext4.stat().st_size > 1 << 30
    assert image.manifest["kernel_version"] == image.kernel_version
    assert "virtio_blk.ko" in image.manifest["initramfs_modules"]


def test_second_build_reuses_the_cache(image):
    env = {**os.environ, "COLUMNS": "200"}
    proc = subprocess.run([sys.executable, "-m", "bench", "image", "build"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert f"image {image.digest} (cached)" in proc.stdout
    listing = subprocess.run([sys.executable, "-m", "bench", "image", "list"], cwd=ROOT, env=env,
                             capture_output=True, text=True, timeout=120).stdout
    assert f"{image.digest}" in listing and "current recipe" in listing


@pytest.mark.usefixtures("require_root")
def test_failed_build_leaves_no_half_image(tmp_path):
    store = ImageStore(tmp_path)
    broken = replace(Recipe(), packages=("isolab-no-such-package",))
    with pytest.raises(ImageError, match=r"debootstrap.*Couldn't find these debs: isolab-no-such-package"):
        ensure_image(broken, store)
    assert store.get(broken.digest()) is None
    assert [p.name for p in store.root.iterdir()] == [".build.lock"]
