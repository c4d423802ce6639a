"""The isolated bridge (no uplink, no NAT) and the address book of its subnet.

Addresses are handed out under the bridge's lock (runtime.state.locked("net-<bridge>")) and recorded
with the allocating process (pid and start time) in /run/isolab/net/<bridge>.json, so concurrent
processes never get the same address and addresses of dead processes are reused. The bridge itself is
created and removed under the same lock: handing out an address re-creates a bridge that the last user
removed meanwhile, and the last one out removes it only when no port and no live reservation is left.
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from runtime import state
from runtime.errors import InstanceError
from runtime.linux.process import pid_alive
from runtime.naming import LINK_PREFIX, STATE_ROOT

NET_STATE = STATE_ROOT / "net"
DEFAULT_BRIDGE = "islbr0"
DEFAULT_SUBNET = "10.213.0.0/24"


@dataclass(frozen=True)
class Bridge:
    """A bridge the suite created: its name, gateway address (on the bridge) and subnet."""

    name: str
    gateway: str
    prefixlen: int
    subnet: str = DEFAULT_SUBNET


@contextmanager
def _locked(name: str) -> Iterator[None]:
    """The bridge's lock (runtime.state.locked): its address book and its existence change only under it."""
    with state.locked(f"net-{name}"):
        NET_STATE.mkdir(mode=0o700, parents=True, exist_ok=True)
        yield


def _entry_alive(entry: dict[str, object]) -> bool:
    """A reservation counts while its process lives (pid and start time; a pid-only entry: pid alive)."""
    owner = state.Owner.from_dict(entry)
    if owner is not None:
        return owner.alive()
    return pid_alive(entry.get("pid"))


def _book_path(name: str) -> Path:
    return NET_STATE / f"{name}.json"


def _read_book(name: str) -> dict[str, dict[str, object]]:
    try:
        return json.loads(_book_path(name).read_text())
    except (OSError, json.JSONDecodeError):
        return {}


def _write_book(name: str, book: dict[str, dict[str, object]]) -> None:
    if not book:
        _book_path(name).unlink(missing_ok=True)
        return
    state.write_json(_book_path(name), book)


def ensure_bridge(name: str = DEFAULT_BRIDGE, subnet: str = DEFAULT_SUBNET) -> Bridge:
    """Create (or find) the bridge `name` with the first host address of `subnet`; idempotent.

    The bridge is only kept while someone holds an address on it: allocate_address re-creates it if the
    last user removed it in between (both under the bridge's lock)."""
    if not name.startswith(LINK_PREFIX) or len(name) > 15:
        raise InstanceError(f"bridge name {name!r} must start with {LINK_PREFIX!r} and fit in 15 bytes")
    net = ipaddress.ip_network(subnet)
    bridge = Bridge(name=name, gateway=str(next(net.hosts())), prefixlen=net.prefixlen, subnet=str(net))
    with _locked(name):
        _ensure_link(bridge)
    return bridge


def _ensure_link(bridge: Bridge) -> None:
    """The bridge link, up, with its gateway address (call under the bridge's lock)."""
    from pyroute2 import IPRoute
    from pyroute2.netlink.exceptions import NetlinkError

    with IPRoute() as ipr:
        found = ipr.link_lookup(ifname=bridge.name)
        if not found:
            try:
                ipr.link("add", ifname=bridge.name, kind="bridge")
            except NetlinkError as exc:
                raise InstanceError(f"cannot create bridge {bridge.name}: netlink RTM_NEWLINK: {exc}") from exc
            found = ipr.link_lookup(ifname=bridge.name)
        index = found[0]
        have = {a.get_attr("IFA_ADDRESS") for a in ipr.get_addr(index=index, family=2)}
        if bridge.gateway not in have:
            ipr.addr("add", index=index, address=bridge.gateway, prefixlen=bridge.prefixlen)
        ipr.link("set", index=index, state="up")


def bridge_ports(name: str) -> list[str]:
    """Names of the interfaces attached to bridge `name` (empty if it does not exist)."""
    ports = Path("/sys/class/net") / name / "brif"
    return sorted(p.name for p in ports.iterdir()) if ports.is_dir() else []


def remove_bridge(name: str = DEFAULT_BRIDGE) -> bool:
    """Delete the bridge and its address book; True if it existed."""
    with _locked(name):
        return _remove_locked(name)


def _remove_locked(name: str) -> bool:
    from pyroute2 import IPRoute

    with IPRoute() as ipr:
        found = ipr.link_lookup(ifname=name)
        if found:
            ipr.link("del", index=found[0])
    _book_path(name).unlink(missing_ok=True)
    state.drop_lock(f"net-{name}")
    state.remove_empty_dirs(NET_STATE)
    return bool(found)


def allocate_address(bridge: Bridge, owner: str = "") -> str:
    """A free host address in the bridge's subnet, reserved for this process until released."""
    net = ipaddress.ip_network(bridge.subnet)
    with _locked(bridge.name):
        _ensure_link(bridge)  # the last user may have removed it since ensure_bridge
        book = {addr: entry for addr, entry in _read_book(bridge.name).items() if _entry_alive(entry)}
        for host in net.hosts():
            addr = str(host)
            if addr != bridge.gateway and addr not in book:
                book[addr] = {**state.me().to_dict(), "owner": owner}
                _write_book(bridge.name, book)
                return addr
    raise InstanceError(f"no free address left in {bridge.subnet} on bridge {bridge.name}")


def release_address(bridge: Bridge, addr: str) -> None:
    """Give `addr` back to the bridge's pool (no error if it was not reserved). The last user out
    removes the bridge: with no port attached and no live reservation left, it is deleted."""
    with _locked(bridge.name):
        book = _read_book(bridge.name)
        if book.pop(addr, None) is not None:
            _write_book(bridge.name, book)
        _remove_if_unused_locked(bridge.name)


def release_owner(bridge_name: str, owner: str) -> None:
    """Release every address reserved for `owner` (used by cleanup after a crash)."""
    with _locked(bridge_name):
        book = _read_book(bridge_name)
        kept = {a: e for a, e in book.items() if e.get("owner") != owner}
        if kept != book:
            _write_book(bridge_name, kept)


def release_dead(bridge_name: str, everything: bool = False) -> list[str]:
    """For cleanup: drop reservations of dead processes (all with `everything`); returns their owners."""
    with _locked(bridge_name):
        book = _read_book(bridge_name)
        kept = {} if everything else {a: e for a, e in book.items() if _entry_alive(e)}
        if kept != book:
            _write_book(bridge_name, kept)
    return sorted(str(e.get("owner", a)) for a, e in book.items() if a not in kept)


def live_reservations(name: str) -> list[str]:
    """Addresses on bridge `name` still reserved by running processes."""
    return sorted(a for a, e in _read_book(name).items() if _entry_alive(e))


def remove_bridge_if_unused(name: str = DEFAULT_BRIDGE) -> bool:
    """Delete the bridge when nothing is attached and no running process holds an address on it.

    Checked and done under the bridge's lock, the same lock under which addresses are handed out (and
    the bridge re-created): "last one out removes the bridge" cannot race with a newcomer."""
    with _locked(name):
        return _remove_if_unused_locked(name)


def _remove_if_unused_locked(name: str) -> bool:
    if not (Path("/sys/class/net") / name).exists():
        return False
    if bridge_ports(name) or live_reservations(name):
        return False
    return _remove_locked(name)
