"""Real VM boots under libvirt (TCG here, KVM where the host can): one module-scoped VM for most checks.

Skips only when libvirt or qemu is truly absent (the reason is printed). No timing assertions.
"""

from __future__ import annotations

import hashlib
import json
import os
import pwd
import shutil
import subprocess
import time

import pytest

from runtime.errors import ExecTimeout
from runtime.spec import InstanceSpec

pytestmark = [pytest.mark.vm, pytest.mark.root, pytest.mark.image]

SPEC = InstanceSpec(cpus=2, memory=768 * 1024**2, network="bridge", bandwidth=200_000_000, hostname="islvmtest",
                    env={"ISOLAB_SPEC_ENV": "from-spec"})


def require_libvirt():
    missing = [t for t in ("qemu-system-x86_64", "qemu-img", "virsh") if shutil.which(t) is None]
    if missing:
        pytest.skip(f"VM tests need {', '.join(missing)} (not installed)")
    try:
        import libvirt  # noqa: F401
    except ImportError as exc:
        pytest.skip(f"VM tests need libvirt-python: {exc}")


@pytest.fixture(scope="module")
def platform(require_root, image):
    require_libvirt()
    from runtime.vm.platform import VmPlatform

    vm_platform = VmPlatform(image, accel="auto")
    vm_platform.check_available()
    return vm_platform


@pytest.fixture(scope="module")
def vm(platform):
    instance = platform.create(SPEC)
    yield instance
    instance.destroy()


def test_environment_names_accelerator(platform):
    env = platform.environment()
    assert env["accelerator"] in ("kvm", "tcg") and env["accelerator_reason"]
    assert env["qemu_version"] and env["libvirt_version"]
    if os.path.exists("/sys/module/kvm_pvm"):
        assert env["accelerator"] == "tcg" and "PVM" in env["accelerator_reason"]


def test_phases_and_metadata(vm, platform):
    assert list(vm.start_phases.phases) == ["define", "qemu_up", "kernel", "init", "agent"]
    assert all(v >= 0 for v in vm.start_phases.phases.values())
    assert vm.metadata()["accelerator"] == platform.accel.accel
    print("boot phases (s):", {k: round(v, 3) for k, v in vm.start_phases.phases.items()})


def test_uname_nproc_memory(vm, image):
    assert vm.exec(["uname", "-r"], timeout=60).stdout.strip() == image.kernel_version
    assert vm.exec(["nproc"], timeout=60).stdout.strip() == "2"
    meminfo = vm.exec(["cat", "/proc/meminfo"], timeout=60).stdout
    total_kib = int(next(line.split()[1] for line in meminfo.splitlines() if line.startswith("MemTotal:")))
    assert 0.8 * 768 * 1024 < total_kib <= 768 * 1024


def test_fio_json_through_agent(vm, tmp_path):
    out = f"{vm.scratch_dir}/fio.json"
    result = vm.exec(["fio", "--name=isl", f"--directory={vm.scratch_dir}", "--rw=randrw", "--bs=4k",
                      "--size=16m", "--time_based", "--runtime=5", "--ioengine=psync",
                      "--output-format=json", f"--output={out}"], timeout=120)
    assert result.ok, result.stderr
    vm.get_file(out, tmp_path / "fio.json")
    data = json.loads((tmp_path / "fio.json").read_text())
    job = data["jobs"][0]
    assert job["jobname"] == "isl" and job["job_runtime"] >= 4000
    assert job["read"]["io_bytes"] > 0


def test_missing_command_is_127(vm):
    result = vm.exec(["no-such-command-isolab"], timeout=60)
    assert result.returncode == 127
    assert "no-such-command-isolab" in result.stderr and "not found" in result.stderr


def test_timeout_raises_and_vm_survives(vm):
    with pytest.raises(ExecTimeout, match="sleep"):
        vm.exec(["sleep", "60"], timeout=2)
    assert vm.exec(["true"], timeout=60).ok
    assert "sleep 60" not in vm.exec(["ps", "-eo", "args"], timeout=60).stdout


def test_env_and_exit_code(vm):
    result = vm.exec(["sh", "-c", 'echo "$ISOLAB_SPEC_ENV $EXTRA"; echo oops >&2; exit 3'],
                     timeout=60, env={"EXTRA": "from-call"})
    assert (result.returncode, result.stdout, result.stderr) == (3, "from-spec from-call\n", "oops\n")


def test_large_output_and_file_roundtrip(vm, tmp_path):
    big = vm.exec(["sh", "-c", "head -c 3500000 /dev/zero | tr '\\0' x"], timeout=120)
    assert big.ok and len(big.stdout) == 3_500_000 and set(big.stdout) == {"x"}
    payload = os.urandom(3 * 1024 * 1024 + 17)
    (tmp_path / "in.bin").write_bytes(payload)
    vm.put_file(tmp_path / "in.bin", "/tmp/in.bin")
    digest = vm.exec(["sha256sum", "/tmp/in.bin"], timeout=60).stdout.split()[0]
    assert digest == hashlib.sha256(payload).hexdigest()
    vm.get_file("/tmp/in.bin", tmp_path / "out.bin")
    assert (tmp_path / "out.bin").read_bytes() == payload


