"""Find and remove what crashed runs left on this host, by isolab's naming prefixes (runtime.naming).

Each platform removes its own leftovers (native: /run/isolab/nat-*; container: mounts, cgroups,
links, netns; vm: libvirt domains, overlays), sparing instances whose owning process is alive; then
empty state dirs, orphaned scratch dirs and interrupted image builds are deleted.
"""

from __future__ import annotations

import shutil

from runtime.errors import IsolabError, PlatformUnavailable
from runtime.image.store import ImageStore
from runtime.linux import syscalls
from runtime.naming import SCRATCH_ROOT, STATE_ROOT
from runtime.platform import load_platform, platform_names


def cleanup_host() -> list[str]:
    removed: list[str] = []
    problems: list[str] = []
    for name in platform_names():
        try:
            platform = load_platform(name, image=None)
            removed += platform.cleanup_leftovers()
        except PlatformUnavailable:
            continue
        except Exception as exc:  # one platform's trouble must not stop the others' cleanup
            problems.append(f"{name}: {exc}")
    # What the platforms kept belongs to live runs; only empty state dirs and scratch dirs whose
    # instance state is gone are swept here.
    if STATE_ROOT.is_dir():
        for entry in STATE_ROOT.iterdir():
            if entry.is_dir() and not any(entry.iterdir()) and not syscalls.mounts_under(entry):
                entry.rmdir()
                removed.append(str(entry))
    if SCRATCH_ROOT.is_dir():
        for entry in SCRATCH_ROOT.iterdir():
            if not (STATE_ROOT / entry.name).exists():
                shutil.rmtree(entry, ignore_errors=True)
                removed.append(str(entry))
    for partial in ImageStore().partial_dirs():
        shutil.rmtree(partial, ignore_errors=True)
        removed.append(str(partial))
    if problems:
        raise IsolabError(f"cleanup removed {len(removed)} item(s) but failed on {'; '.join(problems)}")
    return removed
