"""The `lxc` platform: InstanceSpec -> an LXC 5 config (runtime.lxc.config) -> a privileged LXC container
on the suite's shared rootfs, driven through the LXC tools (lxc-start -d, lxc-attach, lxc-freeze, lxc-stop).

An instance is a state dir claimed through runtime.state (`lxc-<token>`, owner record) that is also the
container's lxcpath (`-P`): it holds the container `isl<token>` (its config and LXC's log) and the mount
point of the root, an overlay of the shared rootfs (read-only lower) and a writable upper under the
scratch root, mounted here like our runtime's and crun's. LXC's own overlay storage would mount it
inside the container's mount namespace only; mounted on the host, the root is the same kind of layer
on every container platform and the host sees it for file transfer (runtime.linux.transfer, openat2).
The container runs `sleep infinity` as pid 1 under LXC's monitor; its limits sit on
`isolab/<instance id>`, its processes in `isolab/<instance id>/inner`, LXC's monitor in
`isolab/lxcmon-<token>`. Commands run through `lxc-attach --clear-env` (the container's namespaces,
cgroup, capabilities and seccomp policy).

Not through the `lxc` Python bindings (python3-lxc): `Container.start()` daemonizes by forking the calling
process (the harness, with its threads), and `attach_wait()` blocks without a timeout; the tools give a
timeout, an exit status and piped output per command, at the cost of one exec per call.

Network: none (own netns, lo up), host (LXC's `none`: the host's netns), bridge and nat, wired by our
runtime's network code (runtime.container.netsetup) into the container's netns right after the start,
before any command runs. LXC's lxc-net (lxcbr0, dnsmasq, masquerade) is never used.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path

from runtime import state
from runtime.container.cgroups import cgroup_version
from runtime.container.cgroups.base import kill_procs, rmdir_retry, thaw, write
from runtime.container.cgroups.sweep import cgroup_parents
from runtime.container.cgroups.v1 import v1_hierarchies
from runtime.container.container import block_device_of, dir_usage_bytes
from runtime.container.netsetup import ContainerNetwork
from runtime.container.rootfs import mount_overlay
from runtime.container.wired import HostRootInstance
from runtime.errors import ExecTimeout, InstanceError, PlatformUnavailable, SpecError
from runtime.image.store import Image
from runtime.linux import syscalls as sc
from runtime.linux.process import descendants
from runtime.lxc import config, host
from runtime.naming import CGROUP_PARENT, LINK_PREFIX, SCRATCH_ROOT, STATE_ROOT, scratch_dir
from runtime.platform import KIND_CONTAINER, ROLE_REFERENCE, Platform, PlatformInfo, StartPhases
from runtime.spec import ExecResult, InstanceSpec

NAME = "lxc"
TOOL_TIMEOUT_S = 60.0
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
MEMSW = Path("/sys/fs/cgroup/memory/memory.memsw.limit_in_bytes")


#: Where LXC (as root) keeps a lock file per container: <LOCK_ROOT>/<lxcpath without its leading />/.<name>.
LOCK_ROOT = Path("/run/lxc/lock")


def lock_dir(lxcpath: Path) -> Path:
    """LXC's lock directory of an lxcpath (it outlives the container: removed by destroy and cleanup)."""
    return LOCK_ROOT / str(lxcpath).lstrip("/")


def _token(instance_id: str) -> str:
    return instance_id.rsplit("-", 1)[-1]


def instance_cgroups(instance_id: str) -> list[Path]:
    """Every cgroup dir of an instance, deepest first: `isolab/<id>/inner`, `isolab/<id>` and LXC's
    monitor cgroup `isolab/lxcmon-<token>`, in each hierarchy (v1: every controller and name=systemd)."""
    found: list[Path] = []
    parents = set(cgroup_parents()) | set(Path("/sys/fs/cgroup").glob(f"*/{CGROUP_PARENT}"))
    for parent in sorted(parents):
        for name in (instance_id, config.monitor_cgroup(instance_id)):
            top = parent / name
            if top.is_dir():
                found += sorted((p for p in top.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts))
                found.append(top)
    return found


