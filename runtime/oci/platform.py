"""The `crun` and `runc` platforms: InstanceSpec -> an OCI bundle -> a long-running container of a
production OCI runtime, driven through the runtime's own CLI.

An instance is a state dir claimed through runtime.state (`<runtime>-<token>`, owner record), holding
the bundle, the runtime's own state (`--root`) and the mount point of the root: an overlay of the shared
rootfs (read-only lower) and a writable upper under the scratch root, like our runtime's. The container
(`isl<token>`) runs `sleep infinity` as pid 1 in the cgroup `isolab/<instance id>`; commands run through
`<runtime> exec`; files move through the host's view of the root (runtime.linux.transfer). A crashed run's
containers are swept like ours: the cgroup sweep kills what runs in `isolab/<id>`, mounts under the dead
state dir are detached and the dir, with the runtime's state, removed.
Network: none, host (no netns), bridge and nat, wired by our runtime's network code
(runtime.container.netsetup) into the created container's netns between `create` and `start`.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path

from runtime import state
from runtime.container.cgroups import cgroup_version, make_cgroup
from runtime.container.cgroups.base import kill_procs, rmdir_retry
from runtime.container.container import block_device_of, dir_usage_bytes
from runtime.container.netsetup import ContainerNetwork
from runtime.container.rootfs import mount_overlay
from runtime.container.wired import HostRootInstance
from runtime.errors import ExecTimeout, InstanceError, PlatformUnavailable, SpecError
from runtime.image.store import Image
from runtime.linux import syscalls as sc
from runtime.naming import CGROUP_PARENT, LINK_PREFIX, SCRATCH_ROOT, scratch_dir
from runtime.oci import bundle, hybrid
from runtime.platform import (
    KIND_CONTAINER,
    ROLE_REFERENCE,
    Platform,
    PlatformInfo,
    RunOnce,
    StartPhases,
)
from runtime.spec import ExecResult, InstanceSpec

INIT_ARGV = ("sleep", "infinity")
RUNTIME_TIMEOUT_S = 60.0


class OciRuntime:
    """One runtime binary and how to call it (crun through the hybrid-host workaround when needed)."""

    def __init__(self, name: str, binary: str, flags: Sequence[str] = ()) -> None:
        self.name = name
        self.binary = binary
        self.flags = list(flags)  # global flags after --root (runsc: --platform, --network, ...)
        self.prefix = hybrid.private_prefix() if name == "crun" and hybrid.hybrid_host() else []

    def argv(self, root: Path, *args: str) -> list[str]:
        return [*self.prefix, self.binary, "--root", str(root), *self.flags, *args]

    def call(self, root: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(self.argv(root, *args), stdin=subprocess.DEVNULL, capture_output=True,
                              text=True, timeout=RUNTIME_TIMEOUT_S)
        if check and proc.returncode != 0:
            raise InstanceError(f"{self.name} {args[0]} failed ({proc.returncode}): {proc.stderr.strip()}")
        return proc

    def version(self) -> str:
        out = subprocess.run([self.binary, "--version"], capture_output=True, text=True).stdout
        return out.splitlines()[0].strip() if out else "?"


def remove_stray_cgroups(instance_id: str) -> list[str]:
    """rmdir `isolab/<instance_id>` in the v1 hierarchies our cgroup code does not drive (crun and runc
    also make one in the `name=systemd` hierarchy); returns those still busy."""
    busy = []
    for path in Path("/sys/fs/cgroup").glob(f"*/{CGROUP_PARENT}/{instance_id}"):
        kill_procs(path / "cgroup.procs", timeout=1.0)
        if not rmdir_retry(path):
            busy.append(str(path))
    return busy


class OciInstance(HostRootInstance):
    """A running container of an OCI runtime (see the module docstring)."""

    def __init__(self, runtime: OciRuntime, instance_id: str, state_dir: Path, spec: InstanceSpec) -> None:
        self.rt = runtime
        self.platform = runtime.name
        self.instance_id = instance_id
        self.spec = spec
        self.start_phases = StartPhases()
        self.state_dir = state_dir
        self.container_id = f"{LINK_PREFIX}{instance_id.rsplit('-', 1)[-1]}"
        self.rt_root = state_dir / "runtime"
        self.bundle_dir = state_dir / "bundle"
        self.root = state_dir / "rootfs"
        self.layer_dir = scratch_dir(instance_id)
        self.volume = self.layer_dir / "volume" if spec.volume else None
        self.ignored: dict[str, object] = {}
        self.network = ContainerNetwork(instance_id, spec)
        self.pid: int | None = None
        self.run_log: Path | None = None
        self.paused = False
        self._destroyed = False

    # ---- start ----------------------------------------------------------------------------------
    def _bundle(self, lower: Path, argv: Sequence[str], volatile: bool = False) -> None:
        """The root (overlay on `lower`), the network's address and config.json with argv as the process."""
        upper, work = self.layer_dir / "upper", self.layer_dir / "work"
        SCRATCH_ROOT.mkdir(parents=True, exist_ok=True)
        self.layer_dir.mkdir(mode=0o700)
        upper.mkdir()
        work.mkdir()
        if self.volume is not None:
            self.volume.mkdir()
        self.root.mkdir()
        mount_overlay([lower], upper, work, self.root, volatile)
        cfg, self.ignored = self.bundle_config(argv)
        if self.network.mode == "bridge":
            self.ignored.pop("bandwidth", None)  # tc on both ends of the veth, as for our containers
        self.network.prepare()  # the bridge(s) and an address (bridge, nat)
        self.bundle_dir.mkdir()
        (self.bundle_dir / "config.json").write_text(json.dumps(cfg, indent=1))
        self.start_phases.lap("rootfs")

    def start(self, lower: Path) -> None:
        self._bundle(lower, INIT_ARGV)
        # The container's stdio: a file, never a pipe we would wait on (pid 1 keeps it open).
        log = self.state_dir / "init.log"
        with open(log, "wb") as out:
            proc = subprocess.run(self.rt.argv(self.rt_root, "create", "--bundle", str(self.bundle_dir),
                                               "--pid-file", str(self.state_dir / "init.pid"),
                                               self.container_id),
                                  stdin=subprocess.DEVNULL, stdout=out, stderr=out, timeout=RUNTIME_TIMEOUT_S)
        if proc.returncode != 0:
            raise InstanceError(f"{self.rt.name} create failed ({proc.returncode}): "
                                f"{log.read_text(errors='replace').strip()[-800:]}")
        self.pid = int((self.state_dir / "init.pid").read_text().strip())
        state.update(self.state_dir, runtime=self.rt.name, container_id=self.container_id, pid=self.pid)
        self.start_phases.lap("create")
        if self.network.needs_wiring:  # the init waits in its netns for `start`: wire it now, like CNI
            self.network.attach(self.pid)
            state.update(self.state_dir, network=self.network.state())
            self.start_phases.lap("network")
        self.rt.call(self.rt_root, "start", self.container_id)
        self.start_phases.lap("start")

    def bundle_config(self, argv: Sequence[str] = INIT_ARGV) -> tuple[dict[str, object], dict[str, object]]:
        """(config.json, limits of the spec it cannot express) for this instance's bundle, argv as its process."""
        wants_io = any(k.startswith("io_") for k in self.spec.limits())
        return bundle.config(
            self.spec, self.root, argv, f"/{CGROUP_PARENT}/{self.instance_id}", writable=True,
            volume=self.volume, io_device=block_device_of(SCRATCH_ROOT) if wants_io else None)

    def run_to_exit(self, lower: Path, argv: Sequence[str], timeout: float) -> int:
        """One-shot: `<runtime> run` with argv as pid 1 on a volatile overlay, in the foreground; returns its
        exit status (the command's, or the runtime's own when it failed: `run_log` then says why). The
        runtime removes the container when the command exits; destroy() removes the rest."""
        self._bundle(lower, argv, volatile=True)
        self.run_log = self.state_dir / "run.log"
        with open(self.run_log, "wb") as out:
            try:
                proc = subprocess.run(self.rt.argv(self.rt_root, "run", "--bundle", str(self.bundle_dir),
                                                   self.container_id),
                                      stdin=subprocess.DEVNULL, stdout=out, stderr=out, timeout=timeout)
            except subprocess.TimeoutExpired as exc:
                raise ExecTimeout(f"{self.rt.name} run {self.instance_id}: {argv[0] if argv else '?'} did not "
                                  f"finish in {timeout:g} s") from exc
        self.start_phases.lap("run")
        return proc.returncode

    # ---- use ------------------------------------------------------------------------------------
    def exec_argv(self, argv: Sequence[str], env: dict[str, str], pid_file: Path) -> list[str]:
        """The runtime's command line that runs `argv` in the container with the whole `env`."""
        env_args = [a for k, v in env.items() for a in ("--env", f"{k}={v}")]
        # --no-new-privs: crun's exec does not take it from the config as runc's does
        return self.rt.argv(self.rt_root, "exec", "--no-new-privs", *env_args, "--pid-file", str(pid_file),
                            self.container_id, *argv)

    def exec(self, argv: Sequence[str], timeout: float = 600.0,
             env: dict[str, str] | None = None) -> ExecResult:
        pid_file = self.state_dir / f"exec-{time.monotonic_ns()}.pid"
        # the whole environment each time: crun replaces the config's with whatever --env gives
        full_env = {"PATH": bundle.DEFAULT_PATH, **self.spec.env, **(env or {})}
        cmd = self.exec_argv(argv, full_env, pid_file)
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, errors="replace")
        try:
            try:
                out, err = proc.communicate(timeout=timeout)
            except subprocess.TimeoutExpired as exc:
                self._kill_exec(pid_file, proc)
                raise ExecTimeout(f"{self.rt.name} {self.instance_id}: {argv[0] if argv else '?'} did not "
                                  f"finish in {timeout:g} s") from exc
        finally:
            pid_file.unlink(missing_ok=True)
        return ExecResult(tuple(argv), proc.returncode, out, err, time.perf_counter() - t0)

    def _kill_exec(self, pid_file: Path, proc: subprocess.Popen[str]) -> None:
        try:
            os.kill(int(pid_file.read_text().strip()), signal.SIGKILL)
        except (OSError, ValueError):
            pass
        proc.kill()
        try:
            proc.communicate(timeout=5)
        except subprocess.TimeoutExpired:  # a child of the command still holds the pipes
            pass

    def host_pids(self) -> list[int]:
        """The container's init as the runtime reports it (`<runtime> state`)."""
        proc = self.rt.call(self.rt_root, "state", self.container_id, check=False)
        try:
            pid = int(json.loads(proc.stdout).get("pid", 0))
        except (ValueError, AttributeError):
            return []
        return [pid] if pid > 0 else []

    def disk_usage_bytes(self) -> int:
        upper = self.layer_dir / "upper"
        return dir_usage_bytes(upper) if upper.exists() else 0

    def metadata(self) -> dict[str, object]:
        meta: dict[str, object] = {"runtime": self.rt.name, "cgroup_version": cgroup_version(),
                                   "seccomp": "docker-default (OCI bundle)" if self.spec.seccomp == "default"
                                   else "unconfined",
                                   "user_namespace": "none (root inside is host root; InstanceSpec.userns is "
                                                     "not mapped into the bundle)"}
        if self.ignored:
            meta["limits_ignored"] = sorted(self.ignored)
        return meta

    def quiesce(self) -> str | None:
        self.rt.call(self.rt_root, "pause", self.container_id)
        self.paused = True
        return f"cgroup freezer ({self.rt.name} pause)"

    def wake(self) -> None:
        if self.paused:
            self.rt.call(self.rt_root, "resume", self.container_id)
            self.paused = False

    # ---- stop -----------------------------------------------------------------------------------
    def destroy(self) -> None:
        """kill + delete through the runtime, then make sure: kill and remove the cgroup, unmount the
        root, remove the layer and the state dir (with the bundle and the runtime's state)."""
        if self._destroyed:
            return
        if (self.rt_root / self.container_id).exists():  # (a finished `run` has removed its container)
            if self.paused:  # frozen tasks cannot die
                self.rt.call(self.rt_root, "resume", self.container_id, check=False)
            self.rt.call(self.rt_root, "kill", self.container_id, "KILL", check=False)
            self.rt.call(self.rt_root, "delete", "--force", self.container_id, check=False)
        try:
            self.network.teardown()  # veth, address, DNAT rules (nothing for none and host)
        except Exception as exc:  # the rest must still go; the network sweep finds the link by its name
            network_error: Exception | None = exc
        else:
            network_error = None
        cgroup = make_cgroup(self.instance_id, self.spec)
        if any(p.is_dir() for p in cgroup.paths()):
            cgroup.freeze(False)  # frozen tasks cannot die
        cgroup.kill_all()
        busy = cgroup.remove()
        busy += remove_stray_cgroups(self.instance_id)
        sc.detach_all_under(self.state_dir)
        shutil.rmtree(self.layer_dir, ignore_errors=True)
        if busy:
            raise InstanceError(f"{self.rt.name} {self.instance_id}: cgroup still busy: {', '.join(busy)}")
        shutil.rmtree(self.state_dir, ignore_errors=True)
        self._destroyed = True
        if network_error is not None:
            raise InstanceError(f"{self.rt.name} {self.instance_id}: network teardown: {network_error}")


