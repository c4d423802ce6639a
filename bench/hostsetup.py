"""Prepare the host: Debian packages, and a libvirt daemon that runs without systemd.

Standard library only, so that the noxfile can call it before any virtualenv exists (libvirt-python
compiles against libvirt-dev, which this installs). Idempotent and quiet when all is in place.

The packages are this module's base list (build tools, workload tools, libvirt and QEMU, whose daemon
this module starts) plus what each platform package declares in its own `runtime/<pkg>/host.toml`, so
that adding a platform never means editing this file. The format of a `host.toml`:

    # Debian packages the <pkg> platform needs on the host (read by bench/hostsetup.py, stdlib tomllib).
    [packages]
    # Debian package = "an absolute path that exists once the package is installed"
    util-linux = "/usr/bin/unshare"

Each `[packages]` value must be an absolute path (the proof checked before apt-get is asked anything).
A package named by several files is installed once. An optional `[preseed]` table maps an absolute
path to the text written there before apt-get installs anything, only where no such file exists yet
(dpkg then keeps it as the admin's version of a package conffile). Daemons and
configuration a platform needs are its own business (e.g. started by the platform on first use).
"""

from __future__ import annotations

import grp
import os
import pwd
import re
import shutil
import subprocess
import time
import tomllib
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
#: Where platform packages declare their Debian packages (see the module docstring for the format).
HOST_FILES = "runtime/*/host.toml"

# Debian package -> a file that proves it is installed (checked before asking apt anything): the base
# list; platform packages add theirs through runtime/<pkg>/host.toml (required_packages()).
PACKAGES: dict[str, str] = {
    "qemu-system-x86": "/usr/bin/qemu-system-x86_64",
    "qemu-utils": "/usr/bin/qemu-img",
    "libvirt-daemon": "/usr/sbin/libvirtd",
    "libvirt-daemon-driver-qemu": "/usr/lib/x86_64-linux-gnu/libvirt/connection-driver/libvirt_driver_qemu.so",
    "libvirt-clients": "/usr/bin/virsh",
    "libvirt-dev": "/usr/include/libvirt/libvirt.h",
    "pkg-config": "/usr/bin/pkg-config",
    "gcc": "/usr/bin/gcc",
    "libc6-dev": "/usr/lib/x86_64-linux-gnu/libc.a",  # static libc: the container init (isolab-init.c)
    "python3-dev": "/usr/include/python3.11/Python.h",
    "debootstrap": "/usr/sbin/debootstrap",
    "e2fsprogs": "/sbin/mkfs.ext4",
    "kmod": "/sbin/modprobe",
    "iproute2": "/sbin/ip",
    "nftables": "/usr/sbin/nft",
    "fio": "/usr/bin/fio",
    "iperf3": "/usr/bin/iperf3",
    "stress-ng": "/usr/bin/stress-ng",
    "sysbench": "/usr/bin/sysbench",
    "sockperf": "/usr/bin/sockperf",
    "hyperfine": "/usr/bin/hyperfine",
    "libxml2-utils": "/usr/bin/xmllint",
    "xz-utils": "/usr/bin/xz",
    "chromium": "/usr/bin/chromium",  # the report's offline rendering test (headless, no network)
    # libseccomp's own Python bindings (for the system Python 3.11, which the virtualenv runs)
    "python3-seccomp": "/usr/lib/python3/dist-packages/seccomp.cpython-311-x86_64-linux-gnu.so",
}

QEMU_CONF = Path("/etc/libvirt/qemu.conf")
# QEMU as libvirt runs it in production (Debian's build defaults, written out so that a host whose
# qemu.conf says otherwise is brought back): the unprivileged libvirt-qemu user and group, libvirt
# chowning each domain's images to it while the domain runs and restoring the owner on shutdown
# (remember_owner keeps the original owner and a use count in trusted.libvirt.security.* xattrs).
QEMU_CONF_SETTINGS = {"user": '"libvirt-qemu"', "group": '"libvirt-qemu"', "dynamic_ownership": "1",
                      "remember_owner": "1"}
# Lines earlier isolab versions wrote that must go: security_driver unset lets libvirt probe the host's
# MAC (AppArmor or SELinux) as a stock install does; "none" switched it off.
QEMU_CONF_REMOVED = ('security_driver = "none"',)

Say = Callable[[str], None]


