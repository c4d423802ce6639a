"""One container: create (dirs, network address), start (fork pid 1 into new namespaces; meanwhile make
the cgroup and wire the network; build the overlay root, pivot, harden, exec), exec, wait, kill, destroy.
With `InstanceSpec(volume=True)` the container also gets a data volume: the host directory
/var/tmp/isolab/<id>/volume (next to the writable layer, removed with it), bind-mounted at /mnt.
With `InstanceSpec(disk_quota=N)` the writable layer, overlay's work dir and the volume live on a
filesystem of N bytes of room made for the container (runtime.container.quota), unmounted on destroy.

`start` reads like the order of operations; each step that can fail reports which step and why, and
every failure tears down what was made so far. The state file /run/isolab/<id>/state.json lets the
CLI find running containers and `cleanup` find the leftovers of a runtime that was SIGKILLed.
"""

from __future__ import annotations

import atexit
import contextlib
import gc
import json
import os
import select
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

from runtime import state
from runtime.container import hardening, namespaces, quota, rootfs, seccomp, userns
from runtime.container import init as pid1
from runtime.container.cgroups import Cgroup, CgroupStats, make_cgroup
from runtime.container.netsetup import ContainerNetwork, loopback_up_here
from runtime.container.storage import DEFAULT_DRIVER, InstanceRoot, get_driver
from runtime.container.storage.base import block_device_of, dir_usage_bytes  # noqa: F401 (used from here)
from runtime.errors import ExecTimeout, ImageError, InstanceError, IsolabError, SpecError
from runtime.linux import idmap
from runtime.linux import syscalls as sc
from runtime.linux.process import forking, run_captured
from runtime.naming import SCRATCH_ROOT, STATE_ROOT, new_instance_id, scratch_dir, state_dir
from runtime.platform import StartPhases
from runtime.spec import ExecResult, InstanceSpec

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
STATE_FILE = "state.json"




