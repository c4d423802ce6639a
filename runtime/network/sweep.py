"""The network sweep: what dead runs left of the suite's network, removed without touching live runs.

Named namespaces `isl…` (and the processes still running in them), veth and tap links `isl…`, address
reservations in the bridges' books, nat publications (nftables table `ip isolab`, host addresses,
forwarding flags) and suite bridges nobody uses any more. Every object is named after its instance's
id token (runtime.naming.link_name); `live(token)` says whether that instance still belongs to a
running process (runtime.state).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from runtime.linux.process import kill_matching, process_netns_inode
from runtime.naming import LINK_PREFIX
from runtime.network.bridge import NET_STATE, release_dead, remove_bridge_if_unused
from runtime.network.nat import cleanup_publications
from runtime.network.netns import NETNS_DIR, remove_netns


def _token(name: str) -> str:
    return name[len(LINK_PREFIX):len(LINK_PREFIX) + 8]


def suite_bridges() -> list[str]:
    net = Path("/sys/class/net")
    return sorted(p.name for p in net.iterdir() if p.name.startswith(LINK_PREFIX) and (p / "bridge").is_dir())


def sweep_netns(live: Callable[[str], bool]) -> list[str]:
    removed: list[str] = []
    names = sorted(os.listdir(NETNS_DIR)) if NETNS_DIR.is_dir() else []
    for name in names:
        if not name.startswith(LINK_PREFIX) or live(_token(name)):
            continue
        try:
            inode = os.stat(NETNS_DIR / name).st_ino
        except OSError:
            inode = None
        if inode is not None:  # processes of a dead peer (iperf3 -s, netserver) still run in it
            removed += kill_matching(lambda pid, i=inode, n=name: f"in netns {n}"
                                     if process_netns_inode(pid) == i else None)
        remove_netns(name)
        removed.append(f"netns {name}")
    return removed


def sweep_links(live: Callable[[str], bool]) -> list[str]:
    """veth pairs and VM taps named `isl<token>…` of dead instances."""
    from pyroute2 import IPRoute
    from pyroute2.netlink.exceptions import NetlinkError

    removed: list[str] = []
    with IPRoute() as ipr:
        for link in ipr.get_links():
            name = link.get_attr("IFLA_IFNAME") or ""
            info = link.get_attr("IFLA_LINKINFO")
            kind = info.get_attr("IFLA_INFO_KIND") if info is not None else None
            if kind in ("veth", "tun") and name.startswith(LINK_PREFIX) and not live(_token(name)):
                try:
                    ipr.link("del", index=link["index"])
                except NetlinkError:
                    continue  # gone meanwhile
                removed.append(f"link {name}")
    return removed


def sweep_network(live: Callable[[str], bool], everything: bool = False) -> list[str]:
    """Everything above, in an order that frees each object before what it hangs on."""
    removed = sweep_netns(live) + sweep_links(live)
    books = sorted(p.stem for p in NET_STATE.glob("*.json") if p.stem != "nat") if NET_STATE.is_dir() else []
    for bridge in books:
        removed += [f"address of {owner} on {bridge}" for owner in release_dead(bridge, everything)]
    removed += cleanup_publications(everything)
    for bridge in suite_bridges():
        if remove_bridge_if_unused(bridge):
            removed.append(f"bridge {bridge}")
    return removed
