"""veth pairs into the bridge and the tc token-bucket quota on a link.

Names come from runtime.naming.link_name, so `cleanup` finds every link by its `isl` prefix.
"""

from __future__ import annotations

from typing import Any

from runtime.errors import InstanceError


def _burst_bytes(rate_bits: int) -> int:
    # veth passes 64 KiB GSO segments: the bucket must hold a few of them or tbf drops everything.
    return max(rate_bits // 8 // 100, 4 * 65536)


def add_veth_to_bridge(ipr: Any, host_name: str, peer_name: str, bridge_name: str,
                       peer_netns_pid: int | None = None, peer_netns_fd: int | None = None) -> None:
    """Create veth host_name<->peer_name, enslave host_name to the bridge, move the peer to a netns."""
    from pyroute2.netlink.exceptions import NetlinkError

    peer: dict[str, object] = {"ifname": peer_name}
    if peer_netns_pid is not None:
        peer["net_ns_pid"] = peer_netns_pid
    if peer_netns_fd is not None:
        peer["net_ns_fd"] = peer_netns_fd
    try:
        ipr.link("add", ifname=host_name, kind="veth", peer=peer)
        bridge = ipr.link_lookup(ifname=bridge_name)
        if not bridge:
            raise InstanceError(f"bridge {bridge_name} does not exist (ensure_bridge first)")
        index = ipr.link_lookup(ifname=host_name)[0]
        ipr.link("set", index=index, master=bridge[0], state="up")
    except NetlinkError as exc:
        raise InstanceError(f"cannot create veth {host_name}<->{peer_name} on {bridge_name}: "
                            f"netlink RTM_NEWLINK: {exc}") from exc


def configure_inside(ipr: Any, ifname: str, new_name: str, address: str, prefixlen: int,
                     gateway: str | None) -> None:
    """Inside a netns: rename the link, give it its address, bring it and lo up, route via the gateway."""
    index = ipr.link_lookup(ifname=ifname)[0]
    if new_name != ifname:
        ipr.link("set", index=index, ifname=new_name)
    ipr.addr("add", index=index, address=address, prefixlen=prefixlen)
    ipr.link("set", index=index, state="up")
    lo = ipr.link_lookup(ifname="lo")
    if lo:
        ipr.link("set", index=lo[0], state="up")
    if gateway:
        ipr.route("add", dst="0.0.0.0/0", gateway=gateway)


def set_rate_limit(ipr: Any, ifname: str, rate_bits: int) -> None:
    """Egress token bucket (tbf) of `rate_bits` bits/s on `ifname`."""
    from pyroute2.netlink.exceptions import NetlinkError

    found = ipr.link_lookup(ifname=ifname)
    if not found:
        raise InstanceError(f"tc: link {ifname} not found")
    try:
        ipr.tc("add", "tbf", index=found[0], handle="1:", rate=f"{rate_bits}bit",
               burst=_burst_bytes(rate_bits), latency="50ms")
    except NetlinkError as exc:
        raise InstanceError(f"tc qdisc add tbf on {ifname} ({rate_bits} bit/s): {exc}") from exc


def delete_link(ipr: Any, ifname: str) -> bool:
    """Delete a link if present; True if it was there."""
    from pyroute2.netlink.exceptions import NetlinkError

    found = ipr.link_lookup(ifname=ifname)
    if not found:
        return False
    try:
        ipr.link("del", index=found[0])
    except NetlinkError:
        return False  # vanished meanwhile (e.g. its netns died)
    return True