class Container:
    """A container from read-only `layers` (base first) plus its own writable layer.

    argv None runs a pausing init (isolab-init, runtime.container.init; for `exec`); with `init` False argv
    itself is pid 1 (like crun).
    `volatile` mounts the writable layer without syncs (like podman for --rm containers): only for
    layers that are discarded on exit and workloads that do not rely on fsync.
    `ephemeral` puts the writable layer on a tmpfs that only the container's mount namespace sees (nothing
    of it on the host's disk, gone with the container; its pages are charged to the container's memory
    cgroup): for throwaway one-shot containers (Platform.run_once). Not with a user namespace, a volume
    or a disk quota. Such a container's state.json is only its owner record (what the sweep needs);
    it is not written again with its spec and pid (the CLI does not list it, like a container being made).
    """

    def __init__(self, spec: InstanceSpec, layers: Sequence[Path], argv: Sequence[str] | None = None, *,
                 init: bool = True, env: dict[str, str] | None = None, quiet: bool = False,
                 volatile: bool = False, ephemeral: bool = False,
                 image_name: str = "base", instance_id: str | None = None) -> None:
        if argv is not None and not argv:
            raise InstanceError("container: empty command")
        self.spec = spec
        self.layers = [Path(p) for p in layers]
        self.argv = list(argv) if argv is not None else None
        self.use_init = init or argv is None
        self.quiet = quiet or argv is None
        self.volatile = volatile  # overlay 'volatile': no syncs of the writable layer (thrown away on exit)
        if ephemeral and (spec.userns or spec.volume or spec.disk_quota is not None
                          or spec.storage_driver != DEFAULT_DRIVER):
            raise InstanceError("container: an ephemeral writable layer is an overlay without a user namespace, "
                                "a volume or a disk quota")
        self.ephemeral = ephemeral
        self.image_name = image_name
        self.instance_id = instance_id or new_instance_id("ct")
        self.state_dir = state_dir(self.instance_id)
        self.root = self.state_dir / "root"
        self.layer_dir = scratch_dir(self.instance_id)
        # the root filesystem from the image's layers (runtime.container.storage): where it lives
        self.storage = get_driver(spec.storage_driver)
        # with a disk quota the writable layer and the volume live on a filesystem of the quota's size,
        # unless the storage driver limits its roots itself (btrfs qgroups)
        self.quota_disk = None
        if spec.disk_quota is not None and self.storage.quota_kind == "filesystem":
            self.quota_disk = quota.QuotaDisk(self.instance_id, spec.disk_quota)
        self.quota_facts: dict[str, object] = {}
        write_dir = self.layer_dir if self.quota_disk is None else self.quota_disk.mountpoint
        self.fs = self.storage.layout(self.instance_id, self.layers, write_dir)
        self.upper = Path(self.fs.upper)  # the directory the container writes to (driver's writable layer)
        self.work = Path(self.fs.work) if self.fs.work else write_dir / "work"
        if spec.disk_quota is not None and spec.volume and self.quota_disk is None:
            raise SpecError(f"storage driver {spec.storage_driver}: a disk quota there limits the instance's "
                            "root only, not its data volume (a host directory): ask for one of them")
        self.volume = write_dir / "volume" if spec.volume else None  # bind-mounted at VOLUME_DIR
        # user namespace: the ids its root maps to, and the first process's working directory
        self.mapping: idmap.IdMapping | None = userns.SUITE_MAPPING if spec.userns else None
        self.userns_dir = self.state_dir / userns.WORKDIR
        self.userns_layers: str | None = None  # how the layers were mapped (idmapped mounts, chowned copies)
        self.env = {"PATH": DEFAULT_PATH, "HOME": "/root", "LANG": "C.UTF-8", "HOSTNAME": spec.hostname,
                    **spec.env, **(env or {})}
        self.cgroup: Cgroup = make_cgroup(self.instance_id, spec)
        self.network = ContainerNetwork(self.instance_id, spec)
        self.start_phases = StartPhases()
        self.ignored: dict[str, object] = {}
        self.pid: int | None = None
        self.returncode: int | None = None
        self.status = "new"
        self._ns: dict[str, int] = {}
        self._cgroup_made = False
        self._owned = True  # False for a handle loaded from another process's state
        self._pid_start: int | None = None  # pid 1's start time (/proc/<pid>/stat field 22): pid reuse guard
        self._static_state: dict[str, Any] | None = None
        self._bpf: bytes | None = None
        self._init_fd: int | None = None

    # ---- create ---------------------------------------------------------------------------------
    def create(self) -> Container:
        """Check the layers, make the state and layer dirs, reserve the address. (The cgroup is made in
        start(), concurrently with the child's namespace and mount work.)"""
        self.start_phases = StartPhases()
        for layer in self.layers:
            if not layer.is_dir():
                raise ImageError(f"container: layer directory {layer} does not exist")
        if self.spec.disk_quota is not None:
            quota.check(self.spec.disk_quota)
        _register_exit_hook()
        try:
            # root-only (0700; state.json 0600): state.json may hold -e secrets, and a setuid file made
            # inside the writable layer must not be reachable (let alone executable) for other host users
            state.claim(self.state_dir, "container")
            if not self.ephemeral:  # (an ephemeral layer is made in the container's own mount namespace)
                self.root.mkdir()
                _private_dir(self.layer_dir)
                if self.quota_disk is not None:
                    extra = self.storage.quota_extra_bytes(self.fs)
                    self.quota_disk.create(extra)
                self.storage.prepare(self.fs)
                if self.quota_disk is not None:
                    if extra:
                        self.quota_disk.settle()  # what the copy left beyond the quota is held back
                    self.quota_facts = self.quota_disk.describe()
                elif self.spec.disk_quota is not None:
                    self.quota_facts = self.storage.limit(self.fs, self.spec.disk_quota)
            if self.volume is not None:
                self.volume.mkdir()
            if self.mapping is not None:
                userns.prepare_dirs(self.userns_dir, self.upper if self._layered else None, self.volume,
                                    self.mapping)
            self.status = "created"
            if not self.ephemeral:  # a one-shot is recorded by its owner record alone (see ephemeral)
                self.save_state()
            self.network.prepare()
            self.ignored.update(self.network.ignored_limits())
        except BaseException:
            self.destroy()
            raise
        return self

    def seccomp_program(self) -> seccomp.Program | None:
        """The compiled filter of spec.seccomp (built once per process; None when unconfined)."""
        return seccomp.program(self.spec.seccomp, hardening.DEFAULT_CAP_NAMES)

    def seccomp_description(self) -> str:
        """Which filter runs in the container (for every sample's metadata)."""
        return seccomp.describe(self.spec.seccomp, hardening.DEFAULT_CAP_NAMES)

    def _io_device(self) -> str | None:
        wants_io = any(getattr(self.spec, k) is not None
                       for k in ("io_read_bps", "io_write_bps", "io_read_iops", "io_write_iops"))
        if not wants_io:
            return None
        # with a disk quota the writable layer is on its own loop device: throttle that one
        if self.quota_disk is not None:
            return block_device_of(self.quota_disk.mountpoint)
        return self.storage.block_device(self.fs)

    # ---- start ----------------------------------------------------------------------------------
    def start(self) -> Container:
        """Fork pid 1 into its namespaces, wire the network, and wait until the workload was exec'd."""
        if self.status != "created":
            self.create()
        pipes: dict[str, int] = {}
        try:
            self._bpf = None if (program := self.seccomp_program()) is None else program.bpf
            self._init_fd = pid1.memfd() if self.use_init else None
            pipes["ready_r"], pipes["ready_w"] = os.pipe()
            pipes["go_r"], pipes["go_w"] = os.pipe()
            if self.network.needs_wiring:
                pipes["sync_r"], pipes["sync_w"] = os.pipe()
            forked = time.perf_counter()
            if self.mapping is None:
                self.pid = namespaces.fork_pid1(lambda: self._child(pipes))
            else:
                self.pid, self.userns_layers = namespaces.fork_pid1_userns(
                    lambda: self._child(pipes), self._mount_userns_root, self.userns_dir)
            for end in ("ready_w", "sync_w", "go_r"):
                if end in pipes:
                    os.close(pipes.pop(end))
            self.status = "running"
            try:
                parent_laps = self._join_and_wire(pipes)
            except (OSError, IsolabError) as exc:
                self._raise_child_error(pipes["ready_r"], exc)
            if not self.ephemeral:  # a one-shot is recorded by its owner record alone (see ephemeral)
                self.save_state()
            marks = self._await_ready(pipes["ready_r"])
            self._record_phases(forked, marks, parent_laps, time.perf_counter())
            self.start_marks = {"forked": forked, **marks}
            if self.use_init and self.argv is None:
                self._ns = namespaces.open_namespaces(self.pid, user=self.mapping is not None)
        except BaseException:
            self.destroy()
            raise
        finally:
            for fd in pipes.values():
                os.close(fd)
        return self

    def _join_and_wire(self, pipes: dict[str, int]) -> dict[str, float]:
        """While the child builds its root: make the cgroup and put the child in it, wire its network,
        then let it exec.

        (v1 joins write one file per hierarchy and may wait for an RCU grace period: doing it here
        overlaps that wait with the child's mounts on another CPU.)"""
        assert self.pid is not None
        t0 = time.perf_counter()
        self._cgroup_made = True
        self.cgroup.create()
        self.ignored.update(self.cgroup.apply(self.spec, self._io_device()))
        self.cgroup.join(self.pid)  # pid 1 too is in every cgroup (its oom_score_adj is -999)
        t1 = time.perf_counter()
        if "sync_r" in pipes and os.read(pipes["sync_r"], 1) == b"n":
            self.network.attach(self.pid)
        t2 = time.perf_counter()
        os.write(pipes["go_w"], b"g")
        return {"cgroup": t1 - t0, "network": t2 - t1}

    def _raise_child_error(self, ready_r: int, exc: BaseException) -> None:
        """The runtime's side of the start failed: if the child failed first, report the child's error."""
        self.kill(signal.SIGKILL)
        chunks = []
        while chunk := os.read(ready_r, 65536):
            chunks.append(chunk)
        for line in b"".join(chunks).decode(errors="replace").splitlines():
            if line.startswith("E"):
                raise InstanceError(f"container {self.instance_id}: {line[1:]}") from exc
        if isinstance(exc, IsolabError):
            raise exc
        raise InstanceError(f"container {self.instance_id}: start: {exc}") from exc

    def _await_ready(self, ready_r: int) -> dict[str, float]:
        chunks = []
        while chunk := os.read(ready_r, 65536):
            chunks.append(chunk)
        marks: dict[str, float] = {}
        error = None
        for line in b"".join(chunks).decode(errors="replace").splitlines():
            if line.startswith("T"):
                marks = json.loads(line[1:])
            elif line.startswith("E"):
                error = line[1:]
        if error is not None:
            raise InstanceError(f"container {self.instance_id}: {error}")
        if "go" not in marks:
            self.wait(timeout=5)
            raise InstanceError(f"container {self.instance_id}: pid 1 died during start "
                                f"(exit status {self.returncode})")
        return marks

    def _record_phases(self, forked: float, marks: dict[str, float], parent: dict[str, float],
                       ready: float) -> None:
        """Phase durations. The cgroup join and the network wiring run in the runtime while the child
        mounts its root, so the phases overlap in time and their sum can exceed the wall time."""
        phases = self.start_phases.phases
        phases["cgroup"] = parent["cgroup"]
        phases["namespaces"] = marks["namespaces"] - forked
        phases["mounts"] = marks["mounts"] - marks["namespaces"]
        phases["network"] = parent["network"]
        phases["exec"] = ready - marks["go"]

    def _mount_userns_root(self, pid: int) -> str:
        """In the user namespace helper (host root): maps, idmapped layers, overlay and volume."""
        assert self.mapping is not None
        if not self._layered:  # a btrfs snapshot or a vfs copy: the whole root idmapped
            return userns.mount_idmapped_root(pid, self.userns_dir, self.upper, self.volume, self.mapping)
        return userns.mount_root(pid, self.userns_dir, self.layers, self.upper, self.work, self.volatile,
                          self.volume, self.mapping)

    # ---- inside the child (pid 1 of the new pid namespace) ----------------------------------------
    def _child(self, pipes: dict[str, int]) -> None:
        ready_w = pipes["ready_w"]
        step = "setsid"
        try:
            gc.disable()  # a collection here would touch (copy-on-write) the whole inherited heap
            os.setsid()  # own session and process group, no controlling terminal
            step = "close inherited fds"
            self._child_fds(pipes)
            step = "join a fresh session keyring"
            sc.join_session_keyring()
            if self.mapping is not None:
                step = "become root of the user namespace"
                idmap.become_root()
            step = "unshare(mnt|uts|ipc|net)"
            flags = namespaces.CHILD_FLAGS & (~sc.CLONE_NEWNET if self.network.mode == "host" else -1)
            sc.unshare(flags)
            step = "sethostname"
            socket.sethostname(self.spec.hostname)
            if self.network.wants_netns:
                step = "bring up lo"
                loopback_up_here()
            marks = {"namespaces": time.perf_counter()}
            if "sync_w" in pipes:
                os.write(pipes["sync_w"], b"n")
            step = "prepare root"
            if self.ephemeral:
                rootfs.prepare_ephemeral_root(self.layers, self.state_dir)
            elif self.mapping is None:
                rootfs.prepare_root(lambda target: self.storage.mount(self.fs, target, self.volatile),
                                    self.root, self.volume)
            else:  # the overlay is mounted; "root" is reached from the working directory
                rootfs.finish_root("root", userns=True, own_netns=self.network.wants_netns)
            if self.quiet:
                step = "stdio on the container's /dev/null"
                _stdio_to_null()
            marks["mounts"] = time.perf_counter()
            step = "wait for the runtime (cgroup, network)"
            if os.read(pipes["go_r"], 1) != b"g":
                raise InstanceError("the runtime did not finish the cgroup/network setup")
            marks["go"] = time.perf_counter()
            if self.use_init:
                pid1.set_oom_score_adj(-999)  # best effort: needs CAP_SYS_RESOURCE; the workload resets it
            step = "drop capabilities, load the seccomp filter"
            hardening.harden_process(self._bpf)
            os.write(ready_w, b"T" + json.dumps(marks).encode() + b"\n")
            if self.use_init:
                step = "exec the container init"
                assert self._init_fd is not None
                pid1.exec_init(self._init_fd, ready_w, self.argv, self.env)
            self._exec_workload(ready_w)
        except BaseException as exc:  # report any failure to the parent, never return into its code
            _report(ready_w, f"{step}: {exc}")
            os._exit(127)

    def _child_fds(self, pipes: dict[str, int]) -> None:
        keep = {pipes[k] for k in ("ready_w", "sync_w", "go_r") if k in pipes} | {self._init_fd}
        for name in os.listdir("/proc/self/fd"):
            fd = int(name)
            if fd > 2 and fd not in keep:
                try:
                    os.close(fd)
                except OSError:
                    pass

    def _exec_workload(self, ready_w: int) -> None:
        assert self.argv is not None
        try:
            os.execvpe(self.argv[0], self.argv, self.env)
        except FileNotFoundError:
            _report(ready_w, f"command not found in the image: {self.argv[0]}")
            os._exit(127)
        except OSError as exc:
            _report(ready_w, f"execve({self.argv[0]}): {exc.strerror}")
            os._exit(126)

    # ---- running container ----------------------------------------------------------------------
    def wait(self, timeout: float | None = None) -> int:
        """Wait for pid 1; returns its exit code (negative signal number if it died by a signal)."""
        if self.returncode is not None or self.pid is None:
            return self.returncode if self.returncode is not None else -1
        deadline = None if timeout is None else time.monotonic() + timeout
        if not self._owned:
            return self._wait_foreign(deadline)
        while True:
            pid, status = os.waitpid(self.pid, 0 if deadline is None else os.WNOHANG)
            if pid:
                self.returncode = os.waitstatus_to_exitcode(status)
                self.status = "exited"
                return self.returncode
            if deadline is not None and time.monotonic() > deadline:
                raise ExecTimeout(f"container {self.instance_id}: still running after {timeout} s")
            _wait_exit(self.pid, deadline)

    def _wait_foreign(self, deadline: float | None) -> int:
        while self._pid1_alive():
            if deadline is not None and time.monotonic() > deadline:
                raise ExecTimeout(f"container {self.instance_id}: pid {self.pid} still running")
            time.sleep(0.01)
        self.returncode = -1
        self.status = "exited"
        return self.returncode

    def kill(self, sig: int = signal.SIGTERM) -> None:
        """Send `sig` to pid 1 (the init forwards it to the workload).

        Another process's container is signalled only while its recorded pid still has its recorded
        start time (a reused pid is never signalled)."""
        if self.pid is None or self.returncode is not None:
            return
        if not self._owned:
            if isinstance(self._pid_start, int):
                state.signal_owner(state.Owner(self.pid, self._pid_start), sig)
            return
        try:
            os.kill(self.pid, sig)
        except ProcessLookupError:
            pass

    def _pid1_alive(self) -> bool:
        if not isinstance(self.pid, int) or not isinstance(self._pid_start, int):
            return False
        return state.Owner(self.pid, self._pid_start).alive()

    def exec(self, argv: Sequence[str], timeout: float = 600.0, env: dict[str, str] | None = None,
             **popen: Any) -> ExecResult:
        """Run argv inside the running container (all its namespaces and cgroup), capture its output."""
        return run_captured(lambda: self.popen(argv, env=env, **popen), argv, timeout,
                            f"container {self.instance_id}")

    def popen(self, argv: Sequence[str], env: dict[str, str] | None = None,
              **kwargs: Any) -> subprocess.Popen[Any]:
        """Start argv inside the container; the caller waits. Raises FileNotFoundError if not in the image."""
        if self.pid is None or self.returncode is not None or self.status != "running":
            raise InstanceError(f"container {self.instance_id}: not running")
        if not self._ns:
            self._ns = namespaces.open_namespaces(self.pid, user=self.mapping is not None)
        environment = {**self.env, **(env or {})}
        kwargs.setdefault("stdout", subprocess.PIPE)
        kwargs.setdefault("stderr", subprocess.PIPE)
        kwargs.setdefault("stdin", subprocess.DEVNULL)
        if "text" not in kwargs and "encoding" not in kwargs:
            kwargs["text"] = True
            kwargs.setdefault("errors", "replace")
        procs_files = [str(p) for p in self.cgroup.procs_files()]
        ns = dict(self._ns)
        bpf = None if (program := self.seccomp_program()) is None else program.bpf

        def enter() -> None:
            for path in procs_files:
                with open(path, "w") as f:
                    f.write("0")
            namespaces.join_namespaces(ns)
            sc.join_session_keyring()
            hardening.harden_process(bpf)

        kwargs.setdefault("start_new_session", True)  # own session: no host terminal, no host group
        with forking(), namespaces.children_in_pidns(ns["pid"]):
            return subprocess.Popen(list(argv), env=environment, preexec_fn=enter, **kwargs)

    # ---- files and usage ------------------------------------------------------------------------
    def root_path(self) -> Path:
        """The container's root directory as the host reaches it (/proc/<pid>/root). Never join a
        container path to it: resolve paths inside it with runtime.linux.transfer (openat2 IN_ROOT)."""
        if self.pid is None or self.returncode is not None:
            raise InstanceError(f"container {self.instance_id}: not running")
        return Path(f"/proc/{self.pid}/root")

    def stats(self) -> CgroupStats:
        return self.cgroup.stats()

    def disk_usage_bytes(self) -> int:
        """Bytes of the writable layer beyond what it shares with the image (the data volume, if any, is
        not counted): the storage driver's figure."""
        return self.storage.disk_usage_bytes(self.fs)

    @property
    def _layered(self) -> bool:
        """Whether the root is an overlay of the image's layers (else one directory of the driver's)."""
        return self.spec.storage_driver == DEFAULT_DRIVER

    def owners_to_image(self) -> Callable[[Path], None] | None:
        """What turns a committed layer's owners back into image ids: an overlay's writable layer under a
        user namespace holds host ids (100000...); an idmapped whole root keeps image ids (nothing to do)."""
        if self.mapping is None or not self._layered:
            return None
        mapping = self.mapping
        return lambda top: userns.unshift_tree(top, mapping)

    def diff(self) -> list[tuple[str, str]]:
        """('A'|'C'|'D', '/path') of the container's changes against its image (any storage driver)."""
        return self.storage.diff(self.fs)

    def write_layer(self, dest: Path) -> None:
        """The container's changes as a layer directory `dest` (for LayerStore.commit)."""
        self.storage.commit(self.fs, dest)

    # ---- teardown -------------------------------------------------------------------------------
    def stop(self) -> None:
        """Kill everything in the container and release its kernel objects (the layer stays)."""
        namespaces.close_namespaces(self._ns)
        if self._cgroup_made:  # frozen tasks cannot die (interleaved runs freeze idle containers)
            with contextlib.suppress(Exception):
                self.cgroup.freeze(False)
        if self.pid is not None and self.returncode is None:
            self.kill(signal.SIGKILL)
            self.wait(timeout=10)
        if self._cgroup_made:
            self.cgroup.kill_all()
            busy = self.cgroup.remove()
            self._cgroup_made = bool(busy)
        self.network.teardown()
        if self.status in ("running", "created"):
            self.status = "exited"

    def destroy(self) -> None:
        """stop(), then remove the writable layer, the data volume and the state dir. Idempotent."""
        try:
            self.stop()
        finally:  # (other mounts live in the container's own mount namespace)
            try:
                self.storage.remove(self.fs)
            finally:
                if self.quota_disk is not None:
                    self.quota_disk.remove()
                shutil.rmtree(self.layer_dir, ignore_errors=True)
            shutil.rmtree(self.state_dir, ignore_errors=True)
            self.status = "destroyed"

    def save_state(self) -> None:
        """Write state.json atomically (the spec part is serialised once per container)."""
        if self._static_state is None:
            self._static_state = {"id": self.instance_id, "kind": "container", **state.owner_fields(),
                                  "argv": self.argv,
                                  "image": self.image_name, "layers": [str(p) for p in self.layers],
                                  "storage": self.fs.to_dict(),
                                  "hostname": self.spec.hostname, "created": time.time(),
                                  "userns": None if self.mapping is None else userns.describe(self.mapping),
                                  "spec": self.spec.to_dict()}
        if self.pid is not None and self._pid_start is None and self._owned:
            self._pid_start = state.start_time(self.pid)
        # An exited container whose record is saved was stopped on purpose and kept (for `commit`, `diff`,
        # `rm`): not a leftover, whatever became of its owner (runtime.state.is_kept).
        data = {**self._static_state, "status": self.status, "kept": self.status == "exited",
                "pid": self.pid, "pid_start": self._pid_start,
                "returncode": self.returncode, **{f"net_{k}": v for k, v in self.network.state().items()}}
        state.write_json(self.state_dir / STATE_FILE, data)  # atomic, 0600

    @classmethod
    def load(cls, instance_id: str) -> Container:
        """A handle on a container another runtime process started (from its state.json)."""
        path = state_dir(instance_id) / STATE_FILE
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError:
            raise InstanceError(f"no such container {instance_id!r} (no {path})") from None
        except (OSError, json.JSONDecodeError) as exc:
            raise InstanceError(f"container {instance_id}: unreadable {path}: {exc}") from exc
        if not isinstance(data, dict) or "spec" not in data:
            raise InstanceError(f"container {instance_id}: {path} is not a complete container record (yet)")
        try:
            spec = InstanceSpec(**data["spec"])
        except (TypeError, ValueError, IsolabError) as exc:  # another isolab version's (or a broken) record
            raise InstanceError(f"container {instance_id}: {path} has a spec this version cannot read: {exc}") from exc
        container = cls(spec, data["layers"], data.get("argv"), image_name=data.get("image", "base"),
                        instance_id=instance_id)
        container.pid = data.get("pid")
        container._pid_start = data.get("pid_start")
        container.status = data.get("status", "exited")
        container.returncode = data.get("returncode")
        container.network.address = data.get("net_address")
        if isinstance(data.get("storage"), dict):  # where its root is, as the runtime that made it laid it out
            with contextlib.suppress(KeyError, TypeError, ValueError):
                container.fs = InstanceRoot.from_dict(data["storage"])
                container.upper = Path(container.fs.upper)
        container._cgroup_made = True
        container._owned = False
        if container.status == "running" and not container._pid1_alive():
            container.status = "exited"
        if container.status != "running":
            container.returncode = container.returncode if container.returncode is not None else -1
        return container

    def __enter__(self) -> Container:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.destroy()


