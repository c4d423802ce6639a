"""The VM sweep: libvirt domains `isolab-vm-…`, VM state dirs (qcow2 overlays, volumes, serial logs) and
libvirt's per-domain logs of VMs whose owning process is gone (runtime.state); live runs' VMs stay.
Their taps and address reservations go with the network sweep."""

from __future__ import annotations

import shutil
from pathlib import Path

from runtime import state
from runtime.errors import PlatformUnavailable
from runtime.naming import VM_STATE_ROOT
from runtime.vm import libvirt_conn
from runtime.vm.instance import FAILED_LOG_ROOT, LIBVIRT_QEMU_LOGS


def _state_of(domain_name: str) -> Path:
    return VM_STATE_ROOT / f"vm-{domain_name.removeprefix(libvirt_conn.VM_DOMAIN_PREFIX)}"


def sweep_vms(conn: object | None = None, uri: str = libvirt_conn.DEFAULT_URI, everything: bool = False,
              failed_logs: Path = FAILED_LOG_ROOT) -> list[str]:
    """Remove dead runs' domains, VM dirs and logs; a libvirtd that cannot be reached is noted, not fatal."""
    removed: list[str] = []

    def dead(path: Path) -> bool:
        return everything or not state.is_live(path)

    try:
        connection = conn if conn is not None else libvirt_conn.open_connection(uri)
    except PlatformUnavailable as exc:  # (no libvirtd: fine on a host that never ran a VM)
        if conn is not None or state.instances(VM_STATE_ROOT, "vm"):
            removed.append(f"(domains not checked: {exc})")
    else:
        for dom in libvirt_conn.isolab_vm_domains(connection):  # type: ignore[arg-type]
            if dead(_state_of(dom.name())):
                libvirt_conn.remove_domain(dom)
                removed.append(f"domain {dom.name()}")
    for path in state.instances(VM_STATE_ROOT, "vm"):
        if dead(path):
            shutil.rmtree(path, ignore_errors=True)
            removed.append(str(path))
    for log in LIBVIRT_QEMU_LOGS.glob(f"{libvirt_conn.VM_DOMAIN_PREFIX}*.log"):
        if not _state_of(log.stem).exists():  # its instance is gone
            log.unlink(missing_ok=True)
            removed.append(str(log))
    for log in failed_logs.glob("vm-*-serial.log") if failed_logs.is_dir() else ():
        log.unlink(missing_ok=True)
        removed.append(str(log))
    state.remove_empty_dirs(VM_STATE_ROOT)
    return removed
