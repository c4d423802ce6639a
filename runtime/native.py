"""The native baseline: commands run chrooted into the shared rootfs, with no namespaces and no limits.

The instance root is a read-only bind mount of the image (so a workload cannot alter the cache),
with fresh proc and sysfs mounts, the host's /dev and a writable /tmp bind-mounted from a per-instance
directory on the host's disk (`scratch_dir`), so disk workloads hit the host filesystem directly.
With `InstanceSpec(volume=True)` a second per-instance host directory is bind-mounted at /mnt (the data
volume; on native both are plain host disk, which is the baseline for the container's and VM's volumes).
Host side: /var/tmp/isolab/<id>/tmp and /var/tmp/isolab/<id>/volume. Mounts live under /run/isolab/<id>/
and are detached on destroy.

Commands run in a cgroup of the instance's own, `isolab/<id>`, with no limit written to it. Under contention
the kernel shares CPU between cgroups (each has one group's weight) and, inside the root cgroup, between
tasks: a baseline left in the root cgroup of a host without systemd (where every other process also sits)
gets one share per thread while a container's or VM's threads share one group's, so a loaded host made the
container look up to 3x slower than native for reasons of placement, not isolation (docs/benchmarks.md,
"Where native runs"). On a systemd host every process is in some slice; here the baseline gets a sibling
cgroup like every instance's. The sweep removes it like theirs.
"""

from __future__ import annotations

import errno
import os
import shutil
import stat
import subprocess
from collections.abc import Sequence
from pathlib import Path

from runtime import state
from runtime.container.cgroups import Cgroup, make_cgroup
from runtime.errors import InstanceError
from runtime.image.store import Image
from runtime.linux import syscalls as sc
from runtime.linux import transfer
from runtime.linux.process import forking, run_captured
from runtime.naming import new_instance_id, scratch_dir, state_dir
from runtime.platform import KIND_NATIVE, Instance, Platform, PlatformInfo, StartPhases
from runtime.spec import VOLUME_DIR, ExecResult, InstanceSpec

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