def test_overlay_grows_with_writes(vm):
    before = vm.disk_usage_bytes()
    assert before is not None and before > 0
    assert vm.exec(["sh", "-c", "dd if=/dev/urandom of=/tmp/grow bs=1M count=32 conv=fsync 2>/dev/null"],
                   timeout=120).ok
    assert vm.disk_usage_bytes() >= before + 16 * 1024 * 1024


def test_bridge_address(vm):
    assert vm.address and vm.address.startswith("10.213.0.")
    addrs = vm.exec(["ip", "-4", "-o", "addr", "show"], timeout=60).stdout
    assert f"{vm.address}/24" in addrs
    assert vm.exec(["hostname"], timeout=60).stdout.strip() == "islvmtest"
    assert vm.exec(["busybox", "ping", "-c", "1", "-W", "3", "10.213.0.1"], timeout=60).ok


def test_bandwidth_shaped_both_ways(vm):
    assert "tbf" in vm.exec(["tc", "qdisc", "show"], timeout=60).stdout  # guest -> host
    tap = "isl" + vm.instance_id.removeprefix("vm-")
    host = subprocess.run(["tc", "qdisc", "show", "dev", tap], capture_output=True, text=True, timeout=30).stdout
    assert "tbf" in host and "200Mbit" in host  # host -> guest


def test_qemu_runs_as_libvirt_qemu_with_dynamic_ownership(vm, platform, image):
    """QEMU is the unprivileged libvirt-qemu (read from /proc), owns its overlay as libvirt labelled it,
    and never owns the shared image; env.json says so."""
    qemu = pwd.getpwnam("libvirt-qemu")
    pid = vm.host_pids()[0]
    status = dict(line.split(":", 1) for line in open(f"/proc/{pid}/status").read().splitlines())
    assert status["Uid"].split() == [str(qemu.pw_uid)] * 4 and status["Gid"].split() == [str(qemu.pw_gid)] * 4
    assert int(status["CapEff"], 16) == 0  # no capabilities either
    labels = [label for label, _enforcing in vm._domain.securityLabelList()]
    assert f"+{qemu.pw_uid}:+{qemu.pw_gid}" in labels  # libvirt's DAC label for this domain
    overlay = vm.overlay.stat()
    assert (overlay.st_uid, overlay.st_gid) == (qemu.pw_uid, qemu.pw_gid)
    assert os.getxattr(vm.overlay, "trusted.libvirt.security.dac") == b"+0:+0"  # the owner libvirt restores
    shared = image.ext4.stat()
    assert (shared.st_uid, shared.st_mode & 0o022) == (0, 0)  # root's, writable by nobody else
    env = platform.environment()
    assert env["qemu_process"]["user"] == "libvirt-qemu" and env["qemu_process"]["uid"] == qemu.pw_uid
    assert env["dynamic_ownership"] is True and env["security_driver"] == platform.confinement.mac_model
    if platform.confinement.mac.driver is None:  # this host: no AppArmor/SELinux, nothing weaker than libvirt
        assert env["host_mac"] == "none" and "confinement_warning" not in env
    assert vm.metadata()["qemu_user"] == "libvirt-qemu"
    print("qemu process:", env["qemu_process"], "libvirt labels:", labels)


def test_destroy_leaves_nothing(platform):
    from runtime.vm.instance import VM_STATE_ROOT

    instance = platform.create(InstanceSpec(cpus=1, memory=256 * 1024**2))
    qemu = pwd.getpwnam("libvirt-qemu")
    assert instance.overlay.stat().st_uid == qemu.pw_uid
    assert instance.shutdown(timeout=30)  # graceful: guest PID 1 powers off
    deadline = time.monotonic() + 10
    while instance.overlay.stat().st_uid != 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    restored = instance.overlay.stat()
    assert (restored.st_uid, restored.st_gid) == (0, 0)  # dynamic ownership gave the overlay back
    instance.destroy()
    instance.destroy()  # idempotent
    names = subprocess.run(["virsh", "-c", "qemu:///system", "list", "--all", "--name"], capture_output=True,
                           text=True, timeout=30).stdout.split()
    assert instance.name not in names
    assert not (VM_STATE_ROOT / instance.instance_id).exists()


def test_limits_reach_libvirt(platform):
    """cpuset pinning, CPU quota and shares, and disk iotune are applied to the running domain."""
    spec = InstanceSpec(cpus=0.5, cpuset="0", cpu_shares=512, memory=384 * 1024**2,
                        io_read_bps=20_000_000, io_write_iops=200, pids_max=50)
    with platform.create(spec) as instance:
        domain = instance._domain
        assert domain.vcpuPinInfo(0) == [(True,) + (False,) * (os.cpu_count() - 1)]
        sched = domain.schedulerParameters()
        assert (sched["cpu_shares"], sched["vcpu_period"], sched["vcpu_quota"]) == (512, 100000, 50000)
        iotune = domain.blockIoTune("vda", 0)
        assert (iotune["read_bytes_sec"], iotune["write_iops_sec"]) == (20_000_000, 200)
        assert instance.exec(["nproc"], timeout=60).stdout.strip() == "1"
        assert instance.ignored_limits() == {"pids_max": 50}
        assert instance.metadata()["limits_ignored"] == ["pids_max"]


