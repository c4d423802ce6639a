"""`cleanup`: remove what dead runs left on this host, every kind of object, never a live run's.

One pass, one sweep per resource kind, in the order that frees each object before what it hangs on:
processes of dead instances (chrooted under their state dirs), libvirt domains and VM dirs
(runtime.vm.sweep), cgroups (runtime.container.cgroups.sweep), mounts and state dirs, loop devices
of disk quotas (runtime.container.quota), storage roots and pools (runtime.container.storage.sweep),
network objects (runtime.network.sweep), orphaned scratch dirs, idle lock files and empty roots.

Whether an instance is dead is decided by runtime.state alone: its owner record (pid and start time)
names no running process. Every object the suite makes is created after its instance's state dir and
removed before it, so a sweep that runs beside a live run (another `python -m bench run`, the tests)
finds that run's state dir first and leaves all its objects alone. `everything` removes live runs'
objects too (for `python -m runtime cleanup --all`). Instances stopped and kept on purpose (a container
after `python -m runtime run` without `--rm`, for `commit`/`diff`/`rm`) are not leftovers either.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from runtime import state
from runtime.linux import syscalls as sc
from runtime.linux.process import kill_matching, process_root
from runtime.naming import SCRATCH_ROOT, STATE_ROOT, VM_STATE_ROOT

ROOTS = (STATE_ROOT, VM_STATE_ROOT)


def _token(name: str) -> str:
    return name.rsplit("-", 1)[-1]


def sweep(everything: bool = False, vm_conn: object | None = None, vms: bool = True) -> list[str]:
    """Remove leftovers of dead runs (of every run with `everything`); a line per removed object."""

    def live_token(token: str) -> bool:
        return not everything and state.token_live(token, ROOTS)

    removed: list[str] = []
    dead = [p for p in state.instances(STATE_ROOT)
            if everything or not (state.is_live(p) or state.is_kept(p))]
    removed += _kill_chrooted(dead)
    if vms:
        removed += _sweep_vms(vm_conn, everything)
    removed += _sweep_cgroups(live_token)
    for path in dead:
        removed += sc.detach_all_under(path)
        shutil.rmtree(path, ignore_errors=True)
        removed.append(str(path))
        scratch = SCRATCH_ROOT / path.name
        if scratch.exists():
            shutil.rmtree(scratch, ignore_errors=True)
            removed.append(str(scratch))
    from runtime.container.quota import sweep_loops

    # loop devices of disk quotas whose instance is gone (normally autoclear freed them with the mount)
    removed += sweep_loops(lambda iid: not everything and (STATE_ROOT / iid).exists())
    from runtime.container.storage.sweep import sweep_storage

    removed += sweep_storage(everything)  # roots outside the scratch dirs (btrfs snapshots), unused pools
    from runtime.network.sweep import sweep_network

    removed += sweep_network(live_token, everything)
    for scratch in state.instances(SCRATCH_ROOT):
        if not (STATE_ROOT / scratch.name).exists():  # made after its state dir, removed before it
            shutil.rmtree(scratch, ignore_errors=True)
            removed.append(str(scratch))
    removed += state.drop_idle_locks()
    state.remove_empty_dirs(STATE_ROOT / "net", STATE_ROOT, SCRATCH_ROOT)
    return removed


def _kill_chrooted(dead: list[Path]) -> list[str]:
    """Processes still chrooted under a dead instance's state dir (a native workload of a killed run)."""
    if not dead:
        return []
    prefixes = tuple(f"{p}/" for p in dead)

    def match(pid: int) -> str | None:
        root = process_root(pid)
        if root and (root + "/").startswith(prefixes):
            return f"chrooted in {root}"
        return None

    return kill_matching(match)


def _sweep_vms(conn: object | None, everything: bool) -> list[str]:
    try:
        from runtime.vm.sweep import sweep_vms
    except ImportError as exc:  # libvirt-python missing: there can be no isolab domains either
        return [f"(domains not checked: {exc})"] if VM_STATE_ROOT.is_dir() else []
    return sweep_vms(conn, everything=everything)


def _sweep_cgroups(live_token: object) -> list[str]:
    from runtime.container.cgroups.sweep import sweep_cgroups

    return sweep_cgroups(lambda name: live_token(_token(name)))  # type: ignore[operator]
