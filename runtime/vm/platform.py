"""The `vm` platform: libvirt (qemu:///system) VMs booted from the shared image, KVM or TCG.

Options (keyword arguments of VmPlatform, also accepted by load_platform("vm", ...)):
  accel          "auto" (default), "kvm" or "tcg"; see runtime.vm.accel
  uri            libvirt URI, default qemu:///system
  boot_timeout   seconds from start to agent ready before the boot counts as hung (default 90 under
                 TCG, 30 under KVM)
  graceful_stop  try a guest poweroff (bounded) before forcing the domain off on destroy (default False)
  extra_cmdline  words appended to the guest kernel command line
  machine        QEMU machine type, default q35
  volume_size    size of the sparse raw data volume of InstanceSpec(volume=True), default 8G
Defaults when the spec leaves them unset: 1 GiB of memory and one vcpu per host CPU.

Confinement (runtime.vm.confinement): QEMU runs as the unprivileged libvirt-qemu user with libvirt's
dynamic ownership and whatever MAC driver libvirt uses on this host; where that cannot work, as root
with a one-line `confinement_warning`. environment() records the user, group, capabilities and LSM
label read back from a running QEMU process, not from the configuration.
"""

from __future__ import annotations

import atexit
import shutil
import weakref
from pathlib import Path

import libvirt

from runtime import state
from runtime.errors import PlatformUnavailable, SpecError
from runtime.image.store import Image
from runtime.naming import VM_STATE_ROOT
from runtime.platform import KIND_VM, Platform, PlatformInfo
from runtime.spec import InstanceSpec, parse_size
from runtime.vm import accel as accel_mod
from runtime.vm import confinement, libvirt_conn
from runtime.vm.instance import (
    DEFAULT_VOLUME_SIZE,
    VmInstance,
    check_image_files,
)