def remove_cgroups(instance_id: str) -> list[str]:
    """Kill what still runs in the instance's cgroups and remove them (deepest first); those still busy."""
    dirs = instance_cgroups(instance_id)
    for path in dirs:
        thaw(path)  # frozen tasks cannot die
    for path in dirs:
        kill_procs(path / "cgroup.procs", timeout=2.0)
    return [str(p) for p in dirs if not rmdir_retry(p)]


class Lxc:
    """The LXC tools for one container: `lxc-<tool> -P <lxcpath> -n <name> ...`."""

    def __init__(self, lxcpath: Path, name: str) -> None:
        self.lxcpath = lxcpath
        self.name = name

    def argv(self, tool: str, *args: str) -> list[str]:
        return [f"lxc-{tool}", "-P", str(self.lxcpath), "-n", self.name, *args]

    def call(self, tool: str, *args: str, check: bool = True,
             timeout: float = TOOL_TIMEOUT_S) -> subprocess.CompletedProcess[str]:
        try:
            proc = subprocess.run(self.argv(tool, *args), stdin=subprocess.DEVNULL, capture_output=True,
                                  text=True, timeout=timeout, cwd="/")
        except subprocess.TimeoutExpired as exc:
            raise InstanceError(f"lxc-{tool} {self.name} did not finish in {timeout:g} s") from exc
        if check and proc.returncode != 0:
            raise InstanceError(f"lxc-{tool} {self.name} failed ({proc.returncode}): {proc.stderr.strip()[-800:]}")
        return proc


