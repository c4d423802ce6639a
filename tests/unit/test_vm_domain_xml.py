"""Domain XML from an InstanceSpec, for KVM and TCG, checked by structure and by virt-xml-validate."""

from __future__ import annotations

import dataclasses
import shutil
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from runtime.errors import SpecError
from runtime.spec import InstanceSpec
from runtime.vm.domain_xml import DomainConfig, build_domain_xml, ignored_limits, vcpu_count


def config(accel: str, network: bool = False) -> DomainConfig:
    extra: dict = dict(bridge="islbr0", tap="isl1a2b3c4d", mac="52:54:00:1a:2b:3c", ip_cidr="10.213.0.7/24") \
        if network else {}
    extra["libvirt_bandwidth"] = network
    return DomainConfig(name="isolab-vm-1a2b3c4d", accel=accel, kernel=Path("/img/vmlinux"),
                        initramfs=Path("/img/initramfs.img"),
                        overlay=Path("/var/lib/isolab/vm/x/overlay.qcow2"),
                        serial_log=Path("/var/lib/isolab/vm/x/serial.log"), host_cpus=4, **extra)


FULL = InstanceSpec(cpus=1.5, cpuset="0-1", cpu_shares=512, memory=512 * 1024**2, io_read_bps=10_000_000,
                    io_write_bps=20_000_000, io_read_iops=300, io_write_iops=100, network="bridge",
                    bandwidth=100_000_000, hostname="guest1")


