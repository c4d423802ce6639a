"""Real (root) round trip of layered images: write and delete, diff, commit, run the child image."""

from __future__ import annotations

import secrets

import pytest

from runtime.container.container import Container
from runtime.container.layers import LayerStore, diff
from runtime.spec import InstanceSpec


@pytest.fixture
def store(image, tmp_path, require_root):
    return LayerStore(image.rootfs, root=tmp_path / "layers")


def test_diff_and_commit_round_trip(image, store):
    script = "echo new > /etc/isl-added && echo changed > /etc/hostname && rm /etc/issue && mkdir -p /opt/isl"
    with Container(InstanceSpec(), [image.rootfs]) as first:
        first.start()
        assert first.exec(["sh", "-c", script]).ok
        changes = dict((path, kind) for kind, path in diff(first.upper, first.layers))
        assert changes["/etc/isl-added"] == "A"
        assert changes["/etc/hostname"] == "C"
        assert changes["/etc/issue"] == "D"
        assert changes["/opt/isl"] == "A"
        assert changes["/etc"] == "C"
        name = f"isltest-{secrets.token_hex(3)}"
        layer = store.commit(first.upper, "base", name, comment="round trip")
    assert layer.parent == "base"
    layers = store.resolve(name)
    assert layers == [image.rootfs, store.root / name / "fs"]
    with Container(InstanceSpec(), layers, image_name=name) as second:
        second.start()
        seen = second.exec(["sh", "-c", "cat /etc/isl-added /etc/hostname; test -e /etc/issue || echo gone"])
        assert seen.stdout.split() == ["new", "changed", "gone"]
        assert second.exec(["sh", "-c", "rm /etc/isl-added"]).ok
        assert diff(second.upper, second.layers) == [("C", "/etc"), ("D", "/etc/isl-added")]
    assert (image.rootfs / "etc" / "issue").exists()  # the base layer is untouched
    assert [entry.name for entry in store.list()] == ["base", name]
    store.remove(name)
    assert [entry.name for entry in store.list()] == ["base"]


def test_many_containers_share_the_base_layer(image, require_root):
    with Container(InstanceSpec(), [image.rootfs]) as a, Container(InstanceSpec(), [image.rootfs]) as b:
        a.start()
        b.start()
        assert a.exec(["sh", "-c", "head -c 1000000 /dev/zero > /tmp/blob"]).ok
        assert a.disk_usage_bytes() >= 1_000_000
        assert b.disk_usage_bytes() < 100_000
        assert a.exec(["ls", "/tmp"]).stdout.split() == ["blob"]
        assert b.exec(["ls", "/tmp"]).stdout.split() == []