_EXIT_HOOK: list[bool] = []


def remove_shared_parents() -> None:
    """Remove the shared `isolab` cgroup parents and the state/scratch roots if nothing uses them.

    Runs at interpreter exit of a process that made containers (re-creating the parents on every
    start would cost about a millisecond); `cleanup` does the same for crashed runtimes."""
    for directory in (STATE_ROOT, SCRATCH_ROOT):
        try:
            directory.rmdir()
        except OSError:
            pass  # other instances (or other platforms) still use it
    make_cgroup("parent-only").remove_parent_if_empty()


def _register_exit_hook() -> None:
    if not _EXIT_HOOK:
        _EXIT_HOOK.append(True)
        atexit.register(remove_shared_parents)


def _private_dir(path: Path) -> None:
    """Make `path` (not its parents) mode 0700 whatever the umask; fails if it exists."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.mkdir(0o700)
    os.chmod(path, 0o700)


def _wait_exit(pid: int, deadline: float) -> None:
    """Sleep until `pid` (our child) exits or `deadline` (time.monotonic) passes: a pidfd becomes readable
    when the process exits, so no polling interval is added to a short command's time."""
    try:
        fd = os.pidfd_open(pid)
    except OSError:  # already reaped, or a kernel without pidfds
        time.sleep(0.005)
        return
    try:
        select.select([fd], [], [], max(0.0, deadline - time.monotonic()))
    finally:
        os.close(fd)


def _stdio_to_null() -> None:
    """Point stdin, stdout and stderr at /dev/null of the current root (the container's, after pivot)."""
    null = os.open("/dev/null", os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(null, fd)
    os.close(null)


def _report(fd: int, message: str) -> None:
    try:
        os.write(fd, b"E" + message.replace("\n", " ").encode() + b"\n")
    except OSError:
        pass
