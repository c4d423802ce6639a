"""Storage drivers of the container runtime: how an instance's root is made from its image's layers.

One interface (runtime.container.storage.base.StorageDriver), one layer format for diff and commit
(runtime.container.storage.changes), and these drivers, chosen per instance
(`InstanceSpec(storage_driver=...)`, `python -m runtime run --storage-driver ...`, the harness's
platform variant `container[btrfs]`):

- `overlay` (the default): the image's layers as overlayfs lower layers, a writable upper dir per instance;
- `btrfs`: each image a read-only subvolume (imported once per image), each instance a writable snapshot,
  on the host's btrfs or on a loop-mounted image file the driver makes on demand and removes when unused;
- `vfs`: a full copy of the image per instance (no copy-on-write at all: the baseline);
- `devicemapper`: thin-provisioned snapshots, only where the kernel has dm-thin (says why not otherwise).
"""

from __future__ import annotations

import importlib

from runtime.container.storage.base import InstanceRoot, StorageDriver
from runtime.errors import SpecError

DEFAULT_DRIVER = "overlay"
# name -> "module:Class" (imported on demand)
DRIVERS: dict[str, str] = {
    "overlay": "runtime.container.storage.overlay:OverlayDriver",
    "btrfs": "runtime.container.storage.btrfs:BtrfsDriver",
    "vfs": "runtime.container.storage.vfs:VfsDriver",
    "devicemapper": "runtime.container.storage.devicemapper:DevicemapperDriver",
}
DRIVER_NAMES: tuple[str, ...] = tuple(DRIVERS)


def validate_driver(name: str) -> str:
    if name not in DRIVERS:
        raise SpecError(f"unknown storage driver {name!r}: choose one of {', '.join(DRIVERS)}")
    return name


_LOADED: dict[str, StorageDriver] = {}


def get_driver(name: str) -> StorageDriver:
    """The driver object for `name` (one per process); SpecError for an unknown name."""
    validate_driver(name)
    if name not in _LOADED:
        module_name, class_name = DRIVERS[name].split(":")
        _LOADED[name] = getattr(importlib.import_module(module_name), class_name)()
    return _LOADED[name]


__all__ = ["DEFAULT_DRIVER", "DRIVERS", "DRIVER_NAMES", "InstanceRoot", "StorageDriver", "get_driver",
           "validate_driver"]
