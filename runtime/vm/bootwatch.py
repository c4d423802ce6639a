"""Watch a guest's serial log for boot markers, with a deadline and a liveness check.

Markers (printed by the image's initramfs and PID-1 script): ISOLAB-INITRAMFS (the kernel ran its
first userspace program), ISOLAB-INIT (the root filesystem's init runs), ISOLAB-READY (qemu-ga
started). Shared by the libvirt instance and the raw-QEMU side of the boot benchmark.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from runtime.errors import InstanceError

MARKER_KERNEL = "ISOLAB-INITRAMFS"
MARKER_INIT = "ISOLAB-INIT "
MARKER_READY = "ISOLAB-READY"
POLL_S = 0.005


class BootFailed(InstanceError):
    """The guest died or did not reach a boot marker in time."""


class SerialWatch:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.text = ""
        self._offset = 0

    def _read(self) -> None:
        try:
            with open(self.path, "rb") as log:
                log.seek(self._offset)
                data = log.read()
        except FileNotFoundError:
            return
        self._offset += len(data)
        self.text += data.decode(errors="replace")

    def tail(self, lines: int = 8) -> str:
        self._read()
        kept = [line.strip() for line in self.text.splitlines() if line.strip()][-lines:]
        return " | ".join(kept) if kept else "(serial log empty)"

    def wait_for(self, marker: str, deadline: float, alive: Callable[[], str | None], where: str) -> float:
        """Block until `marker` appears; return time.perf_counter() at detection.

        `alive()` returns None while the guest runs, else a description of why it stopped.
        """
        checks = 0
        while True:
            self._read()
            if marker in self.text:
                return time.perf_counter()
            checks += 1
            if checks % 10 == 0 and (dead := alive()) is not None:
                raise BootFailed(f"{where}: guest stopped before {marker.strip()} ({dead}); "
                                 f"serial log {self.path}: {self.tail()}")
            if time.monotonic() >= deadline:
                raise BootFailed(f"{where}: no {marker.strip()} on the serial console before the boot "
                                 f"timeout; serial log {self.path}: {self.tail()}")
            time.sleep(POLL_S)
