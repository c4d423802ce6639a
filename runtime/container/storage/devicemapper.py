"""The `devicemapper` storage driver: thin-provisioned block snapshots (dm-thin), as Docker's
devicemapper driver made them. Only where the kernel has device-mapper with the thin-pool target;
elsewhere it says why in one line (and the platform variant is reported as unavailable with it).
This host class has no device-mapper, so only the detection is implemented."""

from __future__ import annotations

import subprocess
from collections.abc import Sequence
from pathlib import Path

from runtime.container.storage.base import InstanceRoot, StorageDriver
from runtime.errors import PlatformUnavailable


def dm_thin_missing() -> str | None:
    """Why this kernel cannot do dm-thin (None when it can): device-mapper in /proc/misc
    (/sys/class/misc/device-mapper), thin-pool in /proc/modules or loadable with modprobe."""
    misc = Path("/proc/misc").read_text() if Path("/proc/misc").exists() else ""
    has_dm = any(line.split()[-1:] == ["device-mapper"] for line in misc.splitlines()) or \
        Path("/sys/class/misc/device-mapper").exists()
    modules = Path("/proc/modules").read_text() if Path("/proc/modules").exists() else ""
    has_thin = any(line.split()[:1] == ["dm_thin_pool"] for line in modules.splitlines())
    if has_dm and has_thin:
        return None
    try:
        proc = subprocess.run(["modprobe", "dm-thin-pool"], capture_output=True, text=True, timeout=30)
        if proc.returncode == 0:
            return None
        probe = (proc.stderr.strip().splitlines() or [f"exit status {proc.returncode}"])[-1]
    except (OSError, subprocess.TimeoutExpired) as exc:
        probe = str(exc)
    what = "no device-mapper (not in /proc/misc)" if not has_dm else "no dm-thin target (dm_thin_pool not loaded)"
    return f"the kernel has {what} and modprobe dm-thin-pool failed: {probe}"


class DevicemapperDriver(StorageDriver):
    name = "devicemapper"
    mechanism = "dm-thin snapshots"

    def unavailable(self) -> str | None:
        missing = dm_thin_missing()
        if missing is None:
            return "dm-thin is present, but isolab's devicemapper driver is not implemented beyond detection"
        return missing

    def _refuse(self) -> PlatformUnavailable:
        return PlatformUnavailable(f"storage driver {self.name}: {self.unavailable()}")

    def layout(self, instance_id: str, layers: Sequence[Path], layer_dir: Path) -> InstanceRoot:
        return InstanceRoot(self.name, instance_id, tuple(str(p) for p in layers), upper=str(layer_dir / "rootfs"))

    def prepare(self, root: InstanceRoot) -> None:
        raise self._refuse()

    def mount(self, root: InstanceRoot, target: Path, volatile: bool = False) -> None:
        raise self._refuse()

    def remove(self, root: InstanceRoot) -> None:
        return None

    def disk_usage_bytes(self, root: InstanceRoot) -> int:
        return 0