class LxcInstance(HostRootInstance):
    """A running LXC container (see the module docstring)."""

    def __init__(self, instance_id: str, state_dir: Path, spec: InstanceSpec) -> None:
        self.platform = NAME
        self.instance_id = instance_id
        self.spec = spec
        self.start_phases = StartPhases()
        self.state_dir = state_dir
        self.name = f"{LINK_PREFIX}{_token(instance_id)}"
        self.lxc = Lxc(state_dir, self.name)
        self.config_file = state_dir / self.name / "config"
        self.log_file = state_dir / self.name / "lxc.log"
        self.root = state_dir / "rootfs"
        self.layer_dir = scratch_dir(instance_id)
        self.volume = self.layer_dir / "volume" if spec.volume else None
        self.ignored: dict[str, object] = {}
        self.network = ContainerNetwork(instance_id, spec)
        self.pid: int | None = None
        self.paused = False
        self._destroyed = False

    # ---- start ----------------------------------------------------------------------------------
    def start(self, lower: Path, apparmor_profile: str | None) -> None:
        upper, work = self.layer_dir / "upper", self.layer_dir / "work"
        SCRATCH_ROOT.mkdir(parents=True, exist_ok=True)
        self.layer_dir.mkdir(mode=0o700)
        upper.mkdir()
        work.mkdir()
        if self.volume is not None:
            self.volume.mkdir()
        self.root.mkdir()
        mount_overlay([lower], upper, work, self.root)
        wants_io = any(k.startswith("io_") for k in self.spec.limits())
        version = cgroup_version()
        io_device = block_device_of(SCRATCH_ROOT) if wants_io else None
        text, self.ignored = config.render(
            self.spec, config.Placement(self.instance_id, self.root, self.log_file, self.volume),
            version=version, io_device=io_device, memsw=version == 2 or MEMSW.exists(),
            apparmor_profile=apparmor_profile)
        self.config_file.parent.mkdir(mode=0o700)
        self.config_file.write_text(text)
        self.network.prepare()  # the bridge(s) and an address (bridge, nat)
        self.start_phases.lap("rootfs")
        proc = self.lxc.call("start", "-d", check=False)
        if proc.returncode != 0:
            raise InstanceError(f"lxc-start {self.name} failed ({proc.returncode}): {self._why(proc.stderr)}")
        self.pid = self._init_pid()
        state.update(self.state_dir, container=self.name, pid=self.pid)
        self.start_phases.lap("start")
        inner_io = config.inner_io_lines(self.spec, version, io_device)
        if inner_io:  # before any command runs: the init only sleeps
            inner = v1_hierarchies()["blkio"] / CGROUP_PARENT / self.instance_id / config.INNER
            for name, value in inner_io:
                write(inner / name, value)
            self.start_phases.lap("cgroup")
        if self.network.needs_wiring:  # the init only sleeps: no command has run yet
            self.network.attach(self.pid)
            state.update(self.state_dir, network=self.network.state())
            self.start_phases.lap("network")

    def _why(self, stderr: str) -> str:
        """LXC's own account of a failure: its ERROR lines from the log, else the tool's stderr."""
        try:
            errors = [line.split(" - ", 2)[-1] for line in self.log_file.read_text(errors="replace").splitlines()
                      if " ERROR " in line]
        except OSError:
            errors = []
        return " | ".join(errors[-4:])[-800:] or stderr.strip()[-800:] or "no message"

    def _init_pid(self) -> int:
        """The init's host pid: the one process in the inner cgroup right after the start (a file read),
        else as lxc-info reports it (one more exec of an LXC tool)."""
        for parent in cgroup_parents():
            procs = (parent / self.instance_id / config.INNER / "cgroup.procs")
            try:
                pids = procs.read_text().split()
            except OSError:
                continue
            if len(pids) == 1:
                return int(pids[0])
        out = self.lxc.call("info", "-p", "-H").stdout.strip()
        try:
            return int(out)
        except ValueError:
            raise InstanceError(f"lxc-info {self.name}: no init pid in {out!r} ({self._why('')})") from None

    # ---- use ------------------------------------------------------------------------------------
    def exec(self, argv: Sequence[str], timeout: float = 600.0,
             env: dict[str, str] | None = None) -> ExecResult:
        full_env = {"PATH": DEFAULT_PATH, **self.spec.env, **(env or {})}
        env_args = [a for k, v in full_env.items() for a in ("-v", f"{k}={v}")]
        cmd = self.lxc.argv("attach", "--clear-env", *env_args, "--", *argv)
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True, errors="replace", cwd="/")
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired as exc:
            self._kill_tree(proc)
            raise ExecTimeout(f"lxc {self.instance_id}: {argv[0] if argv else '?'} did not finish in "
                              f"{timeout:g} s") from exc
        return ExecResult(tuple(argv), proc.returncode, out, err, time.perf_counter() - t0)

    @staticmethod
    def _kill_tree(proc: subprocess.Popen[str]) -> None:
        """The attached command is lxc-attach's child inside the container: kill it and what it started."""
        for pid in reversed(descendants([proc.pid])):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        try:
            proc.communicate(timeout=5)
        except subprocess.TimeoutExpired:  # a reparented child still holds the pipes
            pass

    def host_pids(self) -> list[int]:
        """The container's init (as `lxc-info` reports it)."""
        proc = self.lxc.call("info", "-p", "-H", check=False)
        try:
            pid = int(proc.stdout.strip())
        except ValueError:
            return []
        return [pid] if pid > 0 else []

    def disk_usage_bytes(self) -> int:
        upper = self.layer_dir / "upper"
        return dir_usage_bytes(upper) if upper.exists() else 0

    def metadata(self) -> dict[str, object]:
        meta: dict[str, object] = {
            "runtime": f"LXC {host.version()}", "cgroup_version": cgroup_version(),
            "seccomp": "LXC common.seccomp (denylist)" if self.spec.seccomp == "default" else "unconfined",
            "user_namespace": "none (a privileged LXC container: root inside is host root; "
                              "InstanceSpec.userns is refused)"}
        if self.ignored:
            meta["limits_ignored"] = sorted(self.ignored)
        return meta

    def quiesce(self) -> str | None:
        self.lxc.call("freeze")
        self.paused = True
        return "cgroup freezer (lxc-freeze)"

    def wake(self) -> None:
        if self.paused:
            self.lxc.call("unfreeze")
            self.paused = False

    # ---- stop -----------------------------------------------------------------------------------
    def destroy(self) -> None:
        """lxc-stop -k, then make sure: kill and remove the cgroups (the monitor's too), tear down the
        network, unmount the root, remove the layer and the state dir (with LXC's config and log)."""
        if self._destroyed:
            return
        if self.config_file.exists():
            try:
                if self.paused:  # frozen tasks cannot die
                    self.lxc.call("unfreeze", check=False, timeout=20)
                self.lxc.call("stop", "-k", check=False, timeout=20)
            except InstanceError:
                pass  # a hung tool: the cgroups are thawed and emptied below
        try:
            self.network.teardown()  # veth, address, DNAT rules (nothing for none and host)
        except Exception as exc:  # the rest must still go; the network sweep finds the link by its name
            network_error: Exception | None = exc
        else:
            network_error = None
        busy = remove_cgroups(self.instance_id)
        shutil.rmtree(lock_dir(self.state_dir), ignore_errors=True)
        sc.detach_all_under(self.state_dir)
        shutil.rmtree(self.layer_dir, ignore_errors=True)
        if busy:
            raise InstanceError(f"lxc {self.instance_id}: cgroup still busy: {', '.join(busy)}")
        shutil.rmtree(self.state_dir, ignore_errors=True)
        self._destroyed = True
        if network_error is not None:
            raise InstanceError(f"lxc {self.instance_id}: network teardown: {network_error}")


