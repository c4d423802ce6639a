"""The `docker` platform: InstanceSpec -> a long-running container of the suite's own dockerd, through the
Docker SDK for Python (no CLI output is parsed).

An instance is a state dir claimed through runtime.state (`docker-<token>`, owner record) and a container
`isolab-docker-<token>` labelled with that id and its owner, made from the shared rootfs imported as
`isolab/rootfs:<hash>` (runtime.docker.image), running `sleep infinity` as pid 1 under Docker's defaults
(seccomp profile, capabilities, masked paths) with the spec's limits (runtime.docker.hostconfig) in the
cgroup `isolab/docker/<container id>`. Commands run through the Engine's exec API (output read against
the timeout, runtime.docker.streams); files move through put_archive/get_archive (runtime.docker.archive).
Network: Docker's `none` and `host`; `bridge` and `nat` are a `none` container wired afterwards by our
runtime's network code (runtime.container.netsetup: a veth on the suite's bridge, tc, the suite's DNAT
table), so Docker never makes a bridge, a route or a firewall rule. Quiesce: `docker pause` (the cgroup
freezer).

Leftovers: a crashed run's containers stay in dockerd; `cleanup_leftovers` removes every container that
carries our label and whose instance is not live (runtime.state), then stops the daemon when no process
uses it (runtime.docker.daemon). The generic sweep removes the state dir and the volume directory.
"""

from __future__ import annotations

import os
import shutil
import signal
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from runtime import state
from runtime.container.cgroups import cgroup_version
from runtime.container.container import block_device_of, dir_usage_bytes
from runtime.container.netsetup import ContainerNetwork
from runtime.container.wired import WiredInstance
from runtime.docker import archive, daemon, hostconfig, streams
from runtime.docker import image as docker_image
from runtime.errors import ExecTimeout, InstanceError, PlatformUnavailable, SpecError
from runtime.image.store import Image
from runtime.linux.transfer import TransferError
from runtime.naming import SCRATCH_ROOT, STATE_ROOT, scratch_dir
from runtime.platform import KIND_CONTAINER, ROLE_REFERENCE, Platform, PlatformInfo, StartPhases
from runtime.spec import ExecResult, InstanceSpec, parse_cpuset

INIT_ARGV = ["sleep", "infinity"]
NAME_PREFIX = "isolab-"
LABEL_INSTANCE = "org.isolab.instance"
LABEL_OWNER = "org.isolab.owner"
EXIT_STATUS_WAIT_S = 30.0  # the Engine records an exec's status a moment after its stream ends


def host_cpus() -> list[int]:
    """The host's online CPUs (what Docker checks cpusets and cpus against)."""
    try:
        return parse_cpuset(Path("/sys/devices/system/cpu/online").read_text().strip())
    except OSError:
        return sorted(os.sched_getaffinity(0))


def io_device_path() -> str | None:
    """The block device node (e.g. /dev/vda) holding Docker's data root, for blkio throttles; None if none."""
    majmin = block_device_of(daemon.DATA_ROOT if daemon.DATA_ROOT.exists() else daemon.DATA_ROOT.parent)
    if majmin is None:
        return None
    try:
        uevent = Path(f"/sys/dev/block/{majmin}/uevent").read_text()
    except OSError:
        return None
    for line in uevent.splitlines():
        if line.startswith("DEVNAME="):
            node = Path("/dev") / line.split("=", 1)[1]
            return str(node) if node.exists() else None
    return None


def swap_accounting() -> bool:
    """Whether memory+swap can be limited (cgroup v1: memory.memsw.*; v2: memory.swap.max)."""
    return Path("/sys/fs/cgroup/memory/memory.memsw.limit_in_bytes").exists() or \
        any(Path("/sys/fs/cgroup").glob("*/memory.swap.max"))


