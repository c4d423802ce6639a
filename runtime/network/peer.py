"""The traffic peer: a network namespace of its own on the suite's bridge, running the image's tools.

Commands run inside the netns and chrooted into the image rootfs (a read-only bind in a private mount
namespace, with /proc, /dev and a tmpfs /tmp), so the peer uses the same iperf3/netperf binaries as
the instance under test. Everything (netns, veth, address) goes away on `destroy`/context exit.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

from runtime import state
from runtime.errors import InstanceError
from runtime.linux import syscalls as sc
from runtime.linux.process import forking, run_captured
from runtime.naming import link_name, new_instance_id, state_dir
from runtime.network.bridge import Bridge, allocate_address, release_address
from runtime.network.links import add_veth_to_bridge, configure_inside, delete_link
from runtime.network.netns import NETNS_DIR, create_netns, netlink_socket_in, netns_path, remove_netns
from runtime.spec import ExecResult

PEER_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def _rootfs_of(image: Any) -> Path:
    return Path(getattr(image, "rootfs", image))


class PeerNamespace:
    """A netns `isl…` with one veth on `bridge` and an address; commands run chrooted into the image."""

    def __init__(self, bridge: Bridge, image: Any) -> None:
        self.bridge = bridge
        self.rootfs = _rootfs_of(image)
        self.peer_id = new_instance_id("peer")
        self.netns = link_name(self.peer_id)
        self.host_link = link_name(self.peer_id, "h")
        self.address: str | None = None
        self._procs: list[subprocess.Popen[Any]] = []
        self._created = False
        self.state_dir = state_dir(self.peer_id)
        self._start()

    def _start(self) -> None:
        from pyroute2 import IPRoute

        if not (self.rootfs / "bin").exists():
            raise InstanceError(f"peer: image rootfs {self.rootfs} does not exist")
        try:
            state.claim(self.state_dir, "peer", netns=self.netns, host_link=self.host_link,
                        bridge=self.bridge.name)
            create_netns(self.netns)
            self._created = True
            self.address = allocate_address(self.bridge, owner=self.peer_id)
            fd = os.open(NETNS_DIR / self.netns, os.O_RDONLY)
            try:
                with IPRoute() as ipr:
                    add_veth_to_bridge(ipr, self.host_link, link_name(self.peer_id, "p"), self.bridge.name,
                                       peer_netns_fd=fd)
            finally:
                os.close(fd)
            with IPRoute(use_socket=netlink_socket_in(netns_path(self.netns))) as ipr:
                configure_inside(ipr, link_name(self.peer_id, "p"), "eth0", self.address,
                                 self.bridge.prefixlen, None)
        except BaseException:
            self.destroy()
            raise

    def _enter(self) -> None:
        """preexec: join the netns, private mount ns, read-only view of the image, chroot."""
        fd = os.open(NETNS_DIR / self.netns, os.O_RDONLY)
        sc.setns(fd, sc.CLONE_NEWNET)
        os.close(fd)
        sc.unshare(sc.CLONE_NEWNS)
        sc.mount(None, "/", None, sc.MS_REC | sc.MS_PRIVATE)
        root = str(self.rootfs)
        sc.mount(root, root, None, sc.MS_BIND | sc.MS_REC)
        sc.mount(None, root, None, sc.MS_REMOUNT | sc.MS_BIND | sc.MS_RDONLY)
        sc.mount("proc", f"{root}/proc", "proc", sc.MS_NOSUID | sc.MS_NODEV | sc.MS_NOEXEC)
        sc.mount("/dev", f"{root}/dev", None, sc.MS_BIND | sc.MS_REC)
        sc.mount("tmpfs", f"{root}/tmp", "tmpfs", sc.MS_NOSUID | sc.MS_NODEV, "mode=1777")
        os.chroot(root)
        os.chdir("/")

    def popen(self, argv: Sequence[str], **kwargs: Any) -> subprocess.Popen[Any]:
        """Start argv in the peer (stdout/stderr piped as text unless overridden); destroy() kills it."""
        if not self._created:
            raise InstanceError(f"peer {self.netns}: used after destroy")
        kwargs.setdefault("stdout", subprocess.PIPE)
        kwargs.setdefault("stderr", subprocess.PIPE)
        kwargs.setdefault("text", True)
        kwargs.setdefault("env", {"PATH": PEER_PATH, "HOME": "/root", "LANG": "C.UTF-8"})
        with forking():
            proc = subprocess.Popen(list(argv), preexec_fn=self._enter, **kwargs)
        self._procs.append(proc)
        return proc

    def run(self, argv: Sequence[str], timeout: float = 600.0) -> ExecResult:
        """Run argv in the peer and wait for it; 127 if the command is not in the image."""
        return run_captured(lambda: self.popen(argv, errors="replace"), argv, timeout, f"peer {self.netns}")

    def destroy(self) -> None:
        """Kill the peer's processes, remove the netns (its veth goes with it) and release the address."""
        for proc in self._procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGKILL)
            try:
                proc.communicate(timeout=5)
            except (subprocess.TimeoutExpired, ValueError, OSError):
                pass
        self._procs.clear()
        from pyroute2 import IPRoute

        if self._created:
            try:
                remove_netns(self.netns)
            except OSError:
                pass
            self._created = False
        with IPRoute() as ipr:
            delete_link(ipr, self.host_link)
        if self.address:
            release_address(self.bridge, self.address)
            self.address = None
        shutil.rmtree(self.state_dir, ignore_errors=True)

    def __enter__(self) -> PeerNamespace:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.destroy()