class VmPlatform(Platform):
    name = "vm"
    network_modes = ("none", "bridge")
    options = ("accel",)  # RunConfig.accel: auto, kvm or tcg

    def __init__(self, image: Image | None = None, accel: str = "auto", **options: object) -> None:
        self.image = image
        self.accel = accel_mod.detect(accel)
        self.uri = str(options.pop("uri", libvirt_conn.DEFAULT_URI))
        default_timeout = 30.0 if self.accel.accel == "kvm" else 90.0
        self.boot_timeout = float(options.pop("boot_timeout", default_timeout))  # type: ignore[arg-type]
        self.graceful_stop = bool(options.pop("graceful_stop", False))
        self.extra_cmdline = str(options.pop("extra_cmdline", ""))
        self.machine = str(options.pop("machine", "q35"))
        self.volume_size = parse_size(options.pop("volume_size", DEFAULT_VOLUME_SIZE), "vm volume_size")  # type: ignore[arg-type]
        if options:
            raise SpecError(f"vm: unknown option(s) {', '.join(sorted(options))}")
        if self.boot_timeout <= 0:
            raise SpecError(f"vm: boot_timeout must be positive, not {self.boot_timeout}")
        self._conn: libvirt.virConnect | None = None
        self._confinement: confinement.Plan | None = None
        self.qemu_process: dict[str, object] | None = None  # the last QEMU an instance read back
        self._live: weakref.WeakSet[VmInstance] = weakref.WeakSet()
        atexit.register(self._destroy_live)

    @property
    def conn(self) -> libvirt.virConnect:
        if self._conn is None:
            self._conn = libvirt_conn.open_connection(self.uri)
        return self._conn

    def check_available(self) -> None:
        for tool in ("qemu-img", "qemu-system-x86_64"):
            if shutil.which(tool) is None:
                raise PlatformUnavailable(f"vm: {tool} is not installed (run 'python -m bench.hostsetup')")
        self.conn  # noqa: B018 - opening the connection is the check
        self.confinement  # noqa: B018 - decided once, before any instance

    @property
    def confinement(self) -> confinement.Plan:
        """Which user QEMU runs as here (libvirt-qemu, or root with the reason) and the MAC in use."""
        if self._confinement is None:
            try:
                # getSecurityModel, not getCapabilities: the latter may re-probe every QEMU binary
                # (measured 33-57 s a call on this loaded host), the former answers at once.
                security = confinement.from_security_model(self.conn.getSecurityModel())
            except libvirt.libvirtError as exc:
                raise PlatformUnavailable(f"vm: libvirt security model unreadable: {exc.get_error_message()}") from exc
            state.ensure_root(VM_STATE_ROOT, 0o755)  # QEMU searches it for its instance's files
            # What QEMU opens: its instance's files in the state dir, the shared kernel and initramfs
            # (libvirt chowns them, their directory must let QEMU through), the shared image (read only).
            paths = [VM_STATE_ROOT]
            if self.image is not None:
                paths += [self.image.vmlinux, self.image.initramfs, self.image.ext4]
                confinement.reclaim_shared_image(self.image.ext4)
            devices = [Path("/dev/kvm")] if self.accel.accel == "kvm" else []
            self._confinement = confinement.plan(security, confinement.host_mac(), paths, devices=devices)
        return self._confinement

    def create(self, spec: InstanceSpec) -> VmInstance:
        if self.image is None:
            raise SpecError("vm: no image given (VmPlatform(image=ensure_image()))")
        check_image_files(self.image)
        if spec.network not in self.network_modes:
            raise SpecError(f"vm: network mode {spec.network!r} is not supported (supported: "
                            f"{', '.join(self.network_modes)})")
        instance = VmInstance(self, spec)  # validates vcpus/memory before anything exists
        self.conn  # noqa: B018 - fail on libvirtd before creating files
        self._live.add(instance)
        instance.start()
        return instance

    def forget(self, instance: VmInstance) -> None:
        self._live.discard(instance)

    def _destroy_live(self) -> None:
        for instance in list(self._live):
            try:
                instance.destroy()
            except Exception:
                pass

    def describe(self) -> PlatformInfo:
        emulated = self.accel.accel != "kvm"
        return PlatformInfo(name=self.name, kind=KIND_VM, display_name="libvirt VM", colour="#c44e52",
                            mechanism="TCG (emulated)" if emulated else "KVM", emulated=emulated, baseline=False)

    def environment(self) -> dict[str, object]:
        env: dict[str, object] = {
            "accelerator": self.accel.accel,
            "accelerator_reason": self.accel.reason,
            "accelerator_requested": self.accel.requested,
            "libvirt_uri": self.uri,
            "libvirt_domain_type": self.accel.libvirt_type,
            "vm_defaults": "1 GiB memory, one vcpu per host CPU when the spec leaves them unset",
            # what the report's storage section calls this platform's storage (reporting.storage)
            "storage_driver": "qcow2",
            "storage": "qcow2 overlay (cluster copy-on-write) on the image's raw ext4; volume: sparse raw file",
        }
        try:
            env.update(libvirt_conn.versions(self.conn))
            env.update(self._confinement_facts())
        except PlatformUnavailable as exc:
            env["libvirt_error"] = str(exc)
        if self.image is not None:
            env["guest_kernel"] = self.image.kernel_version
        return env

    def _confinement_facts(self) -> dict[str, object]:
        """User, group and security driver QEMU ran with (read back from a running QEMU), for env.json."""
        plan = self.confinement
        facts: dict[str, object] = {
            "qemu_user_expected": plan.expected_user, "qemu_group_expected": plan.expected_group,
            "dynamic_ownership": plan.relabel, "security_driver": plan.mac_model,
            "host_mac": plan.mac.driver or "none", "host_mac_detail": plan.mac.detail,
            "production_default": "libvirt-qemu:libvirt-qemu, no capabilities, QEMU's seccomp sandbox, a "
                                  "private mount namespace, dynamic ownership, the host's MAC (AppArmor "
                                  "on Debian) when it runs one",
        }
        observed = self.qemu_process
        facts["qemu_process"] = observed or "not observed: no VM had started when this was recorded"
        warnings = [plan.warning] if plan.warning else []
        if observed is not None and observed["user"] != plan.expected_user:
            warnings.append(f"QEMU ran as {observed['user']}, not {plan.expected_user} as planned")
        if warnings:
            facts["confinement_warning"] = "; ".join(warnings)
        return facts

    def cleanup_leftovers(self) -> list[str]:
        """Remove dead runs' domains, VM dirs and logs through this platform's libvirt connection
        (runtime.vm.sweep; `cleanup` runs it as part of runtime.sweep). Live runs' VMs are left alone."""
        from runtime.vm.sweep import sweep_vms

        try:
            conn = self.conn
        except PlatformUnavailable as exc:
            return [f"(domains not checked: {exc})"]
        return sweep_vms(conn)
