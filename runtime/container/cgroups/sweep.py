"""The cgroup sweep: remove the `isolab/<instance>` cgroups (v1: in every hierarchy, and the cgroup2 mount of a
hybrid host; v2: the unified tree) of instances that are no longer live, with any cgroups below them, killing
what still runs in them, then the empty parents."""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from pathlib import Path

from runtime.container.cgroups.base import kill_procs, read, rmdir_retry, thaw
from runtime.container.cgroups.detect import CGROUP_ROOT, _hierarchies, cgroup_version
from runtime.errors import PlatformUnavailable
from runtime.naming import CGROUP_PARENT

_INSTANCE = re.compile(r"[a-z]+-[0-9a-f]{8}")  # runtime.naming.new_instance_id


def cgroup_parents() -> list[Path]:
    """The `isolab` parent cgroup in each hierarchy of this host (whether or not it exists)."""
    try:
        if cgroup_version() == 2:
            return [CGROUP_ROOT / CGROUP_PARENT]
    except PlatformUnavailable:
        return []
    roots = {root / CGROUP_PARENT for root in _hierarchies().values()}
    unified = CGROUP_ROOT / "unified"  # hybrid layout: the device-filter test and benchmark use its cgroup2
    if (unified / "cgroup.procs").exists():
        roots.add(unified / CGROUP_PARENT)
    return sorted(roots)


def sweep_cgroups(live: Callable[[str], bool], timeout: float = 20.0) -> list[str]:
    """Remove every `isolab/<instance id>` cgroup for which live(id) is False, killing its processes, and
    other empty cgroups under `isolab/`; returns the removed paths.

    All dead cgroups of all hierarchies are emptied first and removed after: a killed workload may take
    seconds to exit on a loaded host (unmapping its memory), and v1 keeps one cgroup per hierarchy."""
    removed: list[str] = []
    dead: list[Path] = []
    for parent in cgroup_parents():
        if not parent.is_dir():
            continue
        for child in sorted(p for p in parent.iterdir() if p.is_dir()):
            if not _INSTANCE.fullmatch(child.name):
                # not an instance's (e.g. a benchmark's own cgroup): removed only when nothing runs in it
                if not read(child / "cgroup.procs").split() and rmdir_retry(child, timeout=0.1):
                    removed.append(str(child))
            elif not live(child.name):
                thaw(child)  # a run killed while an instance was frozen (interleaved) leaves it frozen
                tree = _deepest_first(child)
                for path in tree:
                    kill_procs(path / "cgroup.procs")
                dead += tree
    deadline = time.monotonic() + timeout
    for child in dead:
        kill_procs(child / "cgroup.procs")  # (a process may have been forked into it meanwhile)
        if rmdir_retry(child, timeout=max(0.1, deadline - time.monotonic())):
            removed.append(str(child))
    for parent in cgroup_parents():
        if parent.is_dir() and not any(p.is_dir() for p in parent.iterdir()) and rmdir_retry(parent, timeout=0.1):
            removed.append(str(parent))
    return removed


def _deepest_first(cgroup: Path) -> list[Path]:
    """A cgroup and the cgroups below it (LXC puts its processes in a child of the instance's), children
    before parents: a cgroup with a child cannot be removed."""
    below = [p for p in cgroup.rglob("*") if p.is_dir()]
    return [*sorted(below, key=lambda p: len(p.parts), reverse=True), cgroup]
