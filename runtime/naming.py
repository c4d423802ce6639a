"""Names of everything isolab creates on a host, so that `cleanup` can find leftovers of a crashed run.

Network links and namespaces start with `isl` (interface names are at most 15 bytes), cgroups live
under `isolab/`, libvirt domains and networks start with `isolab-`, state and mounts live under
/run/isolab/, images under the cache directory.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

LINK_PREFIX = "isl"
NETNS_PREFIX = "isl"
CGROUP_PARENT = "isolab"
LIBVIRT_PREFIX = "isolab-"
STATE_ROOT = Path(os.environ.get("ISOLAB_STATE_DIR", "/run/isolab"))
CACHE_ROOT = Path(os.environ.get("ISOLAB_CACHE_DIR", "/var/cache/isolab"))
SCRATCH_ROOT = Path(os.environ.get("ISOLAB_SCRATCH_DIR", "/var/tmp/isolab"))
VM_STATE_ROOT = Path(os.environ.get("ISOLAB_VM_DIR", "/var/lib/isolab/vm"))  # VM state and disk images
IFNAMSIZ = 15


def new_instance_id(kind: str) -> str:
    """A short unique id such as 'ct-3fa2b1c0'; short enough to build link names from."""
    return f"{kind}-{secrets.token_hex(4)}"


def link_name(instance_id: str, suffix: str = "") -> str:
    """An interface name for an instance: 'isl' + 8 hex chars + suffix, at most 15 bytes."""
    token = instance_id.rsplit("-", 1)[-1]
    name = f"{LINK_PREFIX}{token}{suffix}"
    if len(name) > IFNAMSIZ:
        raise ValueError(f"interface name {name!r} is longer than {IFNAMSIZ} bytes")
    return name


def state_dir(instance_id: str) -> Path:
    return STATE_ROOT / instance_id


def scratch_dir(instance_id: str) -> Path:
    return SCRATCH_ROOT / instance_id
