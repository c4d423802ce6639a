"""Storage drivers chosen per instance and as a platform variant `name[variant]` the harness passes through
without knowing what the variant means."""

from __future__ import annotations

import pytest

from bench.config import parse_selection
from runtime.container.storage import DRIVER_NAMES, get_driver
from runtime.errors import SpecError
from runtime.platform import load_platform, split_variant, validate_platform_names
from runtime.spec import InstanceSpec


def test_spec_takes_a_known_driver_and_refuses_an_unknown_one():
    assert InstanceSpec().storage_driver == "overlay"
    assert InstanceSpec(storage_driver="btrfs").storage_driver == "btrfs"
    with pytest.raises(SpecError, match="unknown storage driver 'zfs': choose one of overlay, btrfs, vfs"):
        InstanceSpec(storage_driver="zfs")
    assert "storage_driver" not in InstanceSpec(storage_driver="vfs").limits()


def test_variant_names_split_generically():
    assert split_variant("container[btrfs]") == ("container", "btrfs")
    assert split_variant("vm") == ("vm", None)
    assert split_variant("a[b]c") == ("a[b]c", None)


def test_registry_validates_variants_through_the_platform():
    assert validate_platform_names(["container[btrfs]", "vm"]) == ["container[btrfs]", "vm"]
    with pytest.raises(SpecError, match=r"container\[zfs\]: unknown storage driver"):
        validate_platform_names(["container[zfs]"])
    with pytest.raises(SpecError, match="has no variants"):
        validate_platform_names(["native[btrfs]"])
    with pytest.raises(SpecError, match="unknown platform"):
        validate_platform_names(["nosuch[btrfs]"])
    assert validate_platform_names(["container-userns[btrfs]"]) == ["container-userns[btrfs]"]
    config = parse_selection("container[vfs],native", "cpu", "quick", None)
    assert config.platforms == ("container[vfs]", "native")


@pytest.mark.parametrize("driver", DRIVER_NAMES)
def test_variant_describes_its_driver(driver):
    platform = load_platform(f"container[{driver}]", image=None)
    info = platform.describe()
    assert info.name == f"container[{driver}]"
    assert driver in info.label and get_driver(driver).mechanism in info.mechanism
    assert load_platform("container", image=None).describe().name == "container"


def test_unavailable_driver_says_why_in_one_line():
    for name in DRIVER_NAMES:
        reason = get_driver(name).unavailable()
        assert reason is None or (reason and "\n" not in reason), name
