"""Names of everything isolab creates on a host, so that `cleanup` can find leftovers of a crashed run.

Network links and namespaces start with `isl` (interface names are at most 15 bytes), cgroups live
under `isolab/`, libvirt domains and networks start with `isolab-`, state and mounts live under
/run/isolab/, images under the cache directory.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from runtime.linux.process import pid_alive

LINK_PREFIX = "isl"
NETNS_PREFIX = "isl"
CGROUP_PARENT = "isolab"
LIBVIRT_PREFIX = "isolab-"
STATE_ROOT = Path(os.environ.get("ISOLAB_STATE_DIR", "/run/isolab"))
CACHE_ROOT = Path(os.environ.get("ISOLAB_CACHE_DIR", "/var/cache/isolab"))
SCRATCH_ROOT = Path(os.environ.get("ISOLAB_SCRATCH_DIR", "/var/tmp/isolab"))
IFNAMSIZ = 15
OWNER_FILE = "owner.pid"  # in an instance's state dir: the process that runs it; cleanup spares live owners


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


def write_owner(state: Path) -> None:
    (state / OWNER_FILE).write_text(f"{os.getpid()}\n")


def owner_alive(state: Path) -> int | None:
    """The pid of the live process (other than this one) that owns the state dir `state`, else None.

    Cleanup removes a state dir only when this is None: its owner died (a crash) or is ourselves."""
    try:
        pid = int((state / OWNER_FILE).read_text().strip())
    except (OSError, ValueError):
        return None
    if pid == os.getpid():
        return None
    return pid if pid_alive(pid) else None
