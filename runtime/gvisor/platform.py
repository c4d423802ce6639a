"""The `gvisor` platform: runsc (gVisor) as the OCI runtime of runtime/oci's bundle, a sandboxed container.

Everything runtime/oci does for crun and runc holds here (state dir, overlay root, bundle from the
InstanceSpec, cgroup `isolab/<id>`, `sleep infinity` as pid 1, kill + delete + sweep on destroy); what
differs is gVisor's:
- runsc's global flags: its --root under the instance's state dir, the gVisor platform found by
  runtime.gvisor.probe (or forced), --network=none (the sentry's netstack with loopback only), host
  (the sentry's host network passthrough) or sandbox (bridge and nat: the sentry's netstack on a veth
  wired before `runsc create`, see SandboxNetwork), --overlay2=none (writes go through the gofer to our overlay),
  no debug logs. runsc puts the whole sandbox (sentry, gofer, ptrace stubs) in the spec's cgroup and
  writes the limits there; the sentry also sizes its own memory from the limit (`--total-memory`).
- gVisor mounts its own memory-backed tmpfs on /tmp when the image's /tmp is empty (as under Docker), so
  workloads write to /var/tmp, on the root overlay like every other platform's scratch dir.
- The sentry caches the root filesystem as its own (runsc --file-access=exclusive, the default): a file
  the host replaces under it is not seen (measured: a rename over a file the sandbox had read kept the
  old content). Files therefore move through `runsc exec` with `cat`, so they take the same path as the
  workload's own writes and reads: exactly what the sandbox sees.
- exec: `runsc exec` (it has no --no-new-privs); a command past its deadline is killed inside the
  sandbox by its sandbox pid (`runsc kill --pid`), since killing `runsc exec` leaves it running.
- quiesce: `runsc pause` stops every task in the sentry; wake: `runsc resume`.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path

from runtime import state
from runtime.container.cgroups import cgroup_version, make_cgroup
from runtime.container.netsetup import ContainerNetwork
from runtime.errors import InstanceError, PlatformUnavailable, SpecError
from runtime.gvisor import probe
from runtime.linux.process import kill_matching, processes
from runtime.linux.transfer import TransferError
from runtime.naming import CGROUP_PARENT, STATE_ROOT
from runtime.network.links import add_veth_to_bridge, configure_inside, set_rate_limit
from runtime.network.nat import publish
from runtime.network.netns import netlink_socket_in
from runtime.oci.platform import INIT_ARGV, RUNTIME_TIMEOUT_S, OciInstance, OciPlatform, OciRuntime
from runtime.platform import KIND_SANDBOXED_CONTAINER, ROLE_NONE, PlatformInfo
from runtime.spec import InstanceSpec

RUNSC_PLATFORMS = (*probe.GROUPS, *probe.PREFERENCE)
#: The run's accelerator option (the VM's --accel) as a gVisor platform request.
ACCEL_TO_RUNSC = {"auto": "auto", "kvm": "kvm", "tcg": "software"}
SCRATCH = "/var/tmp"
TRANSFER_TIMEOUT_S = 600.0
#: Measured here (2026-11-28): fio 1 MiB sequential reads with --direct=1 of a 256 MiB file gave 4,373 MiB/s
#: inside the sandbox and 559 MiB/s on the host's disk.
DIRECT_IO = ("O_DIRECT is accepted and not honoured: reads and writes go through the sentry's and the "
             "host's page cache (fio --direct=1 1 MiB reads: 4.4 GB/s inside, 0.56 GB/s on the host's disk)")
#: Measured here (2026-11-28, network scenario, quick profile): bridge measured; host failed.
HOST_NETWORK = ("gVisor's host network passthrough (runsc --network=host) in this build fails iperf3 (its "
                "control socket's recv returns EAGAIN: 'unable to receive results: Resource temporarily "
                "unavailable'), so the sandbox's own netstack (bridge, nat) is what this platform measures")
#: Measured here (2026-11-28, isolation_limits quick): a 10 MiB/s read cap on the sandbox's cgroup, fio
#: --direct=1 inside read 2.5 GB/s.
IO_LIMITS = ("io_read_bps, io_write_bps, io_read_iops, io_write_iops: not enforced (left out of the bundle): "
             "the sandbox's file IO goes through the page cache (O_DIRECT is not honoured), where the "
             "cgroup's blkio throttles do not apply (a 10 MiB/s read cap: fio read 2.5 GB/s inside)")
#: What differs from runc/crun that a reader of env.json must know.
NOTES = {
    "tmp": "/tmp is gVisor's own tmpfs (sandbox memory), mounted by runsc because the image's /tmp is "
           f"empty; workloads write to {SCRATCH} on the root overlay",
    "file_transfer": "through `runsc exec` and cat: the sentry caches the root as exclusive "
                     "(--file-access=exclusive), so host-side writes to the overlay are not reliably seen",
    "seccomp": "the bundle's OCI seccomp profile is not loaded (runsc without --oci-seccomp, as Docker "
               "with runsc); the application's syscalls go to the sentry, which runs under gVisor's own "
               "host seccomp filter",
    "cgroups": "runsc writes the spec's limits to isolab/<id> and puts the sandbox there whole: sentry, "
               "gofer and platform stubs; pids_max counts those host tasks, not the container's processes",
    "direct_io": DIRECT_IO,
    "io_limits": IO_LIMITS,
    "kernel": "the sentry reports Linux 4.4.0; statx with AT_NO_AUTOMOUNT fails with EINVAL in this build, "
              "so coreutils 9.1 `ls`/`stat` fail inside while the syscalls the workloads use work",
}


#: runsc 2022-12-19 refuses its netstack in what it takes for the host's netns: one where
#: /proc/sys/net/core/rmem_default exists, which Linux >= 6.x shows in every netns (google/gvisor#10704,
#: fixed after this build). `runsc start`, which makes that check, therefore runs in a private mount
#: namespace with /proc/sys/net hidden under an empty tmpfs (a mount on a directory below it does not
#: cover another netns's view).
NETSTACK_PREFIX = ["unshare", "--mount", "--propagation", "private", "--", "sh", "-c",
                   'mount -t tmpfs -o ro,size=4k isolab /proc/sys/net && exec "$@"', "isolab-runsc"]
NETSTACK_WORKAROUND = ("bridge/nat: `runsc start` runs in a private mount namespace with /proc/sys/net under an "
                       "empty tmpfs: this runsc takes any netns that shows net.core.rmem_default for the host's "
                       "and refuses its netstack there, and Linux >= 6.x shows it in every netns "
                       "(google/gvisor#10704)")


class NetstackRuntime(OciRuntime):
    """runsc for a sandbox on the netstack (bridge, nat): `start` through NETSTACK_PREFIX."""

    def argv(self, root: Path, *args: str) -> list[str]:
        argv = super().argv(root, *args)
        return [*NETSTACK_PREFIX, *argv] if args[:1] == ("start",) else argv


class SandboxNetwork(ContainerNetwork):
    """bridge and nat for a sandbox: runsc's netstack takes over the interfaces, addresses and routes it
    finds in the sandbox's netns when `runsc create` starts it, so that netns is made and wired first:
    a namespace file under the state dir (`unshare --net=FILE`, detached with the state dir), a veth on
    the suite's bridge with `eth0` inside, tc on both ends, DNAT for nat; the bundle names the file."""

    def __init__(self, instance_id: str, spec: InstanceSpec, netns_file: Path) -> None:
        super().__init__(instance_id, spec)
        self.netns_file = netns_file

    @property
    def needs_wiring(self) -> bool:
        return False  # wired in prepare(), before the sandbox exists

    def prepare(self) -> None:
        super().prepare()
        if self.mode != "bridge":
            return
        from pyroute2 import IPRoute

        assert self.bridge is not None and self.address is not None
        self.netns_file.touch(mode=0o600)
        made = subprocess.run(["unshare", f"--net={self.netns_file}", "true"], capture_output=True, text=True)
        if made.returncode != 0:
            raise InstanceError(f"gvisor {self.instance_id}: unshare --net={self.netns_file}: "
                                f"{made.stderr.strip()}")
        fd = os.open(self.netns_file, os.O_RDONLY | os.O_CLOEXEC)
        try:
            with IPRoute() as ipr:
                add_veth_to_bridge(ipr, self.host_link, "eth0", self.bridge.name, peer_netns_fd=fd)
                if self.spec.bandwidth:
                    set_rate_limit(ipr, self.host_link, self.spec.bandwidth)  # traffic into the sandbox
        finally:
            os.close(fd)
        with IPRoute(use_socket=netlink_socket_in(str(self.netns_file))) as inside:
            configure_inside(inside, "eth0", "eth0", self.address, self.bridge.prefixlen, self.bridge.gateway)
            if self.spec.bandwidth:
                set_rate_limit(inside, "eth0", self.spec.bandwidth)  # traffic out of the sandbox
        if self.requested == "nat":
            assert self.suite_bridge is not None and self.suite_hold is not None
            publish(self.instance_id, self.address, self.suite_hold, self.suite_bridge.name, self.bridge_name)
            self.published = True


