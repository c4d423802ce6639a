"""Libvirt domain XML for one VM instance, generated from an InstanceSpec. Pure: no libvirt, no files.

What the spec becomes:
  cpus        -> <vcpu> (ceil(cpus); default: every host CPU, or one per cpuset CPU) and, for a
                 fractional quota, <cputune><period>/<quota> (libvirt's quota is per vcpu)
  cpuset      -> <vcpu cpuset>, one <vcpupin> per vcpu (round robin over the set), <emulatorpin>
  cpu_shares  -> <cputune><shares>
  memory      -> <memory>/<currentMemory> (default 1 GiB)
  io_*        -> <iotune> on the root disk and on the data volume, each (QEMU throttling; <blkiotune>
                 needs a host block device, the disks are files, so it is not used)
  volume      -> a second virtio-blk disk `vdb`: the raw (ext4) image config.volume, with the same
                 cache='none' io='native' as the root disk, so only the format differs (qcow2 overlay
                 vs raw); the instance mounts it at /mnt after boot
  bandwidth   -> <bandwidth> inbound/outbound on the bridge interface when libvirt_bandwidth (libvirt
                 shapes with htb+sfq, which not every host kernel has); otherwise the instance puts
                 a tbf on the tap (to the guest) and on the guest's NIC (from the guest)
  network     -> "bridge": virtio-net on the suite's bridge with a tap named isl…; "none": no NIC
The kernel boots directly (PVH, uncompressed vmlinux) with our initramfs; the root disk is a qcow2
overlay on the shared ext4 image; ttyS0 goes to a file; a virtio-serial channel carries the agent.

Ownership: `qemu_label` ("+uid:+gid", libvirt-qemu's) becomes the domain's DAC <seclabel>; with
relabel='yes' libvirt's dynamic ownership chowns the per-instance files (overlay, volume) and the
kernel/initrd to it while the domain runs and gives them back on shutdown. The shared ext4 image is
named as the overlay's <backingStore> with <seclabel model='dac' relabel='no'/>: libvirt never
restores the owner of a backing image, so without this the shared image would stay owned (and
writable) by libvirt-qemu; QEMU reads it through its world-readable mode. The root fallback is
"+0:+0" with relabel='no' (see runtime.vm.confinement).
"""

from __future__ import annotations

import math
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

from runtime.errors import SpecError
from runtime.spec import InstanceSpec, parse_cpuset

DEFAULT_MEMORY = 1024**3
MIN_MEMORY = 128 * 1024**2
AGENT_CHANNEL = "org.qemu.guest_agent.0"
CPU_PERIOD_US = 100_000
BASE_CMDLINE = "console=ttyS0 root=/dev/vda rw quiet panic=-1 tsc=reliable"


@dataclass(frozen=True)
class DomainConfig:
    """Everything the XML needs besides the spec: names, paths, accelerator, network attachment."""

    name: str
    accel: str  # "kvm" or "tcg"
    kernel: Path
    initramfs: Path
    overlay: Path
    serial_log: Path
    host_cpus: int
    volume: Path | None = None  # raw disk image of the data volume when spec.volume
    bridge: str | None = None  # bridge name when spec.network == "bridge"
    tap: str | None = None
    mac: str | None = None
    ip_cidr: str | None = None  # e.g. "10.213.0.5/24", passed as isolab.ip=
    extra_cmdline: str = ""
    libvirt_bandwidth: bool = False  # <bandwidth> needs htb+sfq on the host; else tbf is applied by tc
    machine: str = "q35"
    emulator: str | None = None
    backing: Path | None = None  # the shared raw image under the overlay, never relabelled by libvirt
    qemu_label: str | None = None  # DAC "+uid:+gid" this domain's QEMU runs as (None: qemu.conf's user)
    relabel: bool = True  # with qemu_label: libvirt chowns the images to it and back (dynamic ownership)
    extra_ignored: dict[str, object] = field(default_factory=dict)


def vcpu_count(spec: InstanceSpec, host_cpus: int) -> int:
    """ceil(cpus) if set, else one vcpu per cpuset CPU if set, else every host CPU."""
    if spec.cpus is not None:
        return max(1, math.ceil(spec.cpus))
    if spec.cpuset is not None:
        return len(parse_cpuset(spec.cpuset))
    return max(1, host_cpus)


