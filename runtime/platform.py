"""The one small interface every platform speaks, and the registry of platforms.

A `Platform` turns an `InstanceSpec` into a running `Instance`. Scenarios only ever see
`Instance`: exec a command, move files, read its address and start phases, destroy it. No scenario
imports a platform and no platform imports a scenario.
"""

from __future__ import annotations

import importlib
import time
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

from runtime.errors import PlatformUnavailable, SpecError
from runtime.spec import ExecResult, InstanceSpec


@dataclass
class StartPhases:
    """Wall-clock seconds of each start phase, in order (e.g. namespaces, mounts, cgroup, exec)."""

    phases: dict[str, float] = field(default_factory=dict)
    _mark: float = field(default_factory=time.perf_counter, repr=False)

    def lap(self, name: str) -> None:
        """Close the phase `name` at now; the next phase starts here."""
        now = time.perf_counter()
        self.phases[name] = self.phases.get(name, 0.0) + (now - self._mark)
        self._mark = now

    @property
    def total(self) -> float:
        return sum(self.phases.values())


class Instance(ABC):
    """A running native chroot, container or VM. A context manager: leaving it destroys it."""

    platform: str
    instance_id: str
    spec: InstanceSpec
    start_phases: StartPhases
    #: Directory inside the instance where workloads write their files (on the instance's disk).
    scratch_dir: str = "/tmp"

    @abstractmethod
    def exec(self, argv: Sequence[str], timeout: float = 600.0,
             env: dict[str, str] | None = None) -> ExecResult:
        """Run argv inside the instance, wait, and return its output. Raises ExecTimeout."""

    @abstractmethod
    def put_file(self, local: Path, remote: str) -> None:
        """Copy a host file into the instance."""

    @abstractmethod
    def get_file(self, remote: str, local: Path) -> None:
        """Copy a file out of the instance to the host."""

    @property
    def address(self) -> str | None:
        """The instance's IP address on the suite's isolated network, if it has one."""
        return None

    def ignored_limits(self) -> dict[str, object]:
        """Limits in the spec this platform did not enforce (native ignores them all)."""
        return {}

    def host_pids(self) -> list[int]:
        """Host process ids that make up this instance (its init and children, or its QEMU process).

        Empty for native, which has no process of its own between commands."""
        return []

    def disk_usage_bytes(self) -> int | None:
        """Bytes this instance added on the host's disk (writable layer, qcow2 overlay)."""
        return None

    def metadata(self) -> dict[str, object]:
        """Facts to attach to every sample measured on this instance."""
        return {}

    @abstractmethod
    def destroy(self) -> None:
        """Stop the instance and remove everything it created on the host. Idempotent."""

    def __enter__(self) -> Instance:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.destroy()


class Platform(ABC):
    """Creates instances of one kind from the shared image."""

    name: str
    #: The InstanceSpec.network modes this platform can realise (scenarios pick among these).
    network_modes: tuple[str, ...] = ("none",)

    def check_available(self) -> None:
        """Raise PlatformUnavailable with the reason when this host cannot run the platform."""
        return None

    @abstractmethod
    def create(self, spec: InstanceSpec) -> Instance:
        """Start an instance; on any failure, leave nothing behind and raise."""

    def environment(self) -> dict[str, object]:
        """Facts about how this platform runs here (accelerator, runtime versions) for env.json."""
        return {}

    def cleanup_leftovers(self) -> list[str]:
        """Remove what a crashed earlier run of this platform left; return what was removed."""
        return []


# name -> "module:Class". Platforms import lazily so that a broken optional one cannot break the rest.
PLATFORMS: dict[str, str] = {
    "native": "runtime.native:NativePlatform",
    "container": "runtime.container.platform:ContainerPlatform",
    "vm": "runtime.vm.platform:VmPlatform",
}


def platform_names() -> list[str]:
    return list(PLATFORMS)


def validate_platform_names(names: Sequence[str]) -> list[str]:
    unknown = [n for n in names if n not in PLATFORMS]
    if unknown:
        raise SpecError(f"unknown platform {', '.join(unknown)}: choose from {', '.join(PLATFORMS)}")
    return list(names)


def load_platform(name: str, **options: object) -> Platform:
    """Instantiate a platform by name; PlatformUnavailable if its code is not present here."""
    validate_platform_names([name])
    module_name, class_name = PLATFORMS[name].split(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        raise PlatformUnavailable(f"platform {name}: module {exc.name} is missing ({exc})") from exc
    return getattr(module, class_name)(**options)
