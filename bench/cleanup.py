"""`python -m bench cleanup`: remove what dead runs left on this host.

runtime.sweep does the work for every instance kind (processes, domains, cgroups, mounts, state dirs,
network objects), sparing live runs by their owner records (runtime.state); interrupted image builds
are removed when no build is running (runtime.image.build.sweep_partial_builds). A platform with
leftovers of its own beyond those (a platform's cleanup_leftovers) is asked too.
"""

from __future__ import annotations

from runtime.errors import IsolabError, PlatformUnavailable
from runtime.image.build import sweep_partial_builds
from runtime.platform import load_platform, platform_names
from runtime.sweep import sweep
from scenarios import hostmarkers


def cleanup_host() -> list[str]:
    removed: list[str] = []
    problems: list[str] = []
    try:
        removed += hostmarkers.sweep_leftovers()  # before sweep(): it reads the markers' records
        removed += sweep()
    except Exception as exc:  # report, and still try the rest
        problems.append(f"sweep: {exc}")
    for name in platform_names():
        try:
            removed += load_platform(name, image=None).cleanup_leftovers()
        except PlatformUnavailable:
            continue
        except Exception as exc:  # one platform's trouble must not stop the others' cleanup
            problems.append(f"{name}: {exc}")
    removed += sweep_partial_builds()
    if problems:
        raise IsolabError(f"cleanup removed {len(removed)} item(s) but failed on {'; '.join(problems)}")
    return removed