class GvisorInstance(OciInstance):
    """A running gVisor sandbox (see the module docstring)."""

    scratch_dir = SCRATCH

    def __init__(self, runtime: OciRuntime, instance_id: str, state_dir: Path, spec: InstanceSpec,
                 runsc_platform: str = "ptrace") -> None:
        super().__init__(runtime, instance_id, state_dir, spec)
        self.network = SandboxNetwork(instance_id, spec, state_dir / "netns")
        if self.network.mode == "bridge":
            self.rt = NetstackRuntime(runtime.name, runtime.binary, runtime.flags)
        self.platform = "gvisor"
        self.runsc_platform = runsc_platform

    def start(self, lower: Path) -> None:
        """runtime/oci's start; a sandbox the kernel killed for its memory limit says so."""
        try:
            super().start(lower)
        except InstanceError as exc:
            oom = Path(f"/sys/fs/cgroup/memory/{CGROUP_PARENT}/{self.instance_id}/memory.oom_control")
            try:
                kills = dict(line.split() for line in oom.read_text().splitlines()).get("oom_kill", "0")
            except (OSError, ValueError):
                kills = "0"
            if kills != "0" and self.spec.memory is not None:
                raise InstanceError(f"{str(exc).rstrip(': ')}: the sandbox hit its memory limit of "
                                    f"{self.spec.memory >> 20} MiB (sentry, gofer and application share it)") from exc
            raise

    def bundle_config(self, argv: Sequence[str] = INIT_ARGV) -> tuple[dict[str, object], dict[str, object]]:
        """runtime/oci's bundle; bridge and nat: the network namespace is the one wired beforehand."""
        cfg, ignored = super().bundle_config(argv)
        linux = cfg["linux"]
        assert isinstance(linux, dict)
        if linux["resources"].pop("blockIO", None) is not None or any(k.startswith("io_") for k in ignored):
            ignored.update({k: v for k, v in self.spec.limits().items() if k.startswith("io_")})  # IO_LIMITS
        if self.network.mode == "bridge":
            linux["namespaces"] = [{"type": "network", "path": str(self.network.netns_file)} if n["type"] == "network"
                                   else n for n in linux["namespaces"]]
        return cfg, ignored

    # ---- use ------------------------------------------------------------------------------------
    def exec_argv(self, argv: Sequence[str], env: dict[str, str], pid_file: Path) -> list[str]:
        env_args = [a for k, v in env.items() for a in ("--env", f"{k}={v}")]
        return self.rt.argv(self.rt_root, "exec", *env_args, "--internal-pid-file", str(pid_file),
                            self.container_id, *argv)

    def _kill_exec(self, pid_file: Path, proc: subprocess.Popen[str]) -> None:
        """Kill the command inside the sandbox (its pid there), then `runsc exec` itself."""
        try:
            pid = int(pid_file.read_text().strip())
        except (OSError, ValueError):
            pid = 0
        if pid > 0:
            self.rt.call(self.rt_root, "kill", "--pid", str(pid), self.container_id, "KILL", check=False)
        super()._kill_exec(Path("/nonexistent"), proc)

    def _transfer(self, script: str, remote: str, what: str, stdin: object, timeout: float,
                  ) -> subprocess.CompletedProcess[bytes]:
        where = f"gvisor {self.instance_id}: {what} {remote!r}"
        if not remote or remote.endswith("/"):
            raise TransferError(f"{where}: does not name a file")
        cmd = self.rt.argv(self.rt_root, "exec", self.container_id, "/bin/sh", "-c", script, "isolab-transfer",
                           remote)
        try:
            proc = subprocess.run(cmd, stdin=stdin, capture_output=True, timeout=timeout)  # type: ignore[arg-type]
        except subprocess.TimeoutExpired as exc:
            raise TransferError(f"{where}: no answer within {timeout:g} s") from exc
        if proc.returncode != 0:
            raise TransferError(f"{where}: {proc.stderr.decode(errors='replace').strip()[-400:] or 'failed'} "
                                f"(exit {proc.returncode})")
        return proc

    def put_file(self, local: Path, remote: str) -> None:
        """Written by cat inside the sandbox from the host file on its stdin (paths resolve in the sandbox)."""
        script = ('if [ -e "$1" ] && [ ! -f "$1" ]; then echo "$1 exists and is not a regular file" >&2; '
                  'exit 3; fi; exec cat > "$1"')
        with open(local, "rb") as src:
            self._transfer(script, remote, "put", src, TRANSFER_TIMEOUT_S)

    def get_file(self, remote: str, local: Path) -> None:
        """Read by cat inside the sandbox; its size, told first, must match what arrived."""
        script = ('if [ ! -f "$1" ]; then echo "$1 is not a regular file" >&2; exit 3; fi; '
                  'wc -c < "$1" >&2 && exec cat "$1"')
        proc = self._transfer(script, remote, "get", subprocess.DEVNULL, TRANSFER_TIMEOUT_S)
        try:
            size = int(proc.stderr.decode(errors="replace").split()[0])
        except (IndexError, ValueError):
            size = -1
        if size != len(proc.stdout):
            raise TransferError(f"gvisor {self.instance_id}: get {remote!r}: {len(proc.stdout)} bytes arrived, "
                                f"the file had {size}")
        Path(local).write_bytes(proc.stdout)

    def host_pids(self) -> list[int]:
        """Every host process of the sandbox (sentry, gofer, platform stubs): its cgroup's."""
        return sorted(make_cgroup(self.instance_id, self.spec).pids())

    def metadata(self) -> dict[str, object]:
        meta = super().metadata()
        meta.update(runtime="runsc", runsc_platform=self.runsc_platform, direct_io=DIRECT_IO,
                    seccomp="gVisor sentry (OCI profile not loaded, as Docker with runsc)",
                    user_namespace="the sandbox runs as nobody in its own user namespace; root inside is "
                                   "the sentry's (InstanceSpec.userns is not mapped)")
        return meta

    def destroy(self) -> None:
        """runtime/oci's destroy, with runsc's own kill + delete first: runsc keeps a container's state as
        `<root>/<id>_sandbox:<id>.state`, not the `<root>/<id>/` runtime/oci looks for."""
        if not self._destroyed and any(self.rt_root.glob(f"*:{self.container_id}.state")):
            if self.paused:
                self.rt.call(self.rt_root, "resume", self.container_id, check=False)
                self.paused = False
            self.rt.call(self.rt_root, "kill", self.container_id, "KILL", check=False)
            self.rt.call(self.rt_root, "delete", "--force", self.container_id, check=False)
        super().destroy()

    def quiesce(self) -> str | None:
        self.rt.call(self.rt_root, "pause", self.container_id)
        self.paused = True
        return "runsc pause (every task in the sentry stopped)"


