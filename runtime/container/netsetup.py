"""A container's network: `none` (own empty netns with lo up), `host` (the host's netns), or `bridge`
(a veth `isl<id>` on the suite's bridge, `eth0` inside with its own address, optional tc quota).

The inside of the container's netns is configured from the runtime over a netlink socket that was
opened while the calling thread had temporarily joined that netns (no helper process is spawned).
"""

from __future__ import annotations

import fcntl
import socket
import struct
from typing import Any

from runtime.errors import InstanceError
from runtime.naming import link_name
from runtime.network.bridge import (
    DEFAULT_BRIDGE,
    DEFAULT_SUBNET,
    Bridge,
    allocate_address,
    ensure_bridge,
    release_address,
    release_owner,
)
from runtime.network.links import add_veth_to_bridge, configure_inside, delete_link, set_rate_limit
from runtime.network.netns import netlink_socket_in
from runtime.spec import InstanceSpec

_SIOCGIFFLAGS = 0x8913
_SIOCSIFFLAGS = 0x8914
_IFF_UP = 0x1


def loopback_up_here() -> None:
    """Bring `lo` up in the caller's netns with two ioctls (cheap enough for the start path)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        req = struct.pack("16sH22x", b"lo", 0)
        flags = struct.unpack("16sH22x", fcntl.ioctl(sock, _SIOCGIFFLAGS, req))[1]
        fcntl.ioctl(sock, _SIOCSIFFLAGS, struct.pack("16sH22x", b"lo", flags | _IFF_UP))


class ContainerNetwork:
    """The network side of one container; `teardown` is idempotent and safe after partial setup."""

    def __init__(self, instance_id: str, spec: InstanceSpec, bridge_name: str = DEFAULT_BRIDGE,
                 subnet: str = DEFAULT_SUBNET) -> None:
        self.instance_id = instance_id
        self.spec = spec
        self.mode = spec.network
        self.bridge_name = bridge_name
        self.subnet = subnet
        self.host_link = link_name(instance_id)
        self.bridge: Bridge | None = None
        self.address: str | None = None

    @property
    def wants_netns(self) -> bool:
        return self.mode != "host"

    def prepare(self) -> None:
        """Before the fork: the bridge and an address (bridge mode only)."""
        if self.mode == "bridge":
            self.bridge = ensure_bridge(self.bridge_name, self.subnet)
            self.address = allocate_address(self.bridge, owner=self.instance_id)

    def ignored_limits(self) -> dict[str, object]:
        if self.spec.bandwidth is not None and self.mode != "bridge":
            return {"bandwidth": self.spec.bandwidth}
        return {}

    def attach(self, pid: int) -> None:
        """After the container unshared its netns: wire it up (veth, addresses, routes, tc).
        (`lo` is brought up by the container itself with loopback_up_here.)"""
        if self.mode == "bridge":
            self._attach_bridge(pid)

    def _attach_bridge(self, pid: int) -> None:
        from pyroute2 import IPRoute

        assert self.bridge is not None and self.address is not None
        with IPRoute() as ipr:
            add_veth_to_bridge(ipr, self.host_link, "eth0", self.bridge.name, peer_netns_pid=pid)
            if self.spec.bandwidth:
                set_rate_limit(ipr, self.host_link, self.spec.bandwidth)  # traffic into the container
        try:
            sock = netlink_socket_in(f"/proc/{pid}/ns/net")
        except OSError as exc:
            raise InstanceError(f"network: cannot open netlink in /proc/{pid}/ns/net: {exc}") from exc
        with IPRoute(use_socket=sock) as inside:
            configure_inside(inside, "eth0", "eth0", self.address, self.bridge.prefixlen, self.bridge.gateway)
            if self.spec.bandwidth:
                set_rate_limit(inside, "eth0", self.spec.bandwidth)  # traffic out of the container

    def teardown(self) -> None:
        if self.mode != "bridge":
            return
        try:
            from pyroute2 import IPRoute

            with IPRoute() as ipr:
                delete_link(ipr, self.host_link)
        finally:
            if self.bridge is not None and self.address is not None:
                release_address(self.bridge, self.address)
            elif self.address is not None:
                release_owner(self.bridge_name, self.instance_id)
            self.address = None

    def state(self) -> dict[str, Any]:
        return {"mode": self.mode, "bridge": self.bridge_name if self.mode == "bridge" else None,
                "address": self.address, "host_link": self.host_link if self.mode == "bridge" else None}
