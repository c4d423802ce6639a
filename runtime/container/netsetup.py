"""A container's network: `none` (own empty netns with lo up), `host` (the host's netns), `bridge`
(a veth `isl<id>` on the suite's bridge, `eth0` inside with its own address, optional tc quota), or
`nat` (wired like `bridge` but on the private bridge `islnat0`, and reachable only through the ports
runtime.network.nat publishes with DNAT on a host address of its own on the suite bridge, like
Docker's `-p IP:port:port`).

The inside of the container's netns is configured from the runtime over a netlink socket that was
opened while the calling thread had temporarily joined that netns (no helper process is spawned).
"""

from __future__ import annotations

import fcntl
import socket
import struct
from typing import Any

from runtime.errors import InstanceError, PlatformUnavailable
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
from runtime.network.nat import NAT_BRIDGE, NAT_SUBNET, nat_unavailable, publish, unpublish
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
    """The network side of one container; `teardown` is idempotent and safe after partial setup.

    `mode` is the wiring the runtime does after the child unshared its netns: "none", "host" or
    "bridge" (a veth on a suite bridge); a `nat` container is wired as "bridge" on the private bridge,
    then published. `requested` is the spec's mode."""

    def __init__(self, instance_id: str, spec: InstanceSpec, bridge_name: str = DEFAULT_BRIDGE,
                 subnet: str = DEFAULT_SUBNET) -> None:
        self.instance_id = instance_id
        self.spec = spec
        self.requested = spec.network
        self.mode = "bridge" if spec.network == "nat" else spec.network
        self.suite_bridge_name = bridge_name
        self.bridge_name = NAT_BRIDGE if spec.network == "nat" else bridge_name
        self.subnet = NAT_SUBNET if spec.network == "nat" else subnet
        self.host_link = link_name(instance_id)
        self.bridge: Bridge | None = None
        self.address: str | None = None
        # nat: the suite bridge, an address held on it (keeps it, and its forwarding flag, alive while
        # the container publishes there) and whether the DNAT rules are in place.
        self.suite_bridge: Bridge | None = None
        self.suite_hold: str | None = None
        self.published = False

    @property
    def wants_netns(self) -> bool:
        return self.mode != "host"

    @property
    def needs_wiring(self) -> bool:
        """Whether attach() has work to do after the child unshared its netns."""
        return self.mode == "bridge"

    @property
    def published_address(self) -> str | None:
        """nat: the container's own host address on the suite bridge, where its ports are published."""
        return self.suite_hold if self.requested == "nat" else None

    def prepare(self) -> None:
        """Before the fork: the bridge(s) and an address (bridge and nat modes)."""
        if self.requested == "nat":
            reason = nat_unavailable()
            if reason is not None:
                raise PlatformUnavailable(f"container: network mode nat is not available here: {reason}")
            self.suite_bridge = ensure_bridge(self.suite_bridge_name)
            self.suite_hold = allocate_address(self.suite_bridge, owner=self.instance_id)
        if self.mode == "bridge":
            self.bridge = ensure_bridge(self.bridge_name, self.subnet)
            self.address = allocate_address(self.bridge, owner=self.instance_id)

    def ignored_limits(self) -> dict[str, object]:
        if self.spec.bandwidth is not None and self.mode != "bridge":
            return {"bandwidth": self.spec.bandwidth}
        return {}

    def attach(self, pid: int) -> None:
        """After the container unshared its netns: wire it up (veth, addresses, routes, tc; DNAT for nat).
        (`lo` is brought up by the container itself with loopback_up_here.)"""
        if self.mode == "bridge":
            self._attach_bridge(pid)
        if self.requested == "nat":
            assert self.suite_bridge is not None and self.address is not None
            assert self.suite_hold is not None
            publish(self.instance_id, self.address, self.suite_hold, self.suite_bridge.name, self.bridge_name)
            self.published = True

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
            if self.requested == "nat" and self.suite_hold is not None:
                unpublish(self.instance_id)  # also when publish failed half-way: it rewrites the table
                self.published = False
            from pyroute2 import IPRoute

            with IPRoute() as ipr:
                delete_link(ipr, self.host_link)
        finally:
            if self.bridge is not None and self.address is not None:
                release_address(self.bridge, self.address)
            elif self.address is not None:
                release_owner(self.bridge_name, self.instance_id)
            self.address = None
            if self.suite_bridge is not None and self.suite_hold is not None:
                release_address(self.suite_bridge, self.suite_hold)
            self.suite_hold = None

    def state(self) -> dict[str, Any]:
        wired = self.mode == "bridge"
        return {"mode": self.requested, "bridge": self.bridge_name if wired else None,
                "address": self.address, "host_link": self.host_link if wired else None,
                "suite_bridge": self.suite_bridge_name if self.requested == "nat" else None,
                "published": self.published_address}
