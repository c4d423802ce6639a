"""The storage scenario for real on the default container platform (2 instances: a few seconds): root
create times, the copy-up write, disk per instance and a commit whose image is gone afterwards; and on
native, where the image's root is read-only, copy-up and commit are absent and the log says why.
"""

from __future__ import annotations

from runtime.container.layers import LayerStore
from runtime.container.platform import ContainerPlatform
from runtime.native import NativePlatform
from scenarios import storage


def _run(platform):
    raw: dict[str, str] = {}
    samples = storage.run_platform(platform, {**storage.PROFILES["quick"], "instances": 2},
                                   lambda name, text: raw.__setitem__(name, text))
    return {(s.metric, tuple(sorted(s.metadata.items()))): s.value for s in samples}, raw["storage.log"]


def test_storage_operations_on_the_container(image, require_root):
    before = {layer.name for layer in LayerStore(image.rootfs).list()}
    got, log = _run(ContainerPlatform(image))
    assert got[("storage_create_s", (("which", "1st"),))] > 0 and got[("storage_create_s", (("which", "2nd"),))] > 0
    first = next(v for (m, meta), v in got.items() if m == "storage_copy_up_write_s" and ("write", "first") in meta)
    assert first > 0
    # overlayfs copies the whole file up on its first write: the layer holds it afterwards
    assert got[("storage_disk_mib", (("after", "copy-up"),))] > 20
    assert got[("storage_commit_s", (("change_mib", 16),))] > 0
    assert {layer.name for layer in LayerStore(image.rootfs).list()} == before  # the committed image was removed
    assert "copy-up of" in log and "commit of" in log


def test_storage_on_a_read_only_root_says_why(image, require_root):
    got, log = _run(NativePlatform(image))
    assert {m for m, _ in got} == {"storage_create_s", "storage_disk_mib"}
    assert "not writable there" in log and "no images to commit" in log
