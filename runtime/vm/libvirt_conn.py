"""The connection to libvirtd (qemu:///system by default), with errors that say what to do.

libvirt-python prints every error to stderr by default; we silence that and raise our own one-line
errors instead. Also: versions for env.json, domain lookup by name, and isolab domain listing.
"""

from __future__ import annotations

import libvirt

from runtime.errors import PlatformUnavailable
from runtime.naming import LIBVIRT_PREFIX

DEFAULT_URI = "qemu:///system"
VM_DOMAIN_PREFIX = f"{LIBVIRT_PREFIX}vm-"


def _quiet(_ctx: object, _err: object) -> None:
    """libvirt error callback that prints nothing (errors become exceptions anyway)."""


libvirt.registerErrorHandler(_quiet, None)


def open_connection(uri: str = DEFAULT_URI) -> libvirt.virConnect:
    """Open a read-write connection or raise PlatformUnavailable naming the URI and the cause."""
    try:
        conn = libvirt.open(uri)
    except libvirt.libvirtError as exc:
        raise PlatformUnavailable(
            f"vm: cannot connect to libvirtd at {uri} ({exc.get_error_message()}); "
            "start it with 'python -m bench.hostsetup'") from exc
    if conn is None:
        raise PlatformUnavailable(f"vm: cannot connect to libvirtd at {uri}")
    return conn


def _version(number: int) -> str:
    return f"{number // 1_000_000}.{number // 1000 % 1000}.{number % 1000}"


def versions(conn: libvirt.virConnect) -> dict[str, str]:
    return {
        "libvirt_version": _version(conn.getLibVersion()),
        "qemu_version": _version(conn.getVersion()),
        "libvirt_python_version": _version(libvirt.getVersion()),
    }


def lookup(conn: libvirt.virConnect, name: str) -> libvirt.virDomain | None:
    try:
        return conn.lookupByName(name)
    except libvirt.libvirtError as exc:
        if exc.get_error_code() == libvirt.VIR_ERR_NO_DOMAIN:
            return None
        raise


def isolab_vm_domains(conn: libvirt.virConnect) -> list[libvirt.virDomain]:
    """Every domain (running or defined) whose name carries the VM platform's prefix."""
    return [dom for dom in conn.listAllDomains(0) if dom.name().startswith(VM_DOMAIN_PREFIX)]


def remove_domain(dom: libvirt.virDomain) -> None:
    """Force off and undefine; tolerate a domain that vanished meanwhile."""
    try:
        if dom.isActive():
            dom.destroy()
    except libvirt.libvirtError as exc:
        if exc.get_error_code() not in (libvirt.VIR_ERR_NO_DOMAIN, libvirt.VIR_ERR_OPERATION_INVALID):
            raise
    try:
        dom.undefine()
    except libvirt.libvirtError as exc:
        if exc.get_error_code() not in (libvirt.VIR_ERR_NO_DOMAIN, libvirt.VIR_ERR_OPERATION_INVALID):
            raise