class OciPlatform(Platform):
    """A production OCI runtime on a generated bundle; subclasses name the binary."""

    name = ""
    colour: str = "#8c8c8c"
    instance_class: type[OciInstance] = OciInstance

    @property  # type: ignore[override]
    def network_modes(self) -> tuple[str, ...]:
        """Like our runtime's, wired by the same code: none, host, bridge, and nat where the host has
        nftables with DNAT (runtime.network.nat)."""
        from runtime.network.nat import nat_unavailable

        return ("none", "host", "bridge") + (("nat",) if nat_unavailable() is None else ())

    def __init__(self, image: Image | None = None, **_options: object) -> None:
        self.image = image
        self.binary = shutil.which(self.name)

    def runtime(self) -> OciRuntime:
        if self.binary is None:
            raise PlatformUnavailable(self._missing())
        return OciRuntime(self.name, self.binary)

    def runtime_for(self, spec: InstanceSpec) -> OciRuntime:
        """The runtime as an instance of `spec` calls it (a subclass may add global flags)."""
        return self.runtime()

    def _missing(self) -> str:
        return (f"{self.name}: the {self.name} binary is not on PATH (Debian package {self.name}; "
                "`python -m bench setup` installs it)")

    def check_available(self) -> None:
        if self.binary is None:
            raise PlatformUnavailable(self._missing())
        if os.geteuid() != 0:
            raise PlatformUnavailable(f"{self.name}: needs root (namespaces, cgroups, overlayfs)")
        if "overlay" not in Path("/proc/filesystems").read_text():
            raise PlatformUnavailable(f"{self.name}: the kernel has no overlayfs (/proc/filesystems)")
        if self.name == "crun" and hybrid.hybrid_host() and shutil.which("unshare") is None:
            raise PlatformUnavailable("crun: this cgroup hybrid host needs unshare(1) (util-linux) to hide "
                                      "the cgroup2 mount from crun")

    def check_spec(self, spec: InstanceSpec) -> None:
        """SpecError for what this platform cannot honour at all (limits it can skip are ignored_limits)."""
        if spec.network not in self.network_modes:
            raise SpecError(f"{self.name}: network mode {spec.network!r} is not available here (only "
                            f"{', '.join(self.network_modes)})")

    def create(self, spec: InstanceSpec) -> OciInstance:
        self.check_spec(spec)
        if self.image is None:
            raise InstanceError(f"{self.name}: no image given")
        runtime = self.runtime_for(spec)
        instance_id, state_dir = state.create(self.name)
        instance = self.instance_class(runtime, instance_id, state_dir, spec)
        try:
            instance.start(self.image.rootfs)
        except BaseException:
            instance.destroy()
            raise
        return instance

    @property  # type: ignore[override]
    def one_shot(self) -> str:
        binary = Path(self.binary).name if self.binary else self.name
        return f"`{binary} run` in the foreground, the command as pid 1, volatile overlay, then removed"

    def run_once(self, argv: Sequence[str], spec: InstanceSpec | None = None, timeout: float = 120.0) -> RunOnce:
        """`<runtime> run` of a bundle whose process is argv; network modes that need wiring between create
        and start (bridge, nat) take the default path (create, exec, destroy)."""
        spec = spec or InstanceSpec()
        if ContainerNetwork(self.name, spec).needs_wiring:
            return super().run_once(argv, spec, timeout)
        self.check_spec(spec)
        if self.image is None:
            raise InstanceError(f"{self.name}: no image given")
        begin = time.perf_counter()
        instance_id, state_dir = state.create(self.name)
        instance = self.instance_class(self.runtime_for(spec), instance_id, state_dir, spec)
        detail = ""
        try:
            code = instance.run_to_exit(self.image.rootfs, argv, timeout)
            if code != 0 and instance.run_log is not None:
                detail = instance.run_log.read_text(errors="replace").strip()[-800:]
        finally:
            instance.destroy()
        return RunOnce(time.perf_counter() - begin, code, self.one_shot, dict(instance.start_phases.phases),
                       detail=detail, instance_id=instance_id)

    def cleanup_leftovers(self) -> list[str]:
        """`isolab/<name>-<token>` cgroups of dead instances in hierarchies runtime.sweep does not visit
        (name=systemd); the generic sweep has already killed their processes and removed their state dirs."""
        removed = []
        for path in Path("/sys/fs/cgroup").glob(f"*/{CGROUP_PARENT}/{self.name}-*"):
            if path.is_dir() and not state.token_live(path.name.rsplit("-", 1)[-1]) \
                    and not remove_stray_cgroups(path.name):
                removed.append(str(path))
        return removed

    def describe(self) -> PlatformInfo:
        return PlatformInfo(name=self.name, kind=KIND_CONTAINER, display_name=self.name,
                            colour=self.colour, mechanism=f"namespaces + cgroup v{cgroup_version()} ({self.name})",
                            emulated=False, baseline=False, role=ROLE_REFERENCE)

    def environment(self) -> dict[str, object]:
        env: dict[str, object] = {
            "runtime": self.runtime().version(), "binary": self.binary, "cgroup_version": cgroup_version(),
            "cgroup_driver": "cgroupfs", "namespaces": "pid mnt uts ipc net",
            "rootfs": "overlay: the shared rootfs (read-only lower) + a writable upper under the scratch root",
            "init": " ".join(INIT_ARGV), "seccomp": "docker-default as an OCI seccomp section",
            "capabilities": "Docker's defaults", "network_modes": list(self.network_modes),
            "network": "none: own netns; host: the host's; bridge/nat: a veth on the suite's bridge wired "
                       "into the created container's netns before `start` (runtime.container.netsetup)"}
        if self.name == "crun" and hybrid.hybrid_host():
            env["hybrid_cgroup_workaround"] = hybrid.WORKAROUND
        return env


class CrunPlatform(OciPlatform):
    name = "crun"
    colour = "#8172b3"


class RuncPlatform(OciPlatform):
    name = "runc"
    colour = "#937860"