class GvisorPlatform(OciPlatform):
    """gVisor's runsc on runtime/oci's bundle and overlay; the gVisor platform probed, or forced."""

    name = "gvisor"
    colour = "#da8bc3"
    instance_class = GvisorInstance

    options = ("accel",)

    @property  # type: ignore[override]
    def network_modes(self) -> tuple[str, ...]:
        """runtime/oci's without host: see HOST_NETWORK."""
        return tuple(m for m in super().network_modes if m != "host")

    def check_spec(self, spec: InstanceSpec) -> None:
        if spec.network == "host":
            raise SpecError(f"gvisor: network mode 'host' is not offered: {HOST_NETWORK}")
        super().check_spec(spec)

    def __init__(self, image: object | None = None, accel: str = "auto", runsc_platform: str | None = None,
                 **_options: object) -> None:
        """`runsc_platform` forces a gVisor platform; else the run's `accel` chooses: auto probes them all,
        kvm forces runsc's kvm platform, tcg (no hardware virtualisation) the best of systrap and ptrace."""
        super().__init__(image)  # type: ignore[arg-type]
        self.binary = shutil.which("runsc")
        if runsc_platform is None:
            runsc_platform = ACCEL_TO_RUNSC.get(accel, accel)
        if runsc_platform not in RUNSC_PLATFORMS:
            raise SpecError(f"gvisor: unknown gVisor platform {runsc_platform!r} (one of "
                            f"{', '.join(RUNSC_PLATFORMS)}, or --accel auto, kvm or tcg)")
        self.requested = runsc_platform
        self.choice: probe.PlatformChoice | None = None

    def _missing(self) -> str:
        return ("gvisor: the runsc binary is not on PATH (Debian package runsc; `python -m bench setup` "
                "installs it)")

    def check_available(self) -> None:
        super().check_available()
        assert self.binary is not None
        self.choice = probe.choose(self.binary, self.requested)
        if self.choice.platform is None:
            raise PlatformUnavailable(f"gvisor: {self.choice.reason}")

    def runsc_platform(self) -> str:
        if self.choice is None:
            self.check_available()
        assert self.choice is not None and self.choice.platform is not None
        return self.choice.platform

    def runtime_for(self, spec: InstanceSpec) -> OciRuntime:
        if self.binary is None:
            raise PlatformUnavailable(self._missing())
        network = {"host": "host", "bridge": "sandbox", "nat": "sandbox"}.get(spec.network, "none")
        return OciRuntime("runsc", self.binary, [f"--platform={self.runsc_platform()}", f"--network={network}",
                                                 "--overlay2=none"])

    def create(self, spec: InstanceSpec) -> GvisorInstance:
        instance = super().create(spec)
        assert isinstance(instance, GvisorInstance)
        instance.runsc_platform = self.runsc_platform()
        return instance

    def version(self) -> str:
        """'runsc 0.0~20221219.0' (the first line of `runsc --version`), '?' without the binary."""
        if self.binary is None:
            return "?"
        out = subprocess.run([self.binary, "--version"], capture_output=True, text=True,
                             timeout=RUNTIME_TIMEOUT_S).stdout
        first = out.splitlines()[0].strip() if out else "?"
        return first.replace("runsc version ", "runsc ")

    def mechanism(self) -> str:
        """'gVisor runsc 20221219, platform ptrace' (the platform once probed)."""
        version = self.version().rsplit("~", 1)[-1].split(".")[0] if self.binary else "(not installed)"
        platform = self.choice.platform if self.choice and self.choice.platform else "not probed"
        return f"gVisor runsc {version}, platform {platform}"

    def describe(self) -> PlatformInfo:
        """The mechanism names the gVisor platform probed by check_available() (describe() does not probe)."""
        return PlatformInfo(name=self.name, kind=KIND_SANDBOXED_CONTAINER, display_name="gVisor (runsc)",
                            colour=self.colour, mechanism=self.mechanism(), emulated=False, baseline=False,
                            # not a calibration reference: a sandbox with its own kernel (the sentry) is not
                            # "a Linux container", and, slower on nearly every metric, it would keep our runtime
                            # from ever being flagged as differing from every reference (issue #12 names crun,
                            # runc and LXC)
                            role=ROLE_NONE)

    def environment(self) -> dict[str, object]:
        if self.choice is None:
            self.check_available()
        assert self.choice is not None
        return {
            "runtime": self.version(), "binary": self.binary, "mechanism": self.mechanism(),
            "runsc_platform": self.choice.platform, "runsc_platform_requested": self.requested,
            "runsc_platforms_tried": dict(self.choice.tried),
            "runsc_flags": f"--platform={self.choice.platform} --network=none|sandbox --overlay2=none; "
                           "--file-access=exclusive (default); no debug logs",
            "cgroup_version": cgroup_version(), "cgroup_driver": "cgroupfs (runsc)",
            "rootfs": "overlay: the shared rootfs (read-only lower) + a writable upper under the scratch root, "
                      "served to the sentry by runsc's gofer",
            "init": "sleep infinity", "network_modes": list(self.network_modes),
            "network": "none: the sentry's netstack with loopback only; bridge/nat: the sentry's netstack "
                       "(runsc --network=sandbox) on a veth of the suite's bridge, wired in a netns made "
                       "before `runsc create`",
            "host_network": f"not offered: {HOST_NETWORK}", "netstack_workaround": NETSTACK_WORKAROUND,
            "scratch_dir": SCRATCH, **NOTES}

    def cleanup_leftovers(self) -> list[str]:
        """Beyond the generic sweep (state dirs, isolab/ cgroups and what runs in them) and the OCI stray
        cgroups: any runsc process whose --root names a dead gvisor or probe state dir."""
        removed = super().cleanup_leftovers()
        ours = tuple(f"{STATE_ROOT}/{kind}-" for kind in (self.name, probe.PROBE_KIND))

        def match(pid: int) -> str | None:
            try:
                args = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
            except OSError:
                return None
            for before, arg in zip(["", *args], args, strict=False):  # `--root DIR` (ours) or `--root=DIR` (runsc's)
                root = arg.removeprefix("--root=") if arg.startswith("--root=") else arg if before == "--root" else ""
                if root.startswith(ours):
                    instance = Path(root).relative_to(STATE_ROOT).parts[0]
                    if not state.token_live(instance.rsplit("-", 1)[-1]):
                        return f"runsc of the dead instance {instance}"
            return None

        if any(match(pid) for pid in processes()):
            removed += kill_matching(match)
        return removed
