"""Find and remove what a crashed (e.g. SIGKILLed) runtime left: processes, cgroups, veths, netns,
address reservations, nat publications (the nftables table `ip isolab` and the suite bridges' forwarding
flags), state dirs and writable layers. Only container (`ct-*`) and network (`peer-*`,
`isl*` veths and netns, an unused suite bridge) objects are touched; objects whose owning process
is still alive are left alone unless `everything` is set.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

from runtime.container.cgroups import make_cgroup
from runtime.container.cgroups.base import kill_procs, rmdir_retry
from runtime.container.cgroups.detect import CGROUP_ROOT, _hierarchies, cgroup_version
from runtime.linux import syscalls as sc
from runtime.linux.process import pid_alive
from runtime.naming import CGROUP_PARENT, LINK_PREFIX, SCRATCH_ROOT, STATE_ROOT
from runtime.network.bridge import NET_STATE, bridge_ports, live_reservations, release_owner, remove_bridge
from runtime.network.nat import cleanup_publications


def _state(path: Path) -> dict[str, object]:
    try:
        return json.loads((path / "state.json").read_text())
    except (OSError, json.JSONDecodeError):
        return {}


YOUNG_S = 60.0  # a state dir this young without a readable state.json is still being created


def _is_live(state: Path, everything: bool = False) -> bool:
    """Whether the container/peer with this state dir belongs to a running process (checked now, not
    from a snapshot: another process may be creating containers while we sweep)."""
    if everything or not state.is_dir():
        return False
    data = _state(state)
    if not data:
        try:
            return time.time() - state.stat().st_mtime < YOUNG_S
        except OSError:
            return False
    return pid_alive(data.get("owner_pid"))


def _token_live(token: str, everything: bool) -> bool:
    return any(_is_live(STATE_ROOT / f"{kind}-{token}", everything) for kind in ("ct", "peer"))


def _cgroup_roots() -> list[Path]:
    if cgroup_version() == 2:
        return [CGROUP_ROOT / CGROUP_PARENT]
    roots = {root / CGROUP_PARENT for root in _hierarchies().values()}
    unified = CGROUP_ROOT / "unified"  # hybrid layout: the device-filter test and benchmark use its cgroup2
    if (unified / "cgroup.procs").exists():
        roots.add(unified / CGROUP_PARENT)
    return sorted(roots)


def _remove_container(instance_id: str, data: dict[str, object]) -> list[str]:
    removed = []
    cgroup = make_cgroup(instance_id)
    cgroup.kill_all()
    for path in cgroup.paths():
        if path.exists() and rmdir_retry(path):
            removed.append(str(path))
    for key in ("net_bridge", "net_suite_bridge"):  # nat mode also holds an address on the suite bridge
        bridge = data.get(key)
        if isinstance(bridge, str):
            release_owner(bridge, instance_id)
    state = STATE_ROOT / instance_id
    removed += sc.detach_all_under(state)
    for path in (state, SCRATCH_ROOT / instance_id):
        if path.exists():
            shutil.rmtree(path, ignore_errors=True)
            removed.append(str(path))
    return removed


def _remove_network(everything: bool) -> list[str]:
    from pyroute2 import IPRoute, netns

    removed = []
    for name in netns.listnetns():
        if name.startswith(LINK_PREFIX) and not _token_live(name[3:11], everything):
            netns.remove(name)
            removed.append(f"netns {name}")
    with IPRoute() as ipr:
        for link in ipr.get_links():
            name = link.get_attr("IFLA_IFNAME") or ""
            info = link.get_attr("IFLA_LINKINFO")
            kind = info.get_attr("IFLA_INFO_KIND") if info is not None else None
            if kind == "veth" and name.startswith(LINK_PREFIX) and not _token_live(name[3:11], everything):
                ipr.link("del", index=link["index"])
                removed.append(f"link {name}")
    removed += cleanup_publications(everything)  # nat: DNAT table `ip isolab`, forwarding flags
    for bridge in _suite_bridges():
        if not bridge_ports(bridge) and not live_reservations(bridge):
            remove_bridge(bridge)
            removed.append(f"bridge {bridge}")
    return removed


def _suite_bridges() -> list[str]:
    net = Path("/sys/class/net")
    return sorted(p.name for p in net.iterdir() if p.name.startswith(LINK_PREFIX) and (p / "bridge").is_dir())


def cleanup(everything: bool = False) -> list[str]:
    """Remove leftovers; returns a line per removed object."""
    removed: list[str] = []
    if STATE_ROOT.is_dir():
        for path in sorted(STATE_ROOT.glob("ct-*")):
            if not _is_live(path, everything):
                removed += _remove_container(path.name, _state(path))
        for path in sorted(STATE_ROOT.glob("peer-*")):
            data = _state(path)
            if not _is_live(path, everything):
                bridge = data.get("bridge")
                if isinstance(bridge, str):
                    release_owner(bridge, path.name)
                shutil.rmtree(path, ignore_errors=True)
                removed.append(str(path))
    if SCRATCH_ROOT.is_dir():
        for path in sorted(SCRATCH_ROOT.glob("ct-*")):
            if not (STATE_ROOT / path.name).exists():
                shutil.rmtree(path, ignore_errors=True)
                removed.append(str(path))
    for parent in _cgroup_roots():
        if not parent.is_dir():
            continue
        for child in sorted(p for p in parent.iterdir() if p.is_dir()):
            if not _token_live(child.name.rsplit("-", 1)[-1], everything):
                kill_procs(child / "cgroup.procs")
                if rmdir_retry(child):
                    removed.append(str(child))
        if not any(p.is_dir() for p in parent.iterdir()) and rmdir_retry(parent):
            removed.append(str(parent))
    removed += _remove_network(everything)
    for directory in (NET_STATE, STATE_ROOT, SCRATCH_ROOT):
        try:
            directory.rmdir()  # only when empty: other platforms' state stays
        except OSError:
            pass
    return removed