def memory_bytes(spec: InstanceSpec) -> int:
    memory = spec.memory if spec.memory is not None else DEFAULT_MEMORY
    if memory < MIN_MEMORY:
        raise SpecError(f"vm: memory {memory} bytes is below the {MIN_MEMORY // 1024**2} MiB "
                        "a guest kernel needs")
    return memory


def kernel_cmdline(spec: InstanceSpec, config: DomainConfig) -> str:
    words = [BASE_CMDLINE, f"isolab.hostname={spec.hostname}"]
    if config.ip_cidr:
        words.append(f"isolab.ip={config.ip_cidr}")
    if config.extra_cmdline:
        words.append(config.extra_cmdline)
    return " ".join(words)


def ignored_limits(spec: InstanceSpec) -> dict[str, object]:
    """Spec limits a VM does not enforce."""
    ignored: dict[str, object] = {}
    if spec.memory_swap is not None:
        ignored["memory_swap"] = spec.memory_swap  # a guest has no host swap to cap
    if spec.pids_max is not None:
        ignored["pids_max"] = spec.pids_max  # the guest kernel owns its processes
    if spec.bandwidth is not None and spec.network != "bridge":
        ignored["bandwidth"] = spec.bandwidth  # no NIC to shape
    if spec.disk_quota is not None:
        # The guest's root is the image's ext4 behind a qcow2 overlay whose virtual size is the image's
        # (a qcow2 overlay cannot be smaller than its backing file, and the guest's free room is the image
        # recipe's headroom, 3 GiB); the volume has the platform's volume_size. The VM's writes are bounded
        # by those disk sizes, not by this request.
        ignored["disk_quota"] = spec.disk_quota
    return ignored


def _sub(parent: ET.Element, tag: str, text: str | None = None, **attrs: str) -> ET.Element:
    element = ET.SubElement(parent, tag, attrs)
    if text is not None:
        element.text = text
    return element


def _pci_address(device: ET.Element, config: DomainConfig, slot: int) -> None:
    """On q35, place the device on pcie.0 itself (an integrated endpoint, as raw QEMU does); otherwise
    libvirt adds a pcie-root-port per device, which costs boot time under TCG."""
    if config.machine.startswith(("q35", "pc-q35")):
        _sub(device, "address", type="pci", domain="0x0000", bus="0x00", slot=f"0x{slot:02x}", function="0x0")


def _disk(devices: ET.Element, spec: InstanceSpec, config: DomainConfig, fmt: str, source: Path, dev: str,
          slot: int, backing: Path | None = None) -> None:
    """A virtio-blk file disk with O_DIRECT host access (cache='none', io='native') and the spec's iotune;
    `backing`: a raw image under it that libvirt must not relabel."""
    disk = _sub(devices, "disk", type="file", device="disk")
    _sub(disk, "driver", name="qemu", type=fmt, cache="none", io="native", discard="unmap")
    _sub(disk, "source", file=str(source))
    if backing is not None:
        store = _sub(disk, "backingStore", type="file")
        _sub(store, "format", type="raw")
        source_el = _sub(store, "source", file=str(backing))
        if config.qemu_label is None or config.relabel:  # libvirt refuses a label override on a domain
            _sub(source_el, "seclabel", model="dac", relabel="no")  # that does not relabel (root fallback)
        _sub(store, "backingStore")  # the chain ends here
    _sub(disk, "target", dev=dev, bus="virtio")
    _pci_address(disk, config, slot)
    iotune_values = {
        "read_bytes_sec": spec.io_read_bps, "write_bytes_sec": spec.io_write_bps,
        "read_iops_sec": spec.io_read_iops, "write_iops_sec": spec.io_write_iops,
    }
    if any(v is not None for v in iotune_values.values()):
        iotune = _sub(disk, "iotune")
        for tag, value in iotune_values.items():
            if value is not None:
                _sub(iotune, tag, str(value))


