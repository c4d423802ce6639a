"""What isolab left on this host, as the integration tests check it: every object named by isolab's
prefixes that belongs to no live process (a dead run's), however the objects were made; and the
environment for running `python -m bench` from the repository in a test."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from runtime import state
from runtime.linux.process import process_cmdline, process_root, processes
from runtime.naming import CGROUP_PARENT, LINK_PREFIX, SCRATCH_ROOT, STATE_ROOT, VM_STATE_ROOT

REPO = Path(__file__).resolve().parents[2]


def bench_env(results: Path, **extra: str) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(REPO), "ISOLAB_RESULTS_DIR": str(results), **extra}


def _mine_or_dead(path: Path) -> bool:
    """True when no *other* live process owns this instance dir (a run or test session beside us may)."""
    return not state.is_live(path) and not state.is_kept(path)


def _live_tokens() -> set[str]:
    return {p.name.rsplit("-", 1)[1] for root in (STATE_ROOT, VM_STATE_ROOT) for p in state.instances(root)
            if not _mine_or_dead(p)}


def owned_tokens(pids: set[int]) -> set[str]:
    """Id tokens of the instances these processes own right now (their links, netns, cgroups carry them)."""
    return {p.name.rsplit("-", 1)[1] for root in (STATE_ROOT, VM_STATE_ROOT) for p in state.instances(root)
            if state.owner_pid(p) in pids}


def leftovers(results: Path | None = None, tokens: set[str] | None = None) -> list[str]:
    """What isolab made that belongs to no live process (a dead run's objects); with `tokens`, only the
    objects of those instances (and processes tied to `results`): other test sessions or runs on a shared
    host may leave their own, which are not the tested run's."""
    found = _leftovers(results)
    if tokens is None:
        return found
    return [item for item in found if any(t in item for t in tokens)
            or (item.startswith("process ") and results is not None and str(results) in item)
            or item == "nft table ip isolab"]


def _leftovers(results: Path | None) -> list[str]:
    live = _live_tokens()
    found = [f"state {p}" for root in (STATE_ROOT, VM_STATE_ROOT) for p in state.instances(root)
             if _mine_or_dead(p)]
    found += [f"scratch {p}" for p in state.instances(SCRATCH_ROOT) if p.name.rsplit("-", 1)[1] not in live]
    for line in open("/proc/self/mountinfo"):
        point = line.split()[4]
        for root in (STATE_ROOT, SCRATCH_ROOT):
            if point.startswith(f"{root}/"):
                name = Path(point).relative_to(root).parts[0]  # whose: the state dir of that name
                if name != "oci-startbench" and _mine_or_dead(STATE_ROOT / name):
                    found.append(f"mount {point}")
    for cgroup in Path("/sys/fs/cgroup").glob(f"*/{CGROUP_PARENT}/*-*"):
        if cgroup.is_dir() and state._ID.fullmatch(cgroup.name) and cgroup.name.rsplit("-", 1)[-1] not in live:
            found.append(f"cgroup {cgroup}")
    for link in Path("/sys/class/net").iterdir():
        if link.name.startswith(LINK_PREFIX) and not (link / "bridge").is_dir() and link.name[3:11] not in live:
            found.append(f"link {link.name}")
    netns = Path("/run/netns")
    for ns in netns.iterdir() if netns.is_dir() else []:
        if ns.name.startswith(LINK_PREFIX) and ns.name[3:11] not in live:
            found.append(f"netns {ns.name}")
    if not live and subprocess.run(["nft", "list", "table", "ip", "isolab"], capture_output=True).returncode == 0:
        found.append("nft table ip isolab")
    domains = subprocess.run(["virsh", "-c", "qemu:///system", "list", "--all", "--name"], capture_output=True,
                             text=True, timeout=60).stdout.split()
    found += [f"domain {d}" for d in domains if d.startswith("isolab-vm-") and d.rsplit("-", 1)[1] not in live]
    for pid in processes():
        root = process_root(pid) or ""
        if root.startswith(f"{STATE_ROOT}/") and Path(root).relative_to(STATE_ROOT).parts[0][-8:] not in live:
            found.append(f"process {pid} chrooted in {root}")
        elif results is not None and any(str(results) in a for a in process_cmdline(pid)):
            found.append(f"process {pid}: {' '.join(process_cmdline(pid))[:100]}")
    return found
