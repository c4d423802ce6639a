"""Named network namespaces (/run/netns/<name>, as iproute2 keeps them) without forking helpers.

pyroute2's netns.create and IPRoute(netns=...) fork a copy of the calling Python process; a copy
that fails on its way out can return into the caller's code (and, under pytest, rerun the session).
Here a short-lived thread unshares the namespace and bind-mounts it, and netlink sockets are opened
by temporarily joining the namespace from the calling thread.
"""

from __future__ import annotations

import os
import socket
import threading
from pathlib import Path

from runtime.linux import syscalls as sc

NETNS_DIR = Path("/run/netns")


def netns_path(name: str) -> Path:
    return NETNS_DIR / name


def create_netns(name: str) -> Path:
    """Create the named namespace; OSError naming the step if anything fails (nothing left behind)."""
    NETNS_DIR.mkdir(parents=True, exist_ok=True)
    path = netns_path(name)
    os.close(os.open(path, os.O_RDONLY | os.O_CREAT | os.O_EXCL, 0o444))
    failure: list[BaseException] = []

    def unshare_and_bind() -> None:  # runs in its own thread: only that thread changes netns
        try:
            sc.unshare(sc.CLONE_NEWNET)
            sc.mount("/proc/thread-self/ns/net", path, None, sc.MS_BIND)
        except BaseException as exc:
            failure.append(exc)

    worker = threading.Thread(target=unshare_and_bind, name=f"netns-{name}")
    worker.start()
    worker.join()
    if failure:
        path.unlink(missing_ok=True)
        raise failure[0]
    return path


def remove_netns(name: str) -> None:
    path = netns_path(name)
    try:
        sc.umount2(path, sc.MNT_DETACH)
    except OSError:
        pass  # not mounted (half-created) or already detached
    path.unlink(missing_ok=True)


def netlink_socket_in(ns_path: str | os.PathLike[str]) -> socket.socket:
    """A NETLINK_ROUTE socket bound to the network namespace at `ns_path` (e.g. /proc/PID/ns/net)."""
    own = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    target = os.open(ns_path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        sc.setns(target, sc.CLONE_NEWNET)
        try:
            return socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM, 0)
        finally:
            sc.setns(own, sc.CLONE_NEWNET)
    finally:
        os.close(target)
        os.close(own)