def build_domain_xml(spec: InstanceSpec, config: DomainConfig) -> str:
    """The <domain> document for this spec, as a string."""
    if config.accel not in ("kvm", "tcg"):
        raise SpecError(f"vm: accelerator must be kvm or tcg, not {config.accel!r}")
    if spec.network == "host":
        raise SpecError("vm: network mode 'host' cannot be given to a VM (use 'bridge' or 'none')")
    if spec.network == "bridge" and not (config.bridge and config.tap):
        raise SpecError("vm: network 'bridge' needs a bridge and a tap name")
    if spec.volume and config.volume is None:
        raise SpecError("vm: a spec with volume=True needs the raw disk image of the volume (config.volume)")
    vcpus = vcpu_count(spec, config.host_cpus)
    memory_kib = memory_bytes(spec) // 1024

    domain = ET.Element("domain", type="kvm" if config.accel == "kvm" else "qemu")
    _sub(domain, "name", config.name)
    _sub(domain, "title", "isolab VM instance")
    _sub(domain, "memory", str(memory_kib), unit="KiB")
    _sub(domain, "currentMemory", str(memory_kib), unit="KiB")
    vcpu = _sub(domain, "vcpu", str(vcpus), placement="static")
    pinned = parse_cpuset(spec.cpuset) if spec.cpuset is not None else []
    if pinned:
        vcpu.set("cpuset", spec.cpuset or "")

    cputune = ET.Element("cputune")
    if spec.cpu_shares is not None:
        _sub(cputune, "shares", str(spec.cpu_shares))
    for index in range(vcpus) if pinned else ():
        _sub(cputune, "vcpupin", vcpu=str(index), cpuset=str(pinned[index % len(pinned)]))
    if pinned:
        _sub(cputune, "emulatorpin", cpuset=spec.cpuset or "")
    if spec.cpus is not None and spec.cpus < vcpus:
        _sub(cputune, "period", str(CPU_PERIOD_US))
        _sub(cputune, "quota", str(max(1000, int(CPU_PERIOD_US * spec.cpus / vcpus))))
    if len(cputune):
        # libvirt's schema wants shares/period/quota before the pins; reorder to be safe.
        order = {"shares": 0, "period": 1, "quota": 2, "vcpupin": 3, "emulatorpin": 4}
        cputune[:] = sorted(cputune, key=lambda e: order[e.tag])
        domain.append(cputune)

    os_el = _sub(domain, "os")
    _sub(os_el, "type", "hvm", arch="x86_64", machine=config.machine)
    _sub(os_el, "kernel", str(config.kernel))
    _sub(os_el, "initrd", str(config.initramfs))
    _sub(os_el, "cmdline", kernel_cmdline(spec, config))

    features = _sub(domain, "features")
    _sub(features, "acpi")
    _sub(features, "apic")
    if config.accel == "kvm":
        _sub(domain, "cpu", mode="host-passthrough", check="none", migratable="off")
    else:
        _sub(domain, "cpu", mode="maximum", check="none")
    _sub(domain, "clock", offset="utc")
    _sub(domain, "on_poweroff", "destroy")
    _sub(domain, "on_reboot", "destroy")
    _sub(domain, "on_crash", "destroy")

    devices = _sub(domain, "devices")
    if config.emulator:
        _sub(devices, "emulator", config.emulator)
    _disk(devices, spec, config, "qcow2", config.overlay, "vda", 0x03, config.backing)
    if spec.volume and config.volume is not None:
        _disk(devices, spec, config, "raw", config.volume, "vdb", 0x06)

    if spec.network == "bridge":
        iface = _sub(devices, "interface", type="bridge")
        if config.mac:
            _sub(iface, "mac", address=config.mac)
        _sub(iface, "source", bridge=config.bridge or "")
        _sub(iface, "target", dev=config.tap or "")
        _sub(iface, "model", type="virtio")
        _pci_address(iface, config, 0x05)
        if spec.bandwidth is not None and config.libvirt_bandwidth:
            kib_per_s = str(max(1, spec.bandwidth // 8 // 1024))  # libvirt: KiB/s
            bandwidth = _sub(iface, "bandwidth")
            _sub(bandwidth, "inbound", average=kib_per_s)
            _sub(bandwidth, "outbound", average=kib_per_s)

    serial = _sub(devices, "serial", type="file")
    _sub(serial, "source", path=str(config.serial_log), append="off")
    _sub(serial, "target", port="0")
    controller = _sub(devices, "controller", type="virtio-serial", index="0")
    _pci_address(controller, config, 0x04)
    channel = _sub(devices, "channel", type="unix")
    _sub(channel, "target", type="virtio", name=AGENT_CHANNEL)
    _sub(devices, "controller", type="usb", model="none")
    _sub(devices, "memballoon", model="none")
    if config.qemu_label is not None:
        relabel = "yes" if config.relabel else "no"
        seclabel = _sub(domain, "seclabel", type="static", model="dac", relabel=relabel)
        _sub(seclabel, "label", config.qemu_label)
    ET.indent(domain)
    return ET.tostring(domain, encoding="unicode")