class LxcPlatform(Platform):
    """LXC 5 (Debian's lxc package) on the shared rootfs."""

    name = NAME

    @property  # type: ignore[override]
    def network_modes(self) -> tuple[str, ...]:
        """none, host, bridge (our network code), and nat where the host has nftables with DNAT."""
        from runtime.network.nat import nat_unavailable

        return ("none", "host", "bridge") + (("nat",) if nat_unavailable() is None else ())

    def __init__(self, image: Image | None = None, **_options: object) -> None:
        self.image = image

    def check_available(self) -> None:
        missing = host.missing_tools()
        if missing:
            raise PlatformUnavailable(f"lxc: {', '.join(missing)} not on PATH (Debian package lxc; "
                                      "`python -m bench setup` installs it)")
        if os.geteuid() != 0:
            raise PlatformUnavailable("lxc: needs root (privileged containers, cgroups, overlayfs)")
        if not config.COMMON_CONF.exists():
            raise PlatformUnavailable(f"lxc: {config.COMMON_CONF} (LXC's shipped defaults) is missing")
        if "overlay" not in Path("/proc/filesystems").read_text():
            raise PlatformUnavailable("lxc: the kernel has no overlayfs (/proc/filesystems)")

    def check_spec(self, spec: InstanceSpec) -> None:
        """SpecError for what this platform cannot honour at all (limits it can skip are ignored_limits)."""
        if spec.network not in self.network_modes:
            raise SpecError(f"lxc: network mode {spec.network!r} is not available here (only "
                            f"{', '.join(self.network_modes)})")
        if spec.userns:
            raise SpecError("lxc: InstanceSpec.userns is not supported (this platform runs LXC's privileged "
                            "containers; no lxc.idmap is generated)")

    def create(self, spec: InstanceSpec) -> LxcInstance:
        self.check_spec(spec)
        if self.image is None:
            raise InstanceError("lxc: no image given")
        self.check_available()
        profile, _ = host.apparmor()
        instance_id, state_dir = state.create(NAME)
        instance = LxcInstance(instance_id, state_dir, spec)
        try:
            instance.start(self.image.rootfs, profile)
        except BaseException:
            instance.destroy()
            raise
        return instance

    def cleanup_leftovers(self) -> list[str]:
        """What runtime.sweep leaves of dead instances: their cgroups in hierarchies it does not visit
        (name=systemd) and LXC's lock dirs under /run/lxc/lock (the sweep has already killed the
        containers, unmounted their roots and removed their state dirs)."""
        removed: list[str] = []
        tokens: set[str] = set()
        for parent in set(cgroup_parents()) | set(Path("/sys/fs/cgroup").glob(f"*/{CGROUP_PARENT}")):
            for kind in (NAME, config.MONITOR_KIND):
                tokens |= {_token(p.name) for p in parent.glob(f"{kind}-*") if p.is_dir()}
        locks = lock_dir(STATE_ROOT)
        tokens |= {_token(p.name) for p in locks.glob(f"{NAME}-*")} if locks.is_dir() else set()
        for token in sorted(tokens):
            if state.token_live(token):
                continue
            instance_id = f"{NAME}-{token}"
            dirs = [str(p) for p in instance_cgroups(instance_id)]
            busy = remove_cgroups(instance_id)
            removed += [d for d in dirs if d not in busy]
            if (locks / instance_id).exists():
                shutil.rmtree(locks / instance_id, ignore_errors=True)
                removed.append(str(locks / instance_id))
        # LXC's lock dirs for the state root (LOCK_ROOT itself is LXC's), when no instance is live: an
        # instance's state dir is made before lxc-start makes these, so none can be between the two
        live = any(state.is_live(p) for p in state.instances(STATE_ROOT, NAME))
        parent = locks
        while not live and parent != LOCK_ROOT and parent.is_relative_to(LOCK_ROOT):
            state.remove_empty_dirs(parent)
            parent = parent.parent
        return removed

    def describe(self) -> PlatformInfo:
        return PlatformInfo(name=NAME, kind=KIND_CONTAINER, display_name="LXC", colour="#da8bc3",
                            mechanism=f"LXC {host.version()}, namespaces + cgroup v{cgroup_version()}",
                            emulated=False, baseline=False, role=ROLE_REFERENCE)

    def environment(self) -> dict[str, object]:
        _, apparmor = host.apparmor()
        return {
            "runtime": f"LXC {host.version()}", "tools": "lxc-start -d, lxc-attach --clear-env, lxc-freeze, "
                                                          "lxc-stop -k (one lxcpath per instance)",
            "cgroup_version": cgroup_version(),
            "cgroups": f"limits on {CGROUP_PARENT}/<id>, processes in {CGROUP_PARENT}/<id>/{config.INNER} "
                       "(lxc.cgroup.dir.container.inner: outside the container's cgroup namespace), "
                       f"monitor in {CGROUP_PARENT}/{config.MONITOR_KIND}-<token>"
                       + ("; cgroup v1: disk throttles also on the inner cgroup (v1 blk-throttle is not "
                          "hierarchical), where root inside could rewrite them" if cgroup_version() == 1 else ""),
            "defaults": f"lxc.include {config.COMMON_CONF} (Debian's shipped common.conf)",
            "capabilities": "LXC's default drops: mac_admin mac_override sys_time sys_module sys_rawio "
                            "(a privileged container keeps sys_admin and the rest)",
            "seccomp": "LXC's common.seccomp: a denylist (kexec_load, open_by_handle_at, init/finit/"
                       "delete_module, umount -f); unconfined specs clear it",
            "apparmor": apparmor, "user_namespace": "none (privileged container)",
            "namespaces": "mnt pid uts ipc net cgroup",
            "rootfs": "overlay: the shared rootfs (read-only lower) + a writable upper under the scratch root, "
                      "mounted by isolab (lxc.rootfs.path = dir:)",
            "init": config.INIT_CMD, "network_modes": list(self.network_modes),
            "network": "none: own netns with lo (lxc.net type empty); host: LXC type none; bridge/nat: a veth "
                       "on the suite's bridge wired into the container's netns after start "
                       "(runtime.container.netsetup)",
            "lxc_net": f"USE_LXC_BRIDGE={host.lxc_net_setting()} in {host.LXC_NET_DEFAULTS}; isolab never "
                       f"starts lxc-net; {host.LXC_BRIDGE} present: {host.lxc_bridge_present()}"}