class SetupError(Exception):
    """One readable line saying what the host lacks."""


def platform_packages(root: Path = ROOT) -> dict[str, str]:
    """Debian package -> proof path, from every runtime/*/host.toml under root (sorted by path)."""
    found: dict[str, str] = {}
    for path in sorted(root.glob(HOST_FILES)):
        try:
            data = tomllib.loads(path.read_text())
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise SetupError(f"{path}: cannot read it as TOML: {exc}") from exc
        packages = data.get("packages", {})
        if not isinstance(packages, dict):
            raise SetupError(f"{path}: [packages] must be a table of package = \"proof path\"")
        for package, proof in packages.items():
            if not isinstance(proof, str) or not proof.startswith("/"):
                raise SetupError(f"{path}: package {package}: the proof must be an absolute path, not {proof!r}")
            found[package] = proof
    return found


def platform_preseeds(root: Path = ROOT) -> dict[str, str]:
    """Absolute path -> text, from the `[preseed]` tables of every runtime/*/host.toml under root."""
    found: dict[str, str] = {}
    for path in sorted(root.glob(HOST_FILES)):
        try:
            preseed = tomllib.loads(path.read_text()).get("preseed", {})
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise SetupError(f"{path}: cannot read it as TOML: {exc}") from exc
        if not isinstance(preseed, dict):
            raise SetupError(f"{path}: [preseed] must be a table of \"absolute path\" = \"text\"")
        for target, text in preseed.items():
            if not target.startswith("/") or not isinstance(text, str):
                raise SetupError(f"{path}: preseed {target!r}: needs an absolute path and a text")
            found[target] = text
    return found


def write_preseeds(say: Say, root: Path = ROOT) -> None:
    """Write each preseed file that does not exist yet (an existing one is the admin's: left alone)."""
    for target, text in platform_preseeds(root).items():
        path = Path(target)
        if path.exists():
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        say(f"wrote {path} before installing packages")


def required_packages(root: Path = ROOT) -> dict[str, str]:
    """The base list plus what the platform packages declare."""
    return {**PACKAGES, **platform_packages(root)}


def missing_packages() -> list[str]:
    return [pkg for pkg, proof in required_packages().items() if not Path(proof).exists()]


def install_packages(say: Say) -> None:
    missing = missing_packages()
    if not missing:
        return
    if os.geteuid() != 0:
        raise SetupError(f"isolab setup needs root to install: {' '.join(missing)}")
    if shutil.which("apt-get") is None:
        raise SetupError(f"isolab setup needs apt-get (Debian 12) to install: {' '.join(missing)}")
    say(f"installing Debian packages: {' '.join(missing)}")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    write_preseeds(say)
    _run(["apt-get", "update", "-q"], env)
    # confold: a preseeded conffile stays as written (noninteractive dpkg would otherwise have to ask)
    _run(["apt-get", "install", "-y", "-q", "--no-install-recommends", "-o", "Dpkg::Options::=--force-confdef",
          "-o", "Dpkg::Options::=--force-confold", *missing], env)
    still = missing_packages()
    if still:
        raise SetupError(f"apt-get finished but these are still missing: {' '.join(still)}")


