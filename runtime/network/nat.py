"""Published ports (`nat` mode): DNAT from the suite bridge's host address to an instance on a private bridge.

Like Docker's `-p IP:port:port`: an instance in `nat` mode sits on the private bridge `islnat0`
(10.214.0.0/24, no uplink) and is reachable only at a host address of its own on the suite bridge
(an address reserved for it in the suite bridge's book, e.g. 10.213.0.7, added to the bridge as a /32),
which the kernel rewrites to the instance's private address. The ports are fixed (PUBLISHED_PORTS:
iperf3 and netperf control and data); since every nat instance publishes on its own host address,
any number of nat instances (of one run or of runs side by side) publish them at the same time.

The kernel side is one nftables table of our own, `ip isolab`, generated from the book of live
publications (/run/isolab/net/nat.json, under the lock `net-nat`) and replaced atomically with `nft -f -` on every
change: DNAT in prerouting, and a forward chain that lets traffic through only between the two suite
bridges (new connections only towards a published instance, replies back), dropping everything else
that enters or leaves them. IPv4 forwarding is switched on per interface, on the two suite bridges
only (`net.ipv4.conf.<bridge>.forwarding`; never the global `ip_forward`/`all`), after the table is in
place, and back off before the table goes when the last publication is withdrawn.
"""

from __future__ import annotations

import functools
import json
import shutil
import subprocess
from pathlib import Path

from runtime import state
from runtime.errors import InstanceError
from runtime.network.bridge import DEFAULT_BRIDGE, NET_STATE, _entry_alive

NAT_BRIDGE = "islnat0"
NAT_SUBNET = "10.214.0.0/24"
TABLE = "isolab"  # nftables table `ip isolab`
#: (protocol, port) published on the suite bridge's host address: iperf3 (5201, control and data),
#: netperf control (12865) and the fixed netperf data port (12866, given to netperf with `-- -P`).
PUBLISHED_PORTS: tuple[tuple[str, int], ...] = (("tcp", 5201), ("udp", 5201), ("tcp", 12865),
                                                 ("tcp", 12866), ("udp", 12866))
NETPERF_DATA_PORT = 12866
_LOCK = "net-nat"
_BOOK = NET_STATE / "nat.json"
_PROBE = """table ip isolab_probe {
  chain prerouting {
    type nat hook prerouting priority dstnat; policy accept;
    iifname "islprobe0" ip daddr 10.213.0.1 tcp dport 5201 dnat to 10.214.0.2
  }
  chain forward {
    type filter hook forward priority filter; policy accept;
    iifname "islprobe0" oifname "islprobe1" ct status dnat accept
    iifname "islprobe1" oifname "islprobe0" ct state established,related accept
  }
}
"""


@functools.lru_cache(maxsize=1)
def nat_unavailable() -> str | None:
    """Why `nat` cannot work on this host (None if it can): the nft tool, nf_tables/nat in the kernel,
    per-interface IPv4 forwarding. The probe table is only checked (`nft -c`), never loaded."""
    nft = shutil.which("nft")
    if nft is None:
        return "nat: the nft command is missing (apt-get install nftables)"
    if not Path("/proc/sys/net/ipv4/conf/default/forwarding").exists():
        return "nat: the kernel has no per-interface IPv4 forwarding (/proc/sys/net/ipv4/conf/*/forwarding)"
    try:
        probe = subprocess.run([nft, "-c", "-f", "-"], input=_PROBE, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError) as exc:
        return f"nat: cannot run {nft}: {exc}"
    if probe.returncode != 0:
        why = " | ".join(probe.stderr.strip().splitlines()[:3])
        return f"nat: the kernel refuses an nftables DNAT rule (nf_tables/nft_nat missing?): nft -c: {why}"
    return None


def _read_book() -> dict[str, dict[str, object]]:
    try:
        return json.loads(_BOOK.read_text())
    except (OSError, json.JSONDecodeError):
        return {}


def _write_book(book: dict[str, dict[str, object]]) -> None:
    if not book:
        _BOOK.unlink(missing_ok=True)
        state.remove_empty_dirs(NET_STATE)
        return
    NET_STATE.mkdir(mode=0o700, parents=True, exist_ok=True)
    state.write_json(_BOOK, book)


def _host_address(bridge: str, address: str, add: bool) -> None:
    """Add (or remove) `address`/32 on the suite bridge: the instance's own published host address."""
    from pyroute2 import IPRoute
    from pyroute2.netlink.exceptions import NetlinkError

    with IPRoute() as ipr:
        found = ipr.link_lookup(ifname=bridge)
        if not found:
            if add:
                raise InstanceError(f"nat: the suite bridge {bridge} does not exist")
            return
        have = {a.get_attr("IFA_ADDRESS") for a in ipr.get_addr(index=found[0], family=2)}
        try:
            if add and address not in have:
                ipr.addr("add", index=found[0], address=address, prefixlen=32)
            elif not add and address in have:
                ipr.addr("del", index=found[0], address=address, prefixlen=32)
        except NetlinkError as exc:
            verb = "add" if add else "remove"
            raise InstanceError(f"nat: cannot {verb} the host address {address}/32 on {bridge}: {exc}") from exc