def test_file_transfer_resolves_symlinks_in_the_guest(vm, tmp_path):
    """A guest's symlinks to host paths resolve inside the guest (the agent opens them there)."""
    import secrets
    from pathlib import Path

    from runtime.errors import InstanceError

    tag = secrets.token_hex(4)
    marker, absent = Path(f"/etc/isolab-marker-{tag}"), Path(f"/etc/isolab-absent-{tag}")
    marker.write_text("host secret\n")
    try:
        assert vm.exec(["sh", "-c", f"ln -s {marker} /tmp/x && ln -s {absent} /tmp/dangling"], timeout=60).ok
        with pytest.raises(InstanceError, match="guest:/tmp/x"):
            vm.get_file("/tmp/x", tmp_path / "out")  # no such file in the guest
        (tmp_path / "in.txt").write_text("payload\n")
        try:  # through the dangling link: into the guest's own /etc, or refused by the agent
            vm.put_file(tmp_path / "in.txt", "/tmp/dangling")
        except InstanceError as exc:
            print(f"put_file through a dangling guest symlink: {exc}")
            assert "guest:/tmp/dangling" in str(exc)
        else:
            assert vm.exec(["cat", str(absent)], timeout=60).stdout == "payload\n"
        assert marker.read_text() == "host secret\n" and not absent.exists()
    finally:
        marker.unlink(missing_ok=True)
        absent.unlink(missing_ok=True)


def test_boots_beside_a_domain_holding_the_shared_kernel_as_root(platform, image, tmp_path):
    """libvirt refuses to relabel a kernel a running domain holds under another owner; the instance then
    boots from private copies (the holder: a paused QEMU started as root on the shared kernel). Giving
    the shared kernel back is not asserted here: other runs' domains on this host may hold it too (the
    overlay's give-back is, in test_destroy_leaves_nothing)."""
    import libvirt

    from runtime.vm.domain_xml import DomainConfig, build_domain_xml

    holder_dir = tmp_path / "holder"
    holder_dir.mkdir()
    overlay = holder_dir / "overlay.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", "-F", "raw", "-b", str(image.ext4), str(overlay)],
                   check=True, timeout=60)
    config = DomainConfig(name="isolab-vm-holder00", accel=platform.accel.accel, kernel=image.vmlinux,
                          initramfs=image.initramfs, overlay=overlay, serial_log=holder_dir / "serial.log",
                          host_cpus=1, backing=image.ext4, qemu_label="+0:+0", relabel=True)
    try:
        holder = platform.conn.createXML(build_domain_xml(InstanceSpec(cpus=1, memory=128 * 1024**2), config),
                                         libvirt.VIR_DOMAIN_START_PAUSED)
    except libvirt.libvirtError as exc:
        if "already in use" in (exc.get_error_message() or ""):  # a domain of another run holds it right now
            pytest.skip(f"cannot make the conflict: {exc.get_error_message()}")
        raise
    try:
        assert os.getxattr(image.vmlinux, "trusted.libvirt.security.dac") == b"+0:+0"  # held as root
        with platform.create(InstanceSpec(cpus=1, memory=256 * 1024**2)) as instance:
            assert instance.kernel.parent == instance.dir and instance.kernel.stat().st_uid != 0
            assert "private copies" in instance.metadata()["boot_files"]
            assert instance.exec(["true"], timeout=60).ok
    finally:
        holder.destroy()


def test_paused_domain_uses_no_cpu_and_resumes(vm):
    """Interleaved runs pause idle VMs (virDomainSuspend): QEMU's CPU time must not advance meanwhile."""
    from runtime.linux.process import tree_cpu_seconds

    busy = vm.exec(["sh", "-c", "(while :; do :; done) >/dev/null 2>&1 & echo $!"], timeout=60)
    assert busy.ok
    pids = vm.host_pids()
    try:
        assert vm.quiesce() == "domain paused"
        before = tree_cpu_seconds(pids)
        time.sleep(2.0)
        paused = tree_cpu_seconds(pids) - before
        vm.wake()
        before = tree_cpu_seconds(pids)
        time.sleep(2.0)
        running = tree_cpu_seconds(pids) - before
    finally:
        vm.wake()
        vm.exec(["kill", busy.stdout.strip()], timeout=60)
    assert paused < 0.05, f"a paused QEMU used {paused:.3f} s of CPU in 2 s"
    assert running > 0.5, f"the resumed guest's busy loop used only {running:.3f} s of CPU in 2 s"
    assert vm.exec(["true"], timeout=60).ok
