"""How QEMU is confined: libvirt's view parsed, the host's MAC read, the fallback decided, /proc read back."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest

from bench.hostsetup import qemu_conf_text
from runtime.vm import confinement

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
NO_MAC = confinement.MacState(None, "no MAC")


@pytest.fixture
def open_dir():
    """A directory every user can search (pytest's tmp_path sits under a 0700 directory)."""
    path = Path(tempfile.mkdtemp(prefix="isolab-confinement-", dir="/var/tmp"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path)


def test_capabilities_name_the_dac_user():
    security = confinement.parse_capabilities((FIXTURES / "libvirt-capabilities-libvirt-qemu-user.xml").read_text())
    assert security.models == ("none", "dac") and security.dac_label == "+999:+995"
    assert security.mac_model == "none" and confinement.label_ids("+999:+995") == (999, 995)
    apparmor = confinement.parse_capabilities(  # handmade: the secmodel block of an AppArmor host
        "<capabilities><host><secmodel><model>apparmor</model><doi>0</doi></secmodel><secmodel><model>dac"
        "</model><doi>0</doi><baselabel type='kvm'>+64055:+994</baselabel></secmodel></host></capabilities>")
    assert apparmor.mac_model == "apparmor" and apparmor.dac_label == "+64055:+994"
    assert confinement.from_security_model(["none", "0"]).mac_model == "none"
    assert confinement.from_security_model(["apparmor", "0"]).mac_model == "apparmor"
    assert confinement.from_security_model([]).mac_model == "none"


def test_host_mac_from_sysfs(tmp_path):
    assert confinement.host_mac(tmp_path).driver is None
    (tmp_path / "fs/selinux").mkdir(parents=True)
    (tmp_path / "fs/selinux/enforce").write_text("0")
    assert "permissive" in confinement.host_mac(tmp_path).detail
    (tmp_path / "module/apparmor/parameters").mkdir(parents=True)
    (tmp_path / "module/apparmor/parameters/enabled").write_text("Y\n")
    assert confinement.host_mac(tmp_path).driver == "apparmor"


def test_plan_runs_unprivileged_when_reachable(open_dir):
    image = open_dir / "img" / "vmlinux"
    image.parent.mkdir()
    image.write_bytes(b"k")
    image.chmod(0o644)
    security = confinement.LibvirtSecurity(("none", "dac"), "+0:+0")
    plan = confinement.plan(security, NO_MAC, [image], user="nobody")
    assert (plan.qemu_label, plan.relabel, plan.warning) == ("+65534:+65534", True, None)
    assert plan.expected_user == "nobody" and plan.libvirt_default_label == "+0:+0"


def test_plan_falls_back_to_root_with_one_line_reason(open_dir):
    locked = open_dir / "locked"
    locked.mkdir(mode=0o700)
    (locked / "vmlinux").write_bytes(b"k")
    security = confinement.LibvirtSecurity(("none", "dac"), "+65534:+65534")
    plan = confinement.plan(security, NO_MAC, [locked / "vmlinux"], user="nobody")
    assert (plan.qemu_label, plan.relabel, plan.expected_user) == ("+0:+0", False, "root")
    assert plan.warning and str(locked) in plan.warning and "not searchable by nobody" in plan.warning
    assert "\n" not in plan.warning
    unreadable = open_dir / "secret"
    unreadable.write_bytes(b"x")
    unreadable.chmod(0o600)
    assert "not readable by nobody" in confinement.unreachable([unreadable], 65534, 65534)
    missing = confinement.plan(security, NO_MAC, [], user="isolab-no-such-user")
    assert missing.qemu_label == "+0:+0" and "no isolab-no-such-user user" in missing.warning


def test_plan_warns_when_libvirt_ignores_the_hosts_mac():
    security = confinement.LibvirtSecurity(("none", "dac"), "+65534:+65534")
    assert confinement.plan(security, NO_MAC, [], user="nobody").warning is None
    apparmor = confinement.MacState("apparmor", "AppArmor is enabled")
    assert "not MAC-confined" in confinement.plan(security, apparmor, [], user="nobody").warning
    used = confinement.plan(confinement.LibvirtSecurity(("apparmor", "dac"), None), apparmor, [], user="nobody")
    assert used.warning is None and used.mac_model == "apparmor"


def test_read_qemu_process_from_proc():
    me = confinement.read_qemu_process(os.getpid())
    assert (me["uid"], me["gid"]) == (os.getuid(), os.getgid()) and me["user"]
    assert isinstance(me["security_label"], str) and me["capabilities_effective"]
    assert me["seccomp_mode"] in (0, 1, 2) and me["own_mount_namespace"] is False


def test_qemu_conf_runs_qemu_unprivileged_and_leaves_the_mac_to_libvirt():
    old = 'user = "root"\n\ngroup = "root"\n\nsecurity_driver = "none"\n'
    new = qemu_conf_text(old)
    lines = new.splitlines()
    assert 'user = "libvirt-qemu"' in lines and 'group = "libvirt-qemu"' in lines
    assert "dynamic_ownership = 1" in lines and "remember_owner = 1" in lines
    assert 'security_driver = "none"' not in lines and qemu_conf_text(new) == new
    stock = '#user = "root"\n#security_driver = "selinux"\n'
    assert '#security_driver = "selinux"' in qemu_conf_text(stock).splitlines()


def test_shared_image_given_back_to_root(open_dir):
    if os.geteuid() != 0:
        pytest.skip("chown to another user needs root")
    image = open_dir / "rootfs.ext4"
    image.write_bytes(b"ext4")
    image.chmod(0o666)
    os.chown(image, 65534, 65534)
    assert confinement.reclaim_shared_image(image)
    st = image.stat()
    assert (st.st_uid, st.st_gid, st.st_mode & 0o777) == (0, 0, 0o644)
    assert not confinement.reclaim_shared_image(image)


def test_plan_needs_dev_kvm_under_kvm(open_dir):
    device = open_dir / "kvm"  # a stand-in with /dev/kvm's modes
    device.write_bytes(b"")
    device.chmod(0o600)
    security = confinement.LibvirtSecurity(("none", "dac"), None)
    plan = confinement.plan(security, NO_MAC, [], user="nobody", devices=[device])
    assert plan.qemu_label == "+0:+0" and "cannot be opened by nobody" in plan.warning
    device.chmod(0o666)
    assert confinement.plan(security, NO_MAC, [], user="nobody", devices=[device]).warning is None