def ruleset(book: dict[str, dict[str, object]]) -> str:
    """The whole `ip isolab` table for these publications (an atomic replace when fed to `nft -f -`)."""
    lines = [f"table ip {TABLE}", f"delete table ip {TABLE}"]
    if not book:
        return "\n".join(lines) + "\n"
    suite = {str(entry["suite_bridge"]) for entry in book.values()}
    private = {str(entry["nat_bridge"]) for entry in book.values()}
    bridges = ", ".join(f'"{name}"' for name in sorted(suite | private))
    prerouting, accept_in = [], []
    for owner, entry in sorted(book.items()):
        target = entry["address"]
        for proto in ("tcp", "udp"):
            ports = sorted(int(port) for p, port in entry["ports"] if p == proto)  # type: ignore[union-attr]
            if ports:
                prerouting.append(f'    iifname "{entry["suite_bridge"]}" ip daddr {entry["host_address"]} '
                                  f'{proto} dport {{ {", ".join(map(str, ports))} }} dnat to {target} '
                                  f'comment "{owner}"')
        accept_in.append(f'    iifname "{entry["suite_bridge"]}" oifname "{entry["nat_bridge"]}" ct status dnat '
                         f'ip daddr {target} accept comment "{owner}"')
    same = [f'    iifname "{name}" oifname "{name}" accept' for name in sorted(suite | private)]
    back = [f'    iifname "{n}" oifname "{s}" ct state established,related accept'
            for n in sorted(private) for s in sorted(suite)]
    lines += [f"table ip {TABLE} {{",
              "  chain prerouting {", "    type nat hook prerouting priority dstnat; policy accept;",
              *prerouting, "  }",
              "  chain forward {", "    type filter hook forward priority filter; policy accept;",
              *same, *accept_in, *back,
              f"    iifname {{ {bridges} }} drop", f"    oifname {{ {bridges} }} drop", "  }", "}"]
    return "\n".join(lines) + "\n"


def _nft(text: str, what: str) -> None:
    nft = shutil.which("nft")
    if nft is None:
        raise InstanceError(f"nat: cannot {what}: the nft command is missing (apt-get install nftables)")
    try:
        done = subprocess.run([nft, "-f", "-"], input=text, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError) as exc:
        raise InstanceError(f"nat: cannot {what}: {nft} -f -: {exc}") from exc
    if done.returncode != 0:
        why = " | ".join(done.stderr.strip().splitlines()[:3])
        raise InstanceError(f"nat: cannot {what}: nft -f - exited {done.returncode}: {why}")


def forwarding_path(ifname: str) -> Path:
    return Path("/proc/sys/net/ipv4/conf") / ifname / "forwarding"


def set_forwarding(ifname: str, on: bool) -> bool:
    """Per-interface IPv4 forwarding; False if the interface does not exist (nothing to switch)."""
    path = forwarding_path(ifname)
    try:
        path.write_text("1\n" if on else "0\n")
    except FileNotFoundError:
        return False
    except OSError as exc:
        raise InstanceError(f"nat: cannot write {path}: {exc}") from exc
    return True


def table_exists() -> bool:
    nft = shutil.which("nft")
    if nft is None:
        return False
    done = subprocess.run([nft, "list", "table", "ip", TABLE], capture_output=True, text=True, timeout=30)
    return done.returncode == 0


def _apply(book: dict[str, dict[str, object]], previous: dict[str, dict[str, object]]) -> None:
    """Make the kernel match `book`: table first and forwarding after, or forwarding off and table gone."""
    bridges = {str(e[k]) for e in (*book.values(), *previous.values()) for k in ("suite_bridge", "nat_bridge")}
    bridges |= {DEFAULT_BRIDGE, NAT_BRIDGE}
    if book:
        _nft(ruleset(book), "load the nftables table ip isolab")
        for name in sorted({str(e[k]) for e in book.values() for k in ("suite_bridge", "nat_bridge")}):
            set_forwarding(name, True)
    else:
        for name in sorted(bridges):
            set_forwarding(name, False)
        _nft(ruleset({}), "delete the nftables table ip isolab")