def _run(argv: list[str], env: dict[str, str] | None = None) -> None:
    proc = subprocess.run(argv, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        tail = " | ".join(proc.stderr.strip().splitlines()[-3:])
        raise SetupError(f"{' '.join(argv[:3])} failed (exit {proc.returncode}): {tail}")


KVM_DEVICE = Path("/dev/kvm")


def share_kvm_device(say: Say) -> None:
    """/dev/kvm root:kvm 0660 with libvirt-qemu in group kvm, as Debian's udev rules and libvirt-daemon-system
    set it up (a host without udev, such as a container, leaves it root:root 0600).

    Besides letting QEMU as libvirt-qemu use KVM, this keeps libvirt's QEMU capability cache valid: when the
    cached probe says KVM works but libvirt-qemu cannot open /dev/kvm, libvirtd discards the cache and
    re-probes QEMU on every capability lookup (17-60 s each on a 2-core host, stalling defineXML)."""
    try:
        grp.getgrnam("kvm")
    except KeyError:
        _run(["groupadd", "--system", "kvm"])
    if "libvirt-qemu" not in grp.getgrnam("kvm").gr_mem:
        _run(["usermod", "-a", "-G", "kvm", "libvirt-qemu"])
    if KVM_DEVICE.exists():
        info = KVM_DEVICE.stat()
        kvm_gid = grp.getgrnam("kvm").gr_gid
        if info.st_gid != kvm_gid or info.st_mode & 0o777 != 0o660:
            say(f"{KVM_DEVICE}: group kvm, mode 0660 (as udev sets it on Debian)")
            os.chown(KVM_DEVICE, 0, kvm_gid)
            os.chmod(KVM_DEVICE, 0o660)


def configure_libvirt(say: Say) -> None:
    """Make libvirtd runnable without systemd: log dir, libvirt-qemu user/group, qemu.conf."""
    Path("/var/log/libvirt/qemu").mkdir(parents=True, exist_ok=True)
    Path("/var/lib/libvirt/images").mkdir(parents=True, exist_ok=True)
    try:
        grp.getgrnam("libvirt-qemu")
    except KeyError:
        _run(["groupadd", "--system", "libvirt-qemu"])
    try:
        pwd.getpwnam("libvirt-qemu")
    except KeyError:
        _run(["useradd", "--system", "--no-create-home", "-g", "libvirt-qemu", "libvirt-qemu"])
    share_kvm_device(say)
    text = QEMU_CONF.read_text() if QEMU_CONF.exists() else ""
    changed = qemu_conf_text(text)
    if changed != text:
        say(f"configuring {QEMU_CONF} (QEMU as libvirt-qemu with dynamic ownership, security driver "
            "probed by libvirt)")
        QEMU_CONF.parent.mkdir(parents=True, exist_ok=True)
        QEMU_CONF.write_text(changed)
        _restart_libvirtd_if_running(say)


def qemu_conf_text(text: str) -> str:
    """qemu.conf with isolab's settings applied (each replacing its first line, commented or not) and
    the lines of QEMU_CONF_REMOVED commented out; unchanged when it already says all that."""
    changed = text
    for key, value in QEMU_CONF_SETTINGS.items():
        line = f"{key} = {value}"
        pattern = re.compile(rf"^\s*#?\s*{key}\s*=.*$", re.M)
        if re.search(rf"^{re.escape(line)}$", changed, re.M):
            continue
        changed = pattern.sub(line, changed, count=1) if pattern.search(changed) else changed + f"\n{line}\n"
    for line in QEMU_CONF_REMOVED:
        changed = re.sub(rf"^{re.escape(line)}$", f"#{line}  # isolab: left to libvirt's probe", changed,
                         flags=re.M)
    return changed


def _pids_of(name: str) -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if (entry / "comm").read_text().strip() == name:
                    pids.append(int(entry.name))
            except OSError:
                continue
    return pids


def _restart_libvirtd_if_running(say: Say) -> None:
    for pid in _pids_of("libvirtd"):
        say("restarting libvirtd to apply qemu.conf")
        os.kill(pid, 15)
        for _ in range(50):
            if not Path(f"/proc/{pid}").exists():
                break
            time.sleep(0.1)


def libvirtd_answers() -> bool:
    proc = subprocess.run(["virsh", "-c", "qemu:///system", "uri"], capture_output=True, text=True, timeout=20)
    return proc.returncode == 0


def start_daemons(say: Say) -> None:
    if not _pids_of("virtlogd"):
        say("starting virtlogd")
        _run(["virtlogd", "-d"])
    if not _pids_of("libvirtd"):
        say("starting libvirtd")
        _run(["libvirtd", "-d"])
    for _ in range(100):
        if libvirtd_answers():
            return
        time.sleep(0.1)
    raise SetupError("libvirtd started but qemu:///system does not answer (see /var/log/libvirt)")


def ensure_host(say: Say = print) -> None:
    """Install and start everything isolab needs; silent when nothing is to be done."""
    install_packages(say)
    if os.geteuid() != 0:
        raise SetupError("isolab needs root: namespaces, cgroups, mounts and qemu:///system")
    configure_libvirt(say)
    start_daemons(say)


if __name__ == "__main__":
    import sys

    try:
        ensure_host(lambda msg: print(f"isolab setup: {msg}", flush=True))
    except SetupError as exc:
        print(f"isolab setup: error: {exc}", file=sys.stderr)
        sys.exit(1)
