"""How QEMU is confined here: the user and group libvirt runs it as, the MAC driver, read back for real.

Production libvirt (Debian's build) runs QEMU as the unprivileged `libvirt-qemu` user and group with
no capabilities, chowns each domain's images to that user while it runs (dynamic ownership) and
restores their owner on shutdown, and confines each QEMU with the host's MAC driver (AppArmor on
Debian and Ubuntu, SELinux's svirt on Fedora/RHEL) when the host runs one. bench.hostsetup writes that
configuration into qemu.conf and leaves the security driver to libvirt's own probe.

This module answers, for one host:
  - `host_mac()`: which MAC the kernel runs (AppArmor, SELinux or none), as a fact and a sentence;
  - `from_security_model(...)`: the MAC model libvirt uses (virConnectGetSecurityModel, cheap);
    `parse_capabilities(xml)`: the fuller view of `virsh capabilities` (its security models and the
    DAC user:group qemu.conf gives), for tools; slow on some hosts, where libvirt re-probes QEMU;
  - `plan(...)`: whether QEMU can run as libvirt-qemu here (the user exists, the image files and the
    instance directory are reachable by it) or must fall back to root for this host, with a one-line
    reason. Each domain carries the result as its own DAC <seclabel> (relabel='yes': libvirt's dynamic
    ownership), so a VM runs as planned whatever another program last wrote into qemu.conf;
  - `read_qemu_process(pid)`: who a running QEMU really is (/proc/<pid>/status Uid/Gid/CapEff and its
    LSM label), which is what env.json records, rather than trusting the configuration.
"""

from __future__ import annotations

import grp
import os
import pwd
import stat
import xml.etree.ElementTree as ET
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

QEMU_USER = "libvirt-qemu"  # the user Debian's libvirt runs QEMU as (qemu.conf's default there)


@dataclass(frozen=True)
class MacState:
    driver: str | None  # "apparmor", "selinux" or None
    detail: str  # one sentence: what was read where


def host_mac(sys_root: Path = Path("/sys")) -> MacState:
    """The MAC the host kernel enforces, read from sysfs (no tool needed)."""
    try:
        apparmor = (sys_root / "module/apparmor/parameters/enabled").read_text().strip()
    except OSError:
        apparmor = ""
    if apparmor == "Y":
        return MacState("apparmor", "AppArmor is enabled (/sys/module/apparmor/parameters/enabled = Y)")
    try:
        enforce = (sys_root / "fs/selinux/enforce").read_text().strip()
    except OSError:
        enforce = ""
    if enforce:
        mode = "enforcing" if enforce == "1" else "permissive"
        return MacState("selinux", f"SELinux is active, {mode} (/sys/fs/selinux/enforce = {enforce})")
    return MacState(None, "the host kernel enforces no MAC: neither AppArmor "
                          "(/sys/module/apparmor/parameters/enabled) nor SELinux (/sys/fs/selinux) is active")


@dataclass(frozen=True)
class LibvirtSecurity:
    models: tuple[str, ...]  # e.g. ("none", "dac") or ("apparmor", "dac")
    dac_label: str | None  # "+999:+995": the user:group libvirt starts QEMU as (qemu.conf user/group)

    @property
    def mac_model(self) -> str:
        """The MAC model libvirt uses for QEMU ("none" when it uses none)."""
        return next((m for m in self.models if m not in ("dac", "none")), "none")


def from_security_model(model: list[str]) -> LibvirtSecurity:
    """virConnectGetSecurityModel's [model, doi] (the primary MAC model: "none", "apparmor", "selinux")."""
    name = (model[0] if model else "") or "none"
    return LibvirtSecurity((name, "dac"), None)


def parse_capabilities(xml: str, domain_type: str = "qemu") -> LibvirtSecurity:
    """The <host><secmodel> entries of `virsh capabilities`; the DAC baselabel for `domain_type`."""
    host = ET.fromstring(xml).find("host")
    models: list[str] = []
    label = None
    for secmodel in host.findall("secmodel") if host is not None else ():
        model = secmodel.findtext("model") or ""
        models.append(model)
        if model == "dac":
            for base in secmodel.findall("baselabel"):
                if base.get("type") == domain_type or label is None:
                    label = (base.text or "").strip() or None
    return LibvirtSecurity(tuple(models), label)


def label_ids(label: str) -> tuple[int, int]:
    """'+999:+995' -> (999, 995)."""
    user, _, group = label.partition(":")
    return int(user.lstrip("+")), int(group.lstrip("+"))