def publish(owner: str, address: str, host_address: str, suite_bridge: str = DEFAULT_BRIDGE,
            nat_bridge: str = NAT_BRIDGE, ports: tuple[tuple[str, int], ...] = PUBLISHED_PORTS) -> None:
    """DNAT host_address:<ports> on suite_bridge to `address` (on nat_bridge) for `owner`'s lifetime."""
    with state.locked(_LOCK):
        previous = _read_book()
        book = {o: e for o, e in previous.items() if _entry_alive(e)}
        wanted = {(p, int(n)) for p, n in ports}
        for other, entry in book.items():
            taken = wanted & {(p, int(n)) for p, n in entry["ports"]}  # type: ignore[union-attr]
            if other != owner and entry["host_address"] == host_address and taken:
                clash = ", ".join(f"{n}/{p}" for p, n in sorted(taken))
                raise InstanceError(f"nat: port(s) {clash} on {host_address} are already published to {other} "
                                    f"({entry['address']})")
        # dead publishers' host addresses go now: their reservations are free for others (a peer given
        # such an address while the host still holds it would be unreachable)
        _withdraw_addresses({**book, owner: {}}, previous)
        _host_address(suite_bridge, host_address, add=True)
        book[owner] = {**state.me().to_dict(), "address": address, "host_address": host_address,
                       "suite_bridge": suite_bridge, "nat_bridge": nat_bridge, "ports": sorted(wanted)}
        try:
            _apply(book, previous)
        except BaseException:
            _host_address(suite_bridge, host_address, add=False)
            raise
        _write_book(book)


def unpublish(owner: str) -> None:
    """Withdraw `owner`'s ports (and dead owners'); the last one out removes the table and forwarding."""
    with state.locked(_LOCK):
        previous = _read_book()
        book = {o: e for o, e in previous.items() if o != owner and _entry_alive(e)}
        if book != previous or not book:
            _apply(book, previous)
        _withdraw_addresses(book, previous)
        _write_book(book)
        if not book:
            state.drop_lock(_LOCK)


def _withdraw_addresses(book: dict[str, dict[str, object]], previous: dict[str, dict[str, object]]) -> None:
    for owner, entry in previous.items():
        if owner not in book:
            _host_address(str(entry["suite_bridge"]), str(entry["host_address"]), add=False)


def _stale_host_addresses(book: dict[str, dict[str, object]]) -> list[str]:
    """For cleanup: /32 host addresses on suite bridges that no live publication holds (left by a
    publisher that died between adding its address and recording it); removed. Call under the lock."""
    from pyroute2 import IPRoute

    held = {(str(e["suite_bridge"]), str(e["host_address"])) for e in book.values()}
    removed = []
    with IPRoute() as ipr:
        for addr in ipr.get_addr(family=2):
            if addr["prefixlen"] != 32:
                continue
            link = ipr.get_links(addr["index"])[0].get_attr("IFLA_IFNAME") or ""
            address = addr.get_attr("IFA_ADDRESS")
            if link.startswith("isl") and (link, address) not in held:
                _host_address(link, address, add=False)
                removed.append(f"host address {address}/32 on {link}")
    return removed


def cleanup_publications(everything: bool = False) -> list[str]:
    """For `cleanup`: withdraw publications of dead processes (all with `everything`); with none left,
    remove the table and switch forwarding off on the suite bridges. Returns what was removed."""
    removed: list[str] = []
    if not _BOOK.exists() and not table_exists() and not _any_forwarding() and not _host_addresses_on_suite():
        return removed
    with state.locked(_LOCK):
        previous = _read_book()
        book = {} if everything else {o: e for o, e in previous.items() if _entry_alive(e)}
        removed += [f"nat publication {o}" for o in sorted(set(previous) - set(book))]
        if not book:
            had_table = table_exists()
            flags = _any_forwarding()
            if had_table or flags or previous:
                _apply({}, previous)
            if had_table:
                removed.append(f"nft table ip {TABLE}")
            removed += [f"forwarding off on {name}" for name in flags]
        elif book != previous:
            _apply(book, previous)
        _withdraw_addresses(book, previous)
        removed += _stale_host_addresses(book)
        _write_book(book)
        if not book:
            state.drop_lock(_LOCK)
    return removed


def _host_addresses_on_suite() -> bool:
    """Whether any suite interface (`isl…`) carries a /32 (a published host address)."""
    from pyroute2 import IPRoute

    with IPRoute() as ipr:
        return any(a["prefixlen"] == 32 and (ipr.get_links(a["index"])[0].get_attr("IFLA_IFNAME") or "")
                   .startswith("isl") for a in ipr.get_addr(family=2))


def _any_forwarding() -> list[str]:
    """Suite interfaces (`isl…`) whose IPv4 forwarding flag is on."""
    found = []
    for conf in sorted(Path("/proc/sys/net/ipv4/conf").glob("isl*")):
        try:
            if (conf / "forwarding").read_text().strip() != "0":
                found.append(conf.name)
        except OSError:
            pass
    return found
