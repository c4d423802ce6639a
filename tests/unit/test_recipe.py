"""The image recipe hash: stable, order-insensitive for packages, sensitive to content."""

from dataclasses import replace

from runtime.image.recipe import Recipe


def test_digest_is_stable():
    assert Recipe().digest() == Recipe().digest()
    assert len(Recipe().digest()) == 16


def test_package_order_does_not_matter():
    recipe = Recipe()
    assert replace(recipe, packages=tuple(reversed(recipe.packages))).digest() == recipe.digest()


def test_content_changes_change_the_digest():
    recipe = Recipe()
    assert replace(recipe, packages=(*recipe.packages, "htop")).digest() != recipe.digest()
    assert replace(recipe, suite="trixie").digest() != recipe.digest()
    assert replace(recipe, initramfs_modules=("ext4",)).digest() != recipe.digest()
    assert replace(recipe, ext4_headroom_mib=1).digest() != recipe.digest()


def test_recipe_names_the_workload_tools():
    packages = set(Recipe().packages)
    assert {"fio", "iozone3", "iperf3", "netperf", "sockperf", "stress-ng", "sysbench", "procps",
            "linux-image-amd64", "qemu-guest-agent"} <= packages
    assert "non-free" in Recipe().components