def _user_name(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def _group_name(gid: int) -> str:
    try:
        return grp.getgrgid(gid).gr_name
    except KeyError:
        return str(gid)


def _may(st: os.stat_result, uid: int, gids: set[int], bit: int) -> bool:
    """Whether uid (with groups gids) has permission `bit` (4 read, 1 search) by the mode bits."""
    if uid == 0:
        return True
    if st.st_uid == uid:
        return bool(st.st_mode & (bit << 6))
    if st.st_gid in gids:
        return bool(st.st_mode & (bit << 3))
    return bool(st.st_mode & bit)


def unreachable(paths: Iterable[Path], uid: int, gid: int) -> str | None:
    """Why user uid:gid cannot reach one of `paths` (every parent searchable, the file readable), or None.

    Files libvirt chowns (dynamic ownership) still need their parents searchable; files it does not
    (the shared backing image) need read permission too, so every file is checked for read."""
    gids = {gid, *os.getgrouplist(_user_name(uid), gid)}
    for path in paths:
        path = Path(path)
        for parent in reversed(path.parents):
            try:
                st = parent.stat()
            except OSError as exc:
                return f"{parent}: {exc.strerror}"
            if not _may(st, uid, gids, 1):
                return (f"{parent} (mode {stat.filemode(st.st_mode)}, owner {_user_name(st.st_uid)}) "
                        f"is not searchable by {_user_name(uid)}")
        try:
            st = path.stat()
        except OSError as exc:
            return f"{path}: {exc.strerror}"
        if path.is_file() and not _may(st, uid, gids, 4):
            return (f"{path} (mode {stat.filemode(st.st_mode)}, owner {_user_name(st.st_uid)}) "
                    f"is not readable by {_user_name(uid)}")
    return None


def reclaim_shared_image(path: Path) -> bool:
    """Give the shared image back to root, read-only for others, if a domain that labelled its backing
    chain left it owned by QEMU's user (libvirt never restores backing images; isolab before its
    <backingStore relabel='no'> did this). True if it had to."""
    st = path.stat()
    if st.st_uid == 0 and st.st_gid == 0 and not st.st_mode & 0o022:
        return False
    os.chown(path, 0, 0)
    os.chmod(path, stat.S_IMODE(st.st_mode) & ~0o022)
    return True


@dataclass(frozen=True)
class Plan:
    """How this host's VMs run their QEMU: the DAC label every domain carries, and why."""

    qemu_label: str  # "+uid:+gid" of QEMU, in each domain's <seclabel model='dac'>
    relabel: bool  # True: libvirt chowns the domain's images to it and restores them (dynamic ownership)
    expected_user: str
    expected_group: str
    mac: MacState
    mac_model: str  # libvirt's MAC model for QEMU ("none", "apparmor", "selinux")
    libvirt_default_label: str | None  # what qemu.conf alone would give a domain without a label
    warning: str | None  # one line when this is weaker than production libvirt on this host


def cannot_open(device: Path, uid: int, gid: int) -> str | None:
    """Why uid:gid (with its groups) cannot open `device` read-write (e.g. /dev/kvm), or None."""
    try:
        st = device.stat()
    except OSError as exc:
        return f"{device}: {exc.strerror}"
    gids = {gid, *os.getgrouplist(_user_name(uid), gid)}
    if _may(st, uid, gids, 4) and _may(st, uid, gids, 2):
        return None
    return (f"{device} (mode {stat.filemode(st.st_mode)}, {_user_name(st.st_uid)}:{_group_name(st.st_gid)}) "
            f"cannot be opened by {_user_name(uid)}")


def plan(security: LibvirtSecurity, mac: MacState, paths: Iterable[Path], user: str = QEMU_USER,
         devices: Iterable[Path] = ()) -> Plan:
    """QEMU as `user` with dynamic ownership if that user exists, can reach `paths` and open `devices`
    (/dev/kvm under KVM); else root, saying why."""
    warnings = []
    try:
        account = pwd.getpwnam(user)
        uid, gid = account.pw_uid, account.pw_gid
        why = unreachable(paths, uid, gid) or next(
            (reason for d in devices if (reason := cannot_open(Path(d), uid, gid))), None)
    except KeyError:
        uid = gid = 0
        why = f"the host has no {user} user (run 'python -m bench.hostsetup')"
    if why is not None:
        uid = gid = 0
        warnings.append(f"QEMU runs as root because {why}")
    if mac.driver is not None and security.mac_model == "none":
        warnings.append(f"{mac.detail}, but libvirt does not use it (libvirt's security models: "
                        f"{', '.join(security.models) or 'none'}; its {mac.driver} profiles or policy are "
                        f"not installed), so QEMU is not MAC-confined")
    return Plan(f"+{uid}:+{gid}", uid != 0, _user_name(uid), _group_name(gid), mac, security.mac_model,
                security.dac_label, "; ".join(warnings) or None)


def read_qemu_process(pid: int, proc: Path = Path("/proc")) -> dict[str, object]:
    """Who a running QEMU process is: real/effective uid and gid (names too), effective capabilities,
    its LSM label ("none" when no LSM provides one), its seccomp mode (2: a filter, QEMU's -sandbox),
    no_new_privs, and whether libvirt gave it a mount namespace (its private /dev) of its own."""
    fields: dict[str, list[str]] = {}
    for line in (proc / str(pid) / "status").read_text().splitlines():
        key, _, value = line.partition(":")
        fields[key] = value.split()
    uid, euid = int(fields["Uid"][0]), int(fields["Uid"][1])
    gid, egid = int(fields["Gid"][0]), int(fields["Gid"][1])
    try:
        label = (proc / str(pid) / "attr/current").read_text().strip("\x00\n ") or "none"
    except OSError:  # EINVAL: no LSM gives processes a label on this kernel
        label = "none"
    try:
        own_mounts = os.readlink(proc / str(pid) / "ns/mnt") != os.readlink(proc / "self/ns/mnt")
    except OSError:
        own_mounts = None
    return {"pid": pid, "uid": uid, "euid": euid, "gid": gid, "egid": egid, "user": _user_name(euid),
            "group": _group_name(egid), "capabilities_effective": fields.get("CapEff", ["?"])[0],
            "security_label": label, "seccomp_mode": int(fields.get("Seccomp", ["0"])[0]),
            "no_new_privs": fields.get("NoNewPrivs", ["0"])[0] == "1", "own_mount_namespace": own_mounts}
