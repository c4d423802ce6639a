"""The isolated bridge (no uplink, no NAT) and the address book of its subnet.

Addresses are handed out under an exclusive lock on /run/isolab/net/<bridge>.lock and recorded
with the allocating process id in /run/isolab/net/<bridge>.json, so concurrent processes never get
the same address and addresses of dead processes are reused.
"""

from __future__ import annotations

import fcntl
import ipaddress
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

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
    NET_STATE.mkdir(parents=True, exist_ok=True)
    with open(NET_STATE / f"{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def _book_path(name: str) -> Path:
    return NET_STATE / f"{name}.json"


def _read_book(name: str) -> dict[str, dict[str, object]]:
    try:
        return json.loads(_book_path(name).read_text())
    except (OSError, json.JSONDecodeError):
        return {}


def _write_book(name: str, book: dict[str, dict[str, object]]) -> None:
    path = _book_path(name)
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    tmp.write_text(json.dumps(book, sort_keys=True))
    os.replace(tmp, path)


def ensure_bridge(name: str = DEFAULT_BRIDGE, subnet: str = DEFAULT_SUBNET) -> Bridge:
    """Create (or find) the bridge `name` with the first host address of `subnet`; idempotent."""
    from pyroute2 import IPRoute
    from pyroute2.netlink.exceptions import NetlinkError

    if not name.startswith(LINK_PREFIX) or len(name) > 15:
        raise InstanceError(f"bridge name {name!r} must start with {LINK_PREFIX!r} and fit in 15 bytes")
    net = ipaddress.ip_network(subnet)
    gateway = str(next(net.hosts()))
    with _locked(name), IPRoute() as ipr:
        found = ipr.link_lookup(ifname=name)
        if not found:
            try:
                ipr.link("add", ifname=name, kind="bridge")
            except NetlinkError as exc:
                raise InstanceError(f"cannot create bridge {name}: netlink RTM_NEWLINK: {exc}") from exc
            found = ipr.link_lookup(ifname=name)
        index = found[0]
        have = {a.get_attr("IFA_ADDRESS") for a in ipr.get_addr(index=index, family=2)}
        if gateway not in have:
            ipr.addr("add", index=index, address=gateway, prefixlen=net.prefixlen)
        ipr.link("set", index=index, state="up")
    return Bridge(name=name, gateway=gateway, prefixlen=net.prefixlen, subnet=str(net))


def bridge_ports(name: str) -> list[str]:
    """Names of the interfaces attached to bridge `name` (empty if it does not exist)."""
    ports = Path("/sys/class/net") / name / "brif"
    return sorted(p.name for p in ports.iterdir()) if ports.is_dir() else []


def remove_bridge(name: str = DEFAULT_BRIDGE) -> bool:
    """Delete the bridge and its address book; True if it existed."""
    from pyroute2 import IPRoute

    with _locked(name), IPRoute() as ipr:
        found = ipr.link_lookup(ifname=name)
        if found:
            ipr.link("del", index=found[0])
        _book_path(name).unlink(missing_ok=True)
    (NET_STATE / f"{name}.lock").unlink(missing_ok=True)
    try:
        NET_STATE.rmdir()
    except OSError:
        pass  # other bridges' books are still there
    return bool(found)


def allocate_address(bridge: Bridge, owner: str = "") -> str:
    """A free host address in the bridge's subnet, reserved for this process until released."""
    net = ipaddress.ip_network(bridge.subnet)
    with _locked(bridge.name):
        book = {addr: entry for addr, entry in _read_book(bridge.name).items()
                if pid_alive(int(entry.get("pid", 0)))}  # type: ignore[arg-type]
        for host in net.hosts():
            addr = str(host)
            if addr != bridge.gateway and addr not in book:
                book[addr] = {"pid": os.getpid(), "owner": owner}
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
    remove_bridge_if_unused(bridge.name)


def release_owner(bridge_name: str, owner: str) -> None:
    """Release every address reserved for `owner` (used by cleanup after a crash)."""
    with _locked(bridge_name):
        book = _read_book(bridge_name)
        kept = {a: e for a, e in book.items() if e.get("owner") != owner}
        if kept != book:
            _write_book(bridge_name, kept)


def live_reservations(name: str) -> list[str]:
    """Addresses on bridge `name` still reserved by running processes."""
    return sorted(a for a, e in _read_book(name).items() if pid_alive(int(e.get("pid", 0))))  # type: ignore[arg-type]


def remove_bridge_if_unused(name: str = DEFAULT_BRIDGE) -> bool:
    """Delete the bridge when nothing is attached and no running process holds an address on it."""
    if bridge_ports(name) or live_reservations(name):
        return False
    return remove_bridge(name)