def validate(xml: str, tmp_path: Path) -> None:
    if shutil.which("virt-xml-validate") is None or shutil.which("xmllint") is None:
        pytest.skip("virt-xml-validate/xmllint not installed (libvirt-clients, libxml2-utils)")
    path = tmp_path / "domain.xml"
    path.write_text(xml)
    proc = subprocess.run(["virt-xml-validate", str(path), "domain"], capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.parametrize("accel", ["kvm", "tcg"])
def test_full_spec_validates(accel, tmp_path):
    xml = build_domain_xml(FULL, config(accel, network=True))
    validate(xml, tmp_path)
    root = ET.fromstring(xml)
    assert root.get("type") == ("kvm" if accel == "kvm" else "qemu")
    assert root.findtext("vcpu") == "2"
    assert root.find("vcpu").get("cpuset") == "0-1"
    assert [(p.get("vcpu"), p.get("cpuset")) for p in root.iter("vcpupin")] == [("0", "0"), ("1", "1")]
    assert root.findtext("cputune/quota") == "75000" and root.findtext("cputune/period") == "100000"
    assert root.findtext("cputune/shares") == "512"
    assert root.findtext("memory") == str(512 * 1024)
    cpu = root.find("cpu")
    assert cpu.get("mode") == ("host-passthrough" if accel == "kvm" else "maximum")
    assert root.findtext("os/kernel") == "/img/vmlinux"
    assert root.findtext("os/initrd") == "/img/initramfs.img"
    cmdline = root.findtext("os/cmdline")
    assert "isolab.ip=10.213.0.7/24" in cmdline and "isolab.hostname=guest1" in cmdline
    disk = root.find("devices/disk")
    assert disk.find("driver").get("type") == "qcow2"
    assert disk.find("target").get("bus") == "virtio"
    assert disk.findtext("iotune/read_bytes_sec") == "10000000"
    assert disk.findtext("iotune/write_iops_sec") == "100"
    iface = root.find("devices/interface")
    assert iface.get("type") == "bridge" and iface.find("source").get("bridge") == "islbr0"
    assert iface.find("target").get("dev") == "isl1a2b3c4d" and iface.find("model").get("type") == "virtio"
    assert iface.find("bandwidth/inbound").get("average") == str(100_000_000 // 8 // 1024)
    assert root.find("devices/serial/source").get("path").endswith("serial.log")
    assert root.find("devices/channel/target").get("name") == "org.qemu.guest_agent.0"


@pytest.mark.parametrize("accel", ["kvm", "tcg"])
def test_minimal_spec_validates(accel, tmp_path):
    xml = build_domain_xml(InstanceSpec(), config(accel))
    validate(xml, tmp_path)
    root = ET.fromstring(xml)
    assert root.findtext("vcpu") == "4"  # all host cpus
    assert root.findtext("memory") == str(1024 * 1024)  # 1 GiB default
    assert root.find("cputune") is None and root.find("devices/interface") is None
    assert root.find("devices/disk/iotune") is None


def test_vcpu_count_rules():
    assert vcpu_count(InstanceSpec(cpus=0.5), 8) == 1
    assert vcpu_count(InstanceSpec(cpus=2.2), 8) == 3
    assert vcpu_count(InstanceSpec(cpuset="1,3,5"), 8) == 3
    assert vcpu_count(InstanceSpec(), 2) == 2


def test_bad_inputs_rejected():
    with pytest.raises(SpecError, match="below"):
        build_domain_xml(InstanceSpec(memory=16 * 1024**2), config("tcg"))
    with pytest.raises(SpecError, match="host"):
        build_domain_xml(InstanceSpec(network="host"), config("tcg"))
    with pytest.raises(SpecError, match="bridge"):
        build_domain_xml(InstanceSpec(network="bridge"), config("tcg"))
    with pytest.raises(SpecError, match="memory"):
        InstanceSpec(memory=0)


def test_ignored_limits():
    spec = InstanceSpec(memory_swap=2**30, pids_max=100, bandwidth=10**6)
    assert set(ignored_limits(spec)) == {"memory_swap", "pids_max", "bandwidth"}
    assert ignored_limits(FULL) == {}


@pytest.mark.parametrize("accel", ["kvm", "tcg"])
def test_volume_is_a_raw_second_disk(accel, tmp_path):
    volume = Path("/var/lib/isolab/vm/x/volume.raw")
    spec = InstanceSpec(volume=True, io_write_bps=20_000_000)
    xml = build_domain_xml(spec, dataclasses.replace(config(accel), volume=volume))
    validate(xml, tmp_path)
    disks = ET.fromstring(xml).findall("devices/disk")
    assert [d.find("target").get("dev") for d in disks] == ["vda", "vdb"]
    root_disk, data = disks
    assert data.find("source").get("file") == str(volume)
    assert data.find("target").get("bus") == "virtio"
    # the same host I/O path as the root disk: only the format differs (qcow2 overlay vs raw)
    assert data.find("driver").attrib == {**root_disk.find("driver").attrib, "type": "raw"}
    assert root_disk.find("driver").get("type") == "qcow2"
    assert data.find("driver").get("cache") == "none" and data.find("driver").get("io") == "native"
    assert data.findtext("iotune/write_bytes_sec") == "20000000"
    slots = [d.find("address").get("slot") for d in ET.fromstring(xml).iter() if d.find("address") is not None]
    assert len(slots) == len(set(slots))


def test_volume_needs_its_image():
    with pytest.raises(SpecError, match="volume"):
        build_domain_xml(InstanceSpec(volume=True), config("tcg"))
    assert len(ET.fromstring(build_domain_xml(InstanceSpec(), config("tcg"))).findall("devices/disk")) == 1


def test_qemu_user_and_shared_image_labels(tmp_path):
    """QEMU's DAC label and dynamic ownership per domain; the shared backing image is never relabelled."""
    base = dataclasses.replace(config("tcg"), backing=Path("/img/rootfs.ext4"))
    for label, relabel in (("+999:+995", True), ("+0:+0", False)):
        xml = build_domain_xml(InstanceSpec(), dataclasses.replace(base, qemu_label=label, relabel=relabel))
        validate(xml, tmp_path)
        seclabel = ET.fromstring(xml).find("seclabel")
        assert (seclabel.get("model"), seclabel.get("type"), seclabel.findtext("label")) == ("dac", "static", label)
        assert seclabel.get("relabel") == ("yes" if relabel else "no")
        store = ET.fromstring(xml).find("devices/disk/backingStore")
        assert store.find("format").get("type") == "raw"
        assert store.find("source").get("file") == "/img/rootfs.ext4"
        if relabel:
            assert store.find("source/seclabel").attrib == {"model": "dac", "relabel": "no"}
        else:  # root fallback: the domain relabels nothing, and libvirt refuses a per-disk override then
            assert store.find("source/seclabel") is None
    assert ET.fromstring(build_domain_xml(InstanceSpec(), config("tcg"))).find("seclabel") is None
