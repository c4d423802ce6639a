"""One VM instance: its files, its libvirt domain, its boot phase by phase, exec and files via the agent.

Start, in order: check the image files; make /var/lib/isolab/vm/<id>/ with the qcow2 overlay (backing
file: the shared ext4 image) and the serial log path; build the XML; define the domain (phase
`define`); start it (`qemu_up`); wait on the serial log for ISOLAB-INITRAMFS (`kernel`) and
ISOLAB-INIT (`init`); ping the agent until it answers (`agent`). With `InstanceSpec(volume=True)` the
state dir also holds volume.raw, a sparse raw disk image made ext4 on the host (`mkfs.ext4`, no loop
mount) before the domain is defined, attached as vdb and mounted at /mnt through the agent after boot
(phase `volume`). Any failure, KeyboardInterrupt
included, destroys what was made before the error propagates. A failed boot's serial log is kept
under /var/log/isolab/vm/ and named in the error.

QEMU runs as the platform's confinement plan says (runtime.vm.confinement: libvirt-qemu, with libvirt
chowning the overlay, volume, kernel and initramfs to it while the domain runs and back on shutdown;
the shared ext4 image is only read). Should libvirt refuse the shared kernel because a running domain
holds it under another owner, the instance boots from private copies instead. After boot the instance
reads back who its QEMU process really is (/proc/<pid>/status) for env.json and the samples' metadata.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import libvirt

from runtime import state
from runtime.errors import ImageError, InstanceError
from runtime.naming import STATE_ROOT, VM_STATE_ROOT, link_name, new_instance_id
from runtime.platform import Instance, StartPhases
from runtime.spec import VOLUME_DIR, ExecResult, InstanceSpec
from runtime.vm import confinement, libvirt_conn
from runtime.vm.agent import AgentError, GuestAgent
from runtime.vm.bootwatch import MARKER_INIT, MARKER_KERNEL, BootFailed, SerialWatch
from runtime.vm.domain_xml import DomainConfig, build_domain_xml, ignored_limits, memory_bytes, vcpu_count

if TYPE_CHECKING:
    from runtime.vm.platform import VmPlatform

FAILED_LOG_ROOT = Path(os.environ.get("ISOLAB_VM_LOG_DIR", "/var/log/isolab/vm"))
LIBVIRT_QEMU_LOGS = Path("/var/log/libvirt/qemu")
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
DEFAULT_VOLUME_SIZE = "8G"  # sparse: only what the guest writes takes host space (disk full profile: 4.4 GiB)
VOLUME_DEVICE = "/dev/vdb"
# One inode per MiB and inode tables written by mkfs: the guest's ext4lazyinit thread then has nothing
# to zero in the background while a benchmark runs (the journal of a throwaway volume need not be zeroed).
MKFS_VOLUME = ("mkfs.ext4", "-q", "-F", "-i", "1048576", "-E", "lazy_itable_init=0,lazy_journal_init=1",
               "-L", "isolab-volume")

_STATE_NAMES = {
    libvirt.VIR_DOMAIN_NOSTATE: "no state", libvirt.VIR_DOMAIN_RUNNING: "running",
    libvirt.VIR_DOMAIN_BLOCKED: "blocked", libvirt.VIR_DOMAIN_PAUSED: "paused",
    libvirt.VIR_DOMAIN_SHUTDOWN: "shutting down", libvirt.VIR_DOMAIN_SHUTOFF: "shut off",
    libvirt.VIR_DOMAIN_CRASHED: "crashed", libvirt.VIR_DOMAIN_PMSUSPENDED: "suspended",
}


def check_image_files(image: object) -> None:
    for attr in ("ext4", "vmlinux", "initramfs"):
        path = getattr(image, attr, None)
        if path is None or not Path(path).is_file():
            raise ImageError(f"vm: image file {attr} missing at {path} (rebuild the image with ensure_image)")


class VmInstance(Instance):
    platform = "vm"

    def __init__(self, owner: VmPlatform, spec: InstanceSpec) -> None:
        self.owner = owner
        self.spec = spec
        self.instance_id = new_instance_id("vm")
        self.name = f"{libvirt_conn.VM_DOMAIN_PREFIX}{self.instance_id.removeprefix('vm-')}"
        self.dir = VM_STATE_ROOT / self.instance_id
        self.overlay = self.dir / "overlay.qcow2"
        self.kernel = owner.image.vmlinux  # the shared files, or private copies (_use_private_boot_files)
        self.initramfs = owner.image.initramfs
        self.private_boot_files: str | None = None  # why this instance boots from its own copies
        self.volume = self.dir / "volume.raw" if spec.volume else None
        self.serial_log = self.dir / "serial.log"
        self.start_phases = StartPhases()
        self.stop_phases: dict[str, float] = {}
        self.vcpus = vcpu_count(spec, os.cpu_count() or 1)
        self.memory = memory_bytes(spec)
        self.where = f"vm {self.instance_id}"
        self.boot_markers: dict[str, float] = {}
        self._domain: libvirt.virDomain | None = None
        self._agent: GuestAgent | None = None
        self._bridge: object | None = None
        self._address: str | None = None
        self._destroyed = False
        self.create_retries = 0
        self.qemu_process: dict[str, object] | None = None

    # ---- start -------------------------------------------------------------------------------
    def start(self) -> None:
        try:
            self._start()
        except BaseException as exc:
            if isinstance(exc, BootFailed):
                kept = self._keep_serial_log()
                self.destroy()
                accel = self.owner.accel
                why = "" if accel.kvm_usable or accel.accel != "kvm" else f" [KVM: {accel.reason}]"
                raise BootFailed(f"{exc}{kept}{why}") from exc
            self.destroy()
            raise

    def _start(self) -> None:
        owner = self.owner
        check_image_files(owner.image)
        state.claim(self.dir, "vm", mode=0o755)  # QEMU opens the disk images in it
        self._make_overlay()
        if self.volume is not None:
            self._make_volume(self.volume)
        self._define()
        self.start_phases.lap("define")
        deadline = time.monotonic() + owner.boot_timeout
        try:
            try:
                self._create_domain()
            except libvirt.libvirtError as exc:
                if "already in use" not in (exc.get_error_message() or "") or self.private_boot_files:
                    raise
                self._use_private_boot_files(exc.get_error_message())
                self._create_domain()
        except libvirt.libvirtError as exc:
            raise InstanceError(f"{self.where}: libvirt could not start {self.name} under "
                                f"{owner.accel.accel.upper()} ({owner.accel.reason}): "
                                f"{exc.get_error_message()}") from exc
        self.start_phases.lap("qemu_up")
        watch = SerialWatch(self.serial_log)
        for phase, marker in (("kernel", MARKER_KERNEL), ("init", MARKER_INIT)):
            self.boot_markers[phase] = watch.wait_for(marker, deadline, self._why_stopped, self.where)
            self.start_phases.lap(phase)
        self._agent = GuestAgent(self._domain, self.where)
        while not self._agent.ping(timeout=1):
            if (dead := self._why_stopped()) is not None:
                raise BootFailed(f"{self.where}: guest stopped before its agent answered ({dead}); "
                                 f"serial log {self.serial_log}: {watch.tail()}")
            if time.monotonic() >= deadline:
                raise BootFailed(f"{self.where}: guest agent did not answer within the "
                                 f"{owner.boot_timeout:g} s boot timeout; serial log {self.serial_log}: "
                                 f"{watch.tail()}")
            time.sleep(0.02)
        self.start_phases.lap("agent")
        if self.volume is not None:
            self._mount_volume()
            self.start_phases.lap("volume")
        if self.spec.network == "bridge" and self.spec.bandwidth is not None:
            self._shape(self.spec.bandwidth)
        self._read_qemu_process()

    def _read_qemu_process(self) -> None:
        """Who this domain's QEMU really runs as (after the timed phases: a few /proc reads)."""
        pids = self.host_pids()
        try:
            self.qemu_process = confinement.read_qemu_process(pids[0]) if pids else None
        except (OSError, KeyError, ValueError, IndexError):
            self.qemu_process = None
        if self.qemu_process is not None:
            self.owner.qemu_process = self.qemu_process

    def _shape(self, rate_bits: int) -> None:
        """tbf on the tap (host -> guest) and on the guest's NIC (guest -> host)."""
        tap = link_name(self.instance_id)
        burst = max(4 * 64 * 1024, rate_bits // 8 // 100)  # a few 64 KiB segments, or 10 ms at rate
        tbf = ["root", "tbf", "rate", f"{rate_bits}bit", "burst", str(burst), "latency", "50ms"]
        proc = subprocess.run(["tc", "qdisc", "replace", "dev", tap, *tbf], capture_output=True, text=True,
                              timeout=30)
        if proc.returncode != 0:
            raise InstanceError(f"{self.where}: tc qdisc replace tbf on tap {tap} failed: "
                                f"{proc.stderr.strip()}")
        script = ('dev=$(ls /sys/class/net | grep -v "^lo$" | head -n 1); tc qdisc replace dev "$dev" '
                  + " ".join(tbf))
        result = self.exec(["sh", "-c", script], timeout=30)
        if not result.ok:
            raise InstanceError(f"{self.where}: tc tbf inside the guest failed: {result.stderr_tail()}")

    def _create_domain(self) -> None:
        """virDomainCreate, retried when libvirtd tripped over a cgroup mount that vanished under it.

        libvirtd finds cgroup controllers by scanning /proc/mounts at each start; a native instance
        bind-mounts /sys under /run/isolab/nat-*/ and, if it is torn down at that moment, libvirtd
        fails with 'Unable to read from /run/isolab/.../cgroup...'. That is transient: retry.
        """
        assert self._domain is not None
        for attempt in range(3):
            try:
                self._domain.create()
                return
            except libvirt.libvirtError as exc:
                message = exc.get_error_message() or ""
                if attempt == 2 or "cgroup" not in message or str(STATE_ROOT) not in message:
                    raise
                self.create_retries += 1
                time.sleep(0.2)

    def _make_overlay(self) -> None:
        argv = ["qemu-img", "create", "-q", "-f", "qcow2", "-F", "raw", "-b", str(self.owner.image.ext4),
                str(self.overlay)]
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=60)
        if proc.returncode != 0:
            raise InstanceError(f"{self.where}: qemu-img could not create the overlay {self.overlay}: "
                                f"{proc.stderr.strip()}")

    def _define(self) -> None:
        xml = build_domain_xml(self.spec, self._domain_config())
        (self.dir / "domain.xml").write_text(xml)
        try:
            self._domain = self.owner.conn.defineXML(xml)
        except libvirt.libvirtError as exc:
            raise InstanceError(f"{self.where}: libvirt refused the domain {self.name}: "
                                f"{exc.get_error_message()}") from exc

    def _use_private_boot_files(self, why: str) -> None:
        """Boot from this instance's own copy of the kernel and initramfs (71 MB, ~0.1 s), redefined.

        libvirt's dynamic ownership chowns <kernel>/<initrd> to QEMU's user while a domain runs
        (counting users in xattrs, giving them back after the last) and refuses a domain that wants
        another owner on them meanwhile ("Setting different DAC user or group ... already in use"),
        e.g. next to a domain some other program started as root. A private copy has no such neighbour."""
        for source, target in ((self.owner.image.vmlinux, self.dir / "vmlinux"),
                               (self.owner.image.initramfs, self.dir / "initramfs.img")):
            try:
                shutil.copyfile(source, target)
            except OSError as exc:
                raise InstanceError(f"{self.where}: cannot copy {source} to {target}: {exc}") from exc
        self.kernel, self.initramfs = self.dir / "vmlinux", self.dir / "initramfs.img"
        self.private_boot_files = why
        if self._domain is not None:
            libvirt_conn.remove_domain(self._domain)
        self._define()

    def _make_volume(self, path: Path) -> None:
        """A sparse raw image of owner.volume_size, formatted ext4 on the host (mkfs works on the file)."""
        try:
            with open(path, "xb") as f:
                f.truncate(self.owner.volume_size)
        except OSError as exc:
            raise InstanceError(f"{self.where}: cannot create the volume image {path}: {exc}") from exc
        try:
            proc = subprocess.run([*MKFS_VOLUME, str(path)], capture_output=True, text=True, timeout=120)
        except FileNotFoundError as exc:
            raise InstanceError(f"{self.where}: mkfs.ext4 is not installed (e2fsprogs); needed for the "
                                f"volume {path}") from exc
        if proc.returncode != 0:
            raise InstanceError(f"{self.where}: mkfs.ext4 on the volume image {path} failed: "
                                f"{(proc.stderr or proc.stdout).strip()}")

    def _mount_volume(self) -> None:
        result = self.exec(["mount", "-t", "ext4", VOLUME_DEVICE, VOLUME_DIR], timeout=60)
        if not result.ok:
            raise InstanceError(f"{self.where}: mounting the volume {VOLUME_DEVICE} ({self.volume}) at "
                                f"{VOLUME_DIR} in the guest failed: {result.stderr_tail() or result.stdout}")

    def _domain_config(self) -> DomainConfig:
        owner = self.owner
        bridge = tap = mac = ip_cidr = None
        if self.spec.network == "bridge":
            try:
                from runtime.network.bridge import allocate_address, ensure_bridge
            except ModuleNotFoundError as exc:
                raise InstanceError(f"{self.where}: network 'bridge' needs runtime.network.bridge, "
                                    f"which is not available ({exc})") from exc
            self._bridge = ensure_bridge()
            self._address = allocate_address(self._bridge, owner=self.instance_id)
            bridge = self._bridge.name  # type: ignore[attr-defined]
            ip_cidr = f"{self._address}/{self._bridge.prefixlen}"  # type: ignore[attr-defined]
            tap = link_name(self.instance_id)
            token = self.instance_id.removeprefix("vm-")
            mac = "52:54:00:" + ":".join(token[i:i + 2] for i in (0, 2, 4))
        return DomainConfig(
            name=self.name, accel=owner.accel.accel, kernel=self.kernel,
            initramfs=self.initramfs, overlay=self.overlay, serial_log=self.serial_log,
            host_cpus=os.cpu_count() or 1, volume=self.volume, bridge=bridge, tap=tap, mac=mac, ip_cidr=ip_cidr,
            extra_cmdline=owner.extra_cmdline, machine=owner.machine, backing=owner.image.ext4,
            qemu_label=owner.confinement.qemu_label, relabel=owner.confinement.relabel)

    def _why_stopped(self) -> str | None:
        """None while the domain runs; otherwise its state, reason and the end of QEMU's own log."""
        if self._domain is None:
            return "no domain"
        try:
            state, reason = self._domain.state()
        except libvirt.libvirtError as exc:
            return f"domain vanished: {exc.get_error_message()}"
        if state in (libvirt.VIR_DOMAIN_RUNNING, libvirt.VIR_DOMAIN_BLOCKED):
            return None
        qemu_log = LIBVIRT_QEMU_LOGS / f"{self.name}.log"
        try:
            lines = [line for line in qemu_log.read_text(errors="replace").splitlines() if line.strip()]
            detail = "; QEMU log: " + " | ".join(lines[-4:])
        except OSError:
            detail = ""
        return f"state {_STATE_NAMES.get(state, state)}, reason code {reason}{detail}"

    def _keep_serial_log(self) -> str:
        if not self.serial_log.exists():
            return ""
        FAILED_LOG_ROOT.mkdir(parents=True, exist_ok=True)
        kept = FAILED_LOG_ROOT / f"{self.instance_id}-serial.log"
        shutil.copyfile(self.serial_log, kept)
        return f" (serial log kept at {kept})"

    # ---- use ---------------------------------------------------------------------------------
    def _require_agent(self) -> GuestAgent:
        if self._destroyed or self._agent is None:
            raise InstanceError(f"{self.where}: not running (destroyed or never booted)")
        return self._agent

    def exec(self, argv: Sequence[str], timeout: float = 600.0,
             env: dict[str, str] | None = None) -> ExecResult:
        agent = self._require_agent()
        if not argv:
            raise InstanceError(f"{self.where}: exec needs a command")
        environment = {"PATH": DEFAULT_PATH, "HOME": "/root", "LANG": "C.UTF-8",
                       **self.spec.env, **(env or {})}
        started = time.perf_counter()
        try:
            code, out, err = agent.run(list(argv), timeout, environment)
        except AgentError as exc:
            raise InstanceError(f"{self.where}: exec {argv[0]}: {exc}") from exc
        stdout = out.decode(errors="replace")
        stderr = err.decode(errors="replace")
        if code == 127 and "not found" in stderr:
            stderr = f"{argv[0]}: command not found in the guest ({stderr.strip()})\n"
        return ExecResult(tuple(argv), code, stdout, stderr, time.perf_counter() - started)

    def host_pids(self) -> list[int]:
        """The QEMU process running this guest (libvirt's pid file for the domain)."""
        try:
            return [int(Path(f"/run/libvirt/qemu/{self.name}.pid").read_text().strip())]
        except (OSError, ValueError):
            return []

    def put_file(self, local: Path, remote: str) -> None:
        try:
            self._require_agent().put_file(Path(local), remote)
        except (AgentError, OSError) as exc:
            raise InstanceError(f"{self.where}: cannot copy {local} to guest:{remote}: {exc}") from exc

    def get_file(self, remote: str, local: Path) -> None:
        try:
            self._require_agent().get_file(remote, Path(local))
        except (AgentError, OSError) as exc:
            raise InstanceError(f"{self.where}: cannot copy guest:{remote} to {local}: {exc}") from exc

    @property
    def address(self) -> str | None:
        return self._address

    def ignored_limits(self) -> dict[str, object]:
        return ignored_limits(self.spec)

    def disk_usage_bytes(self) -> int | None:
        """Allocated bytes of the qcow2 overlay (the VM's copy-on-write layer) on the host; the data
        volume (volume.raw) is not counted."""
        try:
            return self.overlay.stat().st_blocks * 512
        except OSError:
            return None

    def metadata(self) -> dict[str, object]:
        data: dict[str, object] = {
            "accelerator": self.owner.accel.accel,
            "accelerator_reason": self.owner.accel.reason,
            "vcpus": self.vcpus,
            "memory_bytes": self.memory,
        }
        if self.qemu_process is not None:
            data["qemu_user"] = self.qemu_process["user"]
        if self.private_boot_files:
            data["boot_files"] = "private copies (the shared ones were labelled for another QEMU user)"
        if self.create_retries:
            data["libvirt_create_retries"] = self.create_retries
        if ignored := self.ignored_limits():
            data["limits_ignored"] = sorted(ignored)
        return data

    def quiesce(self) -> str | None:
        """Pause the domain (virDomainSuspend): QEMU's vCPUs stop, so the guest uses no host CPU."""
        try:
            self._require_domain().suspend()
        except libvirt.libvirtError as exc:
            raise InstanceError(f"{self.where}: cannot pause the domain: {exc.get_error_message()}") from exc
        return "domain paused"

    def wake(self) -> None:
        domain = self._require_domain()
        try:
            if domain.state()[0] == libvirt.VIR_DOMAIN_PAUSED:
                domain.resume()
        except libvirt.libvirtError as exc:
            raise InstanceError(f"{self.where}: cannot resume the domain: {exc.get_error_message()}") from exc

    def _require_domain(self) -> libvirt.virDomain:
        if self._destroyed or self._domain is None:
            raise InstanceError(f"{self.where}: not running")
        return self._domain

    # ---- stop --------------------------------------------------------------------------------
    def shutdown(self, timeout: float = 15.0) -> bool:
        """Graceful stop: SIGUSR2 to the guest's PID 1 (it syncs and powers off); True if it went off."""
        if self._destroyed or self._domain is None or self._agent is None:
            return False
        started = time.perf_counter()
        try:
            self._agent.spawn("/bin/sh", ["-c", "kill -USR2 1"])
        except AgentError:
            return False
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if not self._domain.isActive():
                    self.stop_phases["shutdown"] = time.perf_counter() - started
                    return True
            except libvirt.libvirtError:
                return True
            time.sleep(0.05)
        return False

    def destroy(self) -> None:
        """Stop (gracefully first if the platform says so), undefine, remove every file. Idempotent."""
        if self._destroyed:
            return
        if self.owner.graceful_stop and self._agent is not None:
            self.shutdown()
        self._destroyed = True
        started = time.perf_counter()
        errors: list[str] = []
        try:
            domain = self._domain or libvirt_conn.lookup(self.owner.conn, self.name)
            if domain is not None:
                libvirt_conn.remove_domain(domain)
        except libvirt.libvirtError as exc:
            errors.append(f"domain {self.name}: {exc.get_error_message()}")
        self._domain = None
        self._agent = None
        if self._address is not None and self._bridge is not None:
            from runtime.network.bridge import release_address

            release_address(self._bridge, self._address)
            self._address = None
        shutil.rmtree(self.dir, ignore_errors=True)
        for log in (LIBVIRT_QEMU_LOGS / f"{self.name}.log",):
            log.unlink(missing_ok=True)
        self.stop_phases["destroy"] = time.perf_counter() - started
        self.owner.forget(self)
        if errors:
            raise InstanceError(f"{self.where}: destroy incomplete: {'; '.join(errors)}")
