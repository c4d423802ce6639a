"""Which cgroup version this host offers, and the matching Cgroup implementation.

v2 is chosen when /sys/fs/cgroup is a cgroup2 mount with controllers (a modern unified host); on a
hybrid host (v1 controllers plus an empty cgroup2 at /sys/fs/cgroup/unified, like this one) v1 is used.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path

from runtime.container.cgroups.base import Cgroup, read
from runtime.container.cgroups.v1 import CgroupV1, needed_controllers, v1_hierarchies
from runtime.container.cgroups.v2 import CgroupV2
from runtime.errors import PlatformUnavailable
from runtime.spec import InstanceSpec

CGROUP_ROOT = Path("/sys/fs/cgroup")


@functools.cache
def cgroup_version() -> int:
    """2 for a unified host, 1 when v1 controller hierarchies are mounted."""
    forced = os.environ.get("ISOLAB_CGROUP_VERSION")
    if forced in ("1", "2"):
        return int(forced)
    if read(CGROUP_ROOT / "cgroup.controllers").split():
        return 2
    if _hierarchies():
        return 1
    raise PlatformUnavailable("no usable cgroup controllers: neither v2 at /sys/fs/cgroup nor v1 hierarchies")


@functools.cache
def _hierarchies() -> dict[str, Path]:
    return v1_hierarchies()


def make_cgroup(name: str, spec: InstanceSpec | None = None) -> Cgroup:
    """The Cgroup for instance `name` on this host (not yet created); v1 joins only the hierarchies the
    spec needs (all of them when spec is None)."""
    if cgroup_version() == 2:
        return CgroupV2(name, CGROUP_ROOT)
    return CgroupV1(name, _hierarchies(), needed_controllers(spec))