def _descendants(pid: int) -> list[int]:
    """`pid` and every process below it (by /proc/<pid>/stat ppid)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            ppid = int(Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(entry))
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        todo.extend(children.get(current, []))
    return found


class DockerInstance(WiredInstance):
    """A running container of the suite's dockerd (see the module docstring)."""

    platform = "docker"

    def __init__(self, client: Any, instance_id: str, state_dir: Path, spec: InstanceSpec) -> None:
        self.client = client
        self.instance_id = instance_id
        self.spec = spec
        self.start_phases = StartPhases()
        self.state_dir = state_dir
        self.name = f"{NAME_PREFIX}{instance_id}"
        self.layer_dir = scratch_dir(instance_id)
        self.volume = self.layer_dir / "volume" if spec.volume else None
        self.network = ContainerNetwork(instance_id, spec)
        self.ignored: dict[str, object] = {}
        self.container: Any = None
        self.container_id: str | None = None
        self.pid: int | None = None
        self.paused = False
        self._destroyed = False

    # ---- start ----------------------------------------------------------------------------------
    def start(self, tag: str) -> None:
        if self.volume is not None:
            SCRATCH_ROOT.mkdir(parents=True, exist_ok=True)
            self.layer_dir.mkdir(mode=0o700)
            self.volume.mkdir()
        wants_io = any(k.startswith("io_") for k in self.spec.limits())
        args, self.ignored = hostconfig.create_args(
            self.spec, host_cpus=host_cpus(), io_device=io_device_path() if wants_io else None,
            swap_accounting=swap_accounting(), volume=self.volume)
        self.ignored.update(self.network.ignored_limits())
        self.network.prepare()  # the bridge(s) and an address (bridge, nat)
        self.start_phases.lap("prepare")
        labels = {LABEL_INSTANCE: self.instance_id, LABEL_OWNER: f"{state.me().pid}:{state.me().start}"}
        self.container = self.client.containers.create(tag, INIT_ARGV, name=self.name, labels=labels,
                                                       detach=True, **args)
        self.container_id = self.container.id
        state.update(self.state_dir, container=self.name, container_id=self.container_id)
        self.start_phases.lap("create")
        self.container.start()
        self.container.reload()
        self.pid = int(self.container.attrs["State"]["Pid"])
        if not self.container.attrs["State"]["Running"] or self.pid <= 0:
            raise InstanceError(f"docker {self.instance_id}: the container is not running after start "
                                f"({self.container.attrs['State'].get('Error') or self.container.status})")
        state.update(self.state_dir, pid=self.pid)
        self.start_phases.lap("start")
        if self.network.needs_wiring:  # a `none` container gets its veth now, like CNI would
            self.network.attach(self.pid)
            state.update(self.state_dir, network=self.network.state())
            self.start_phases.lap("network")

    # ---- use ------------------------------------------------------------------------------------
    def exec(self, argv: Sequence[str], timeout: float = 600.0,
             env: dict[str, str] | None = None) -> ExecResult:
        """The Engine's exec API; the output is read until the command ends or `timeout` passes (then the
        command and everything it started are killed and ExecTimeout is raised)."""
        api = self.client.api
        began = time.perf_counter()
        deadline = time.monotonic() + timeout
        environment = [f"{k}={v}" for k, v in (env or {}).items()] or None  # on top of the container's env
        try:
            exec_id = api.exec_create(self.container_id, list(argv), stdout=True, stderr=True,
                                      environment=environment)["Id"]
            sock_io = api.exec_start(exec_id, socket=True)
        except Exception as exc:
            raise InstanceError(f"docker {self.instance_id}: exec {argv[0] if argv else '?'}: {exc}") from exc
        sock = getattr(sock_io, "_sock", sock_io)
        demux = streams.Demux()
        finished = False
        try:
            finished = streams.read_until(sock, deadline, demux)
        finally:
            if not finished:  # the deadline, or an exception (Ctrl-C): nothing keeps running inside
                self._kill_exec(exec_id)
            sock.close()
            sock_io.close()
        if not finished:
            raise ExecTimeout(f"docker {self.instance_id}: {argv[0] if argv else '?'} did not finish in "
                              f"{timeout:g} s")
        code = self._exit_code(exec_id)
        return ExecResult(tuple(argv), code, demux.out.decode(errors="replace"),
                          demux.err.decode(errors="replace"), time.perf_counter() - began)

    def _exit_code(self, exec_id: str) -> int:
        """The exec's exit status; the Engine records it a moment after the stream closes."""
        deadline = time.monotonic() + EXIT_STATUS_WAIT_S
        while True:
            info = self.client.api.exec_inspect(exec_id)
            if not info.get("Running") and info.get("ExitCode") is not None:
                return int(info["ExitCode"])
            if time.monotonic() > deadline:
                raise InstanceError(f"docker {self.instance_id}: no exit status for exec {exec_id[:12]} "
                                    f"{EXIT_STATUS_WAIT_S:g} s after its output ended")
            time.sleep(0.005)

    def _kill_exec(self, exec_id: str) -> None:
        try:
            pid = int(self.client.api.exec_inspect(exec_id).get("Pid") or 0)
        except Exception:
            return
        if pid <= 0:
            return
        for victim in reversed(_descendants(pid)):
            try:
                os.kill(victim, signal.SIGKILL)
            except ProcessLookupError:
                pass

    def put_file(self, local: Path, remote: str) -> None:
        """put_archive: Docker resolves the directory inside the container's root and replaces (never
        follows) a symlink at the name."""
        what = f"docker {self.instance_id}: put_file {remote}"
        parent, name = archive.split(remote, what)
        with archive.file_archive(Path(local), name) as data:
            try:
                ok = self.client.api.put_archive(self.container_id, parent, data)
            except Exception as exc:
                raise TransferError(f"{what}: {_api_reason(exc)}") from exc
        if not ok:
            raise TransferError(f"{what}: Docker refused the archive")

    def get_file(self, remote: str, local: Path) -> None:
        """get_archive of the path (a symlink is followed once, to the target Docker resolved inside the
        container); only a single regular file is accepted (runtime.docker.archive)."""
        what = f"docker {self.instance_id}: get_file {remote}"
        path = posixpath_norm(remote, what)
        for _ in range(2):
            try:
                chunks, info = self.client.api.get_archive(self.container_id, path)
            except Exception as exc:
                raise TransferError(f"{what}: {_api_reason(exc)}") from exc
            target = info.get("linkTarget") or ""
            if target and archive.go_mode_kind(int(info.get("mode", 0))) == "a symbolic link":
                for _chunk in chunks:  # drain the response
                    pass
                path = posixpath_norm(target, what)
                continue
            kind = archive.go_mode_kind(int(info.get("mode", 0)))
            if kind is not None:
                for _chunk in chunks:
                    pass
                raise TransferError(f"{what}: refused: it is {kind} inside the instance (file transfer reads "
                                    "regular files only)")
            archive.extract_single_file(chunks, archive.split(path, what)[1], Path(local), what)
            return
        raise TransferError(f"{what}: refused: a symbolic link to a symbolic link")

    def host_pids(self) -> list[int]:
        """The container's init, and the containerd shim that holds it (its per-container overhead)."""
        if self.pid is None or not Path(f"/proc/{self.pid}").exists():
            return []
        pids = [self.pid]
        try:
            ppid = int(Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
            if Path(f"/proc/{ppid}/comm").read_text().startswith("containerd-shim"):
                pids.insert(0, ppid)
        except (OSError, IndexError, ValueError):
            pass
        return pids

    def disk_usage_bytes(self) -> int | None:
        """Bytes in the container's writable overlay layer (Docker's UpperDir)."""
        try:
            self.container.reload()
            upper = self.container.attrs["GraphDriver"]["Data"]["UpperDir"]
        except Exception:
            return None
        return dir_usage_bytes(Path(upper)) if upper and Path(upper).exists() else 0

    def metadata(self) -> dict[str, object]:
        meta: dict[str, object] = {
            "runtime": "docker", "cgroup_version": cgroup_version(),
            "seccomp": "docker-default" if self.spec.seccomp == "default" else "unconfined",
            "user_namespace": "none (Docker's userns-remap is daemon-wide; InstanceSpec.userns is not mapped)"}
        if self.ignored:
            meta["limits_ignored"] = sorted(self.ignored)
        return meta

    def quiesce(self) -> str | None:
        self.container.pause()
        self.paused = True
        return "cgroup freezer (docker pause)"

    def wake(self) -> None:
        if self.paused:
            self.container.unpause()
            self.paused = False

    # ---- stop -----------------------------------------------------------------------------------
    def destroy(self) -> None:
        """Remove the container (killed, with its writable layer), unwire the network, remove the volume
        and the state dir. Idempotent."""
        if self._destroyed:
            return
        errors = []
        try:
            remove_container(self.client, self.name)
        except Exception as exc:
            errors.append(f"container: {_api_reason(exc)}")
        try:
            self.network.teardown()
        except Exception as exc:  # the network sweep finds the link by its name
            errors.append(f"network teardown: {exc}")
        shutil.rmtree(self.layer_dir, ignore_errors=True)
        if errors:
            raise InstanceError(f"docker {self.instance_id}: {'; '.join(errors)}")
        shutil.rmtree(self.state_dir, ignore_errors=True)
        self._destroyed = True


def posixpath_norm(remote: str, what: str) -> str:
    parent, name = archive.split(remote, what)
    return f"{parent.rstrip('/')}/{name}"


def _api_reason(exc: BaseException) -> str:
    explanation = getattr(exc, "explanation", None)
    return str(explanation or exc)


def remove_container(client: Any, ref: str) -> bool:
    """Unpause (frozen tasks cannot die), then force-remove a container with its anonymous volumes;
    False if there was none."""
    import docker.errors

    try:
        found = client.containers.get(ref)
    except docker.errors.NotFound:
        return False
    if found.status == "paused":
        try:
            found.unpause()
        except docker.errors.APIError:
            pass
    try:
        found.remove(force=True, v=True)
    except docker.errors.NotFound:
        return False
    return True


class DockerPlatform(Platform):
    """Docker Engine from Debian's docker.io, run by the suite itself (runtime.docker.daemon)."""

    name = "docker"
    colour = "#2496ed"
    network_modes_base = ("none", "host", "bridge")

    def __init__(self, image: Image | None = None, **_options: object) -> None:
        self.image = image
        self._client: Any = None
        self._image_facts: dict[str, object] = {}
        self._lock = threading.Lock()
        self._version: dict[str, Any] | None = None
        self._info: dict[str, Any] | None = None

    @property  # type: ignore[override]
    def network_modes(self) -> tuple[str, ...]:
        """none and host as Docker runs them; bridge and nat wired by our runtime's network code (nat where
        the host has nftables with DNAT, runtime.network.nat)."""
        from runtime.network.nat import nat_unavailable

        return self.network_modes_base + (("nat",) if nat_unavailable() is None else ())

    # ---- availability ---------------------------------------------------------------------------
    def check_available(self) -> None:
        if daemon.binary() is None:
            raise PlatformUnavailable("docker: dockerd is not installed (Debian package docker.io; "
                                      "`python -m bench setup` installs it)")
        try:
            import docker  # noqa: F401
        except ImportError as exc:
            raise PlatformUnavailable(f"docker: the Docker SDK for Python is missing ({exc}; "
                                      "pip package `docker`)") from exc
        if os.geteuid() != 0:
            raise PlatformUnavailable("docker: needs root (it starts its own dockerd)")
        if "overlay" not in Path("/proc/filesystems").read_text():
            raise PlatformUnavailable("docker: the kernel has no overlayfs (/proc/filesystems), which the "
                                      "overlay2 storage driver needs")
        self.client()
        if self.image is not None:
            self.ensure_image()  # here, not in the first create: an import is no start time

    def ensure_image(self) -> str:
        """The tag of the shared rootfs as a Docker image, imported on first use (runtime.docker.image)."""
        assert self.image is not None
        client = self.client()
        with self._lock:
            if not self._image_facts:
                self._image_facts = docker_image.ensure(client, self.image)
            return str(self._image_facts["tag"])

    def client(self) -> Any:
        """A client on the suite's dockerd, started on first use (PlatformUnavailable if it cannot start)."""
        with self._lock:
            if self._client is None:
                daemon.ensure_running()
                self._client = daemon.client()
                self.sweep_dead_containers()
            return self._client

    def check_spec(self, spec: InstanceSpec) -> None:
        """SpecError for what this platform cannot honour at all (limits it can skip are ignored_limits)."""
        if spec.network not in self.network_modes:
            raise SpecError(f"docker: network mode {spec.network!r} is not available here (only "
                            f"{', '.join(self.network_modes)})")
        hostconfig.check(spec, host_cpus())

    def create(self, spec: InstanceSpec) -> DockerInstance:
        self.check_spec(spec)
        if self.image is None:
            raise InstanceError("docker: no image given")
        tag = self.ensure_image()
        instance_id, state_dir = state.create(self.name)
        instance = DockerInstance(self.client(), instance_id, state_dir, spec)
        try:
            instance.start(tag)
        except BaseException as exc:
            try:
                instance.destroy()
            except Exception as cleanup_exc:  # the first error is the one to report
                exc.add_note(f"and cleaning up after it failed: {cleanup_exc}")
            if isinstance(exc, Exception) and not isinstance(exc, (InstanceError, SpecError)):
                raise InstanceError(f"docker {instance_id}: start failed: {_api_reason(exc)}") from exc
            raise
        return instance

    # ---- leftovers ------------------------------------------------------------------------------
    def sweep_dead_containers(self) -> list[str]:
        """Remove containers with our label whose instance is not live (a crashed run's)."""
        assert self._client is not None
        removed = []
        # ignore_removed: a container another run removes between the listing and its inspect is not an error
        for found in self._client.containers.list(all=True, filters={"label": LABEL_INSTANCE}, ignore_removed=True):
            instance_id = found.labels.get(LABEL_INSTANCE, "")
            if instance_id and state.is_live(STATE_ROOT / instance_id):
                continue
            if remove_container(self._client, found.id):
                removed.append(f"docker container {found.name}")
        return removed

    def cleanup_leftovers(self) -> list[str]:
        """Dead runs' containers (only if the suite's dockerd runs: it is never started for a cleanup),
        untagged remains of failed imports; then stop dockerd if no live process uses it."""
        removed: list[str] = []
        if daemon.running_pid() is not None and daemon.SOCKET.exists():  # (no ping: it may be slow under load)
            client = daemon.client(timeout=120)
            try:
                self._client = client
                removed += self.sweep_dead_containers()
                removed += docker_image.remove_stale(client, docker_image.cached_digests())
            finally:
                self._client = None
                client.close()
        removed += daemon.stop_if_unused()
        return removed

    # ---- description ----------------------------------------------------------------------------
    def _facts(self) -> tuple[dict[str, Any], dict[str, Any]]:
        if self._version is None or self._info is None:
            client = self.client()
            self._version, self._info = client.version(), client.info()
        return self._version, self._info

    def describe(self) -> PlatformInfo:
        """From the daemon's own version() and info() once this process uses it (after check_available());
        before that from `dockerd --version`, without starting anything."""
        if self._client is not None:
            version, info = self._facts()
            engine = str(version.get("Version", "?"))
            runtime, cgroup = info.get("DefaultRuntime", "runc"), info.get("CgroupVersion", cgroup_version())
        else:
            engine, runtime, cgroup = daemon.binary_version(), "runc", cgroup_version()
        return PlatformInfo(name=self.name, kind=KIND_CONTAINER, display_name="Docker", colour=self.colour,
                            mechanism=f"dockerd {engine.split('+')[0]} + {runtime}, cgroup v{cgroup}",
                            emulated=False, baseline=False, role=ROLE_REFERENCE)

    def environment(self) -> dict[str, object]:
        version, info = self._facts()
        components = {c.get("Name"): c.get("Version") for c in version.get("Components", [])}
        return {
            "engine": version.get("Version"), "api_version": version.get("ApiVersion"),
            "go": version.get("GoVersion"), "containerd": components.get("containerd"),
            "runc": components.get("runc"), "docker_init": components.get("docker-init"),
            "default_runtime": info.get("DefaultRuntime"), "storage_driver": info.get("Driver"),
            "cgroup_driver": info.get("CgroupDriver"), "cgroup_version": info.get("CgroupVersion"),
            "cgroup_parent": f"/{daemon.CGROUP}", "security_options": info.get("SecurityOptions"),
            "daemon": " ".join(daemon.argv("dockerd")[1:]), "data_root": str(daemon.DATA_ROOT),
            "exec_root": str(daemon.EXEC_ROOT),
            "lifecycle": "started by the platform on first use; stopped when the last process using it exits "
                         "and by `python -m bench cleanup` when nobody uses it",
            "image": dict(self._image_facts) or {"tag": docker_image.tag_for(self.image) if self.image else None},
            "init": " ".join(INIT_ARGV), "seccomp": "Docker's default profile", "capabilities": "Docker's defaults",
            "network_modes": list(self.network_modes),
            "network": "none and host: Docker's own; bridge/nat: a Docker `none` container given a veth on the "
                       "suite's bridge by runtime.container.netsetup (dockerd makes no bridge, route or "
                       "firewall rule: " + " ".join(daemon.NETWORK_FLAGS) + ")",
            "io_device": io_device_path(),
        }