class NativeInstance(Instance):
    platform = "native"

    def __init__(self, image: Image, spec: InstanceSpec) -> None:
        self.image = image
        self.spec = spec
        self.instance_id = new_instance_id("nat")
        self.state = state_dir(self.instance_id)
        self.root = self.state / "root"
        self.area = scratch_dir(self.instance_id)  # everything this instance keeps on the host's disk
        self.scratch = self.area / "tmp"  # the instance's /tmp
        self.volume = self.area / "volume" if spec.volume else None  # the instance's /mnt
        self.start_phases = StartPhases()
        self._destroyed = False
        self.cgroup: Cgroup | None = None
        self._procs_fds: list[int] = []  # open cgroup.procs files: the child joins with one write each

    def start(self) -> None:
        try:
            state.claim(self.state, "native")
            self.root.mkdir()
            self.scratch.mkdir(parents=True)  # (makes self.area too)
            self.scratch.chmod(0o1777)
            sc.mount(str(self.image.rootfs), self.root, None, sc.MS_BIND)
            sc.mount(None, self.root, None, sc.MS_PRIVATE)
            sc.mount(None, self.root, None, sc.MS_REMOUNT | sc.MS_BIND | sc.MS_RDONLY)
            # Fresh proc and sysfs mounts (not recursive binds of the host's): no cgroup or other
            # submounts appear under /run/isolab for libvirtd and others to trip over.
            sc.mount("proc", self.root / "proc", "proc", sc.MS_NOSUID | sc.MS_NODEV | sc.MS_NOEXEC)
            sc.mount("sysfs", self.root / "sys", "sysfs", sc.MS_NOSUID | sc.MS_NODEV | sc.MS_NOEXEC | sc.MS_RDONLY)
            sc.mount("/dev", self.root / "dev", None, sc.MS_BIND | sc.MS_REC)
            self._bind_nodev(self.scratch, self.root / "tmp")
            if self.volume is not None:
                self.volume.mkdir()
                self._bind_nodev(self.volume, self.root / VOLUME_DIR.lstrip("/"))
            self.start_phases.lap("mounts")
            self.cgroup = make_cgroup(self.instance_id)
            self.cgroup.create()
            self._procs_fds = [os.open(path, os.O_WRONLY | os.O_CLOEXEC) for path in self.cgroup.procs_files()]
            self.start_phases.lap("cgroup")
        except (OSError, InstanceError) as exc:
            self.destroy()
            raise InstanceError(f"native: cannot prepare {self.root}: {exc}") from exc

    @staticmethod
    def _bind_nodev(source: Path, target: Path) -> None:
        """Bind a host directory into the root, nodev and nosuid (like the container's volume)."""
        sc.mount(str(source), target, None, sc.MS_BIND)
        sc.mount(None, target, None, sc.MS_REMOUNT | sc.MS_BIND | sc.MS_NODEV | sc.MS_NOSUID)

    def _enter(self) -> None:
        """In the forked child, before exec: join the instance's cgroup (writing 0 moves the writer), chroot."""
        for fd in self._procs_fds:
            os.write(fd, b"0")
        os.chroot(self.root)
        os.chdir("/")

    def exec(self, argv: Sequence[str], timeout: float = 600.0,
             env: dict[str, str] | None = None) -> ExecResult:
        if self._destroyed:
            raise InstanceError(f"native {self.instance_id}: exec after destroy")
        environment = {"PATH": DEFAULT_PATH, "HOME": "/root", "LANG": "C.UTF-8", **self.spec.env, **(env or {})}

        def start() -> subprocess.Popen[str]:
            with forking():
                return subprocess.Popen(list(argv), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                        text=True, env=environment,
                                        preexec_fn=self._enter, errors="replace")

        return run_captured(start, argv, timeout, f"native {self.instance_id}")

    def put_file(self, local: Path, remote: str) -> None:
        """Resolved inside the instance root (openat2 RESOLVE_IN_ROOT): a workload's symlinks cannot make
        the harness write a host file."""
        try:
            transfer.put_file(self.root, Path(local), remote, f"native {self.instance_id}")
        except transfer.TransferError as exc:
            if exc.errno != errno.EROFS:
                raise
            writable = "/tmp and /mnt are" if self.volume is not None else "only /tmp is"
            raise InstanceError(f"native {self.instance_id}: {writable} writable, not {remote}") from exc

    def get_file(self, remote: str, local: Path) -> None:
        transfer.get_file(self.root, remote, Path(local), f"native {self.instance_id}")

    def ignored_limits(self) -> dict[str, object]:
        return self.spec.limits()

    def disk_usage_bytes(self) -> int:
        """Bytes of regular files in the instance's /tmp (the data volume is not counted). lstat: a
        workload's symlink to a host file must not count that file (nor make the harness stat it)."""
        if not self.scratch.exists():
            return 0
        sizes = (p.lstat() for p in self.scratch.rglob("*"))
        return sum(st.st_size for st in sizes if stat.S_ISREG(st.st_mode))

    def quiesce(self) -> str | None:
        """Nothing of a native instance runs between commands: quiet by construction."""
        return "no process between commands"

    def metadata(self) -> dict[str, object]:
        ignored = self.ignored_limits()
        return {"limits_ignored": sorted(ignored)} if ignored else {}

    def destroy(self) -> None:
        if self._destroyed:
            return
        self._destroyed = True
        for fd in self._procs_fds:
            os.close(fd)
        self._procs_fds = []
        if self.cgroup is not None:
            self.cgroup.kill_all()  # a command's leftover children (exec waits for the command only)
            self.cgroup.remove()
            self.cgroup.remove_parent_if_empty()
        sc.detach_all_under(self.state)
        shutil.rmtree(self.state, ignore_errors=True)
        shutil.rmtree(self.area, ignore_errors=True)


class NativePlatform(Platform):
    name = "native"
    network_modes = ("host",)

    def __init__(self, image: Image | None = None, **_options: object) -> None:
        self.image = image

    def check_available(self) -> None:
        if os.geteuid() != 0:
            from runtime.errors import PlatformUnavailable

            raise PlatformUnavailable("native: needs root (chroot and bind mounts)")

    def create(self, spec: InstanceSpec) -> NativeInstance:
        if self.image is None:
            raise InstanceError("native: no image given")
        instance = NativeInstance(self.image, spec)
        instance.start()
        return instance

    def describe(self) -> PlatformInfo:
        return PlatformInfo(name=self.name, kind=KIND_NATIVE, display_name="native (chroot)", colour="#4c72b0",
                            mechanism="chroot", emulated=False, baseline=True)

    def environment(self) -> dict[str, object]:
        return {"isolation": "chroot only: no namespaces, no cgroup limits",
                "placement": "each instance's commands in their own cgroup isolab/<id> without limits (one group's "
                             "CPU weight, like every other platform's instance)",
                # what the report's storage section calls this platform's storage (reporting.storage)
                "storage_driver": "host directory",
                "storage": "the shared rootfs read-only; /tmp and the volume are host directories (no copy-on-write)"}
