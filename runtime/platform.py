"""The one small interface every platform speaks, and the registry of platforms.

A `Platform` turns an `InstanceSpec` into a running `Instance`. Scenarios only ever see
`Instance`: exec a command, move files, read its address and start phases, destroy it. No scenario
imports a platform and no platform imports a scenario.

A platform also describes itself (`Platform.describe() -> PlatformInfo`: kind, display name, colour,
isolation mechanism or accelerator, whether its figures are emulated, whether it is the baseline) and
declares which run options it takes (`Platform.options`), so that the harness and the report loop over
whatever platforms ran without naming one.

`Platform.run_once(argv)` runs one throwaway instance whose command is argv and waits for its exit and
removal (start-to-exit). The default creates an instance, execs argv in it and destroys it; a platform
with a native one-shot path (a container whose pid 1 is the command, `<runtime> run`) overrides it and
says so with `one_shot = "..."`.
"""

from __future__ import annotations

import importlib
import re
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import MISSING, asdict, dataclass, field, fields
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


@dataclass(frozen=True)
class RunOnce:
    """One throwaway instance from the start request to its command's exit and its removal.

    `path` says how it ran: "create+exec+destroy" (the default: a ready instance, the command exec'd in
    it, then destroyed; `ready_s` and `teardown_s` are then its parts and `phases` its start phases) or
    the platform's own one-shot path (then `phases` holds what the runtime exposes, maybe nothing)."""

    seconds: float  # start request -> exit and removal
    returncode: int
    path: str
    phases: dict[str, float] = field(default_factory=dict)
    ready_s: float | None = None  # start request -> first command answered (default path only)
    teardown_s: float | None = None  # destroy (default path only)
    detail: str = ""  # what the command or the runtime said, when it failed
    instance_id: str = ""  # the throwaway instance's id (what it may have left on the host is named by it)


DEFAULT_RUN_ONCE = "create+exec+destroy"


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

    @property
    def published_address(self) -> str | None:
        """`nat` mode: the host address on the suite's bridge where the instance's ports are published."""
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

    #: Whether `commit` works: the platform keeps images an instance's changes can become.
    can_commit: bool = False

    def commit(self, name: str) -> Callable[[], None]:
        """Save the instance's changes as a new image `name` (it keeps running); returns a function that
        removes that image again. Only where `can_commit`."""
        raise NotImplementedError(f"{self.platform}: no images to commit an instance's changes to")

    def metadata(self) -> dict[str, object]:
        """Facts to attach to every sample measured on this instance."""
        return {}

    def quiesce(self) -> str | None:
        """Stop using CPU, memory bandwidth and disk until `wake()` (while another platform is measured).
        Returns how (e.g. 'cgroup freezer', 'domain paused', 'no process between commands'), or None when
        this platform cannot: the harness then starts and destroys its instances per block instead."""
        return None

    def wake(self) -> None:
        """Undo `quiesce()`; a no-op when nothing was quiesced."""
        return None

    @abstractmethod
    def destroy(self) -> None:
        """Stop the instance and remove everything it created on the host. Idempotent."""

    def __enter__(self) -> Instance:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.destroy()


#: The kinds of platform the report groups and compares (literature claims are about kinds).
KIND_NATIVE = "native"
KIND_CONTAINER = "container"
KIND_SANDBOXED_CONTAINER = "sandboxed container"
KIND_VM = "vm"
KINDS = (KIND_NATIVE, KIND_CONTAINER, KIND_SANDBOXED_CONTAINER, KIND_VM)

#: What a platform stands for in the calibration ("is our container a real container?"): this suite's
#: own runtime under test, a production runtime it is calibrated against, or neither (the baseline, the
#: VM, ...). A platform module sets it in describe(); a production container runtime (crun, runc, LXC,
#: Docker, gVisor) says ROLE_REFERENCE.
ROLE_OURS = "ours"
ROLE_REFERENCE = "reference"
ROLE_NONE = ""
ROLES = (ROLE_OURS, ROLE_REFERENCE, ROLE_NONE)


@dataclass(frozen=True)
class PlatformInfo:
    """What the harness and the report need to know about a platform, as it runs on this host."""

    name: str  # registry key, e.g. "vm"
    kind: str  # one of KINDS
    display_name: str  # e.g. "libvirt VM"
    colour: str  # hex colour for plots, e.g. "#c44e52"
    mechanism: str  # how it isolates or accelerates here: "chroot", "namespaces + cgroup v1", "KVM", ...
    emulated: bool  # True when its figures are not hardware-virtualisation figures (TCG)
    baseline: bool  # True for the platform every ratio is taken against
    role: str = ROLE_NONE  # one of ROLES: ours / reference in the calibration; runs recorded before it: ""

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise SpecError(f"platform {self.name}: unknown kind {self.kind!r} (one of {', '.join(KINDS)})")
        if self.role not in ROLES:
            raise SpecError(f"platform {self.name}: unknown role {self.role!r} (one of {ROLES})")
        if not (len(self.colour) == 7 and self.colour.startswith("#")):
            raise SpecError(f"platform {self.name}: colour {self.colour!r} is not #rrggbb")

    @property
    def label(self) -> str:
        """Name and mechanism, for tables and legends: 'vm: TCG (emulated)'."""
        return f"{self.name}: {self.mechanism}" if self.mechanism else self.name

    def to_dict(self) -> dict[str, object]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, object]) -> PlatformInfo:
        """The inverse of to_dict; keys a later version added are ignored, a missing one is an error unless
        the field has a default (a field added later, e.g. role: runs recorded before it read as ROLE_NONE)."""
        missing = [f.name for f in fields(cls) if f.name not in data and f.default is MISSING]
        if missing:
            raise SpecError(f"platform info lacks {', '.join(missing)}: {dict(data)!r}")
        return cls(name=str(data["name"]), kind=str(data["kind"]), display_name=str(data["display_name"]),
                   colour=str(data["colour"]), mechanism=str(data["mechanism"]),
                   emulated=bool(data["emulated"]), baseline=bool(data["baseline"]),
                   role=str(data.get("role", ROLE_NONE)))


class Platform(ABC):
    """Creates instances of one kind from the shared image."""

    name: str
    #: Names of RunConfig fields this platform takes as keyword arguments (e.g. ("accel",)); the
    #: harness passes exactly these, so it never needs to know which platform wants what.
    options: tuple[str, ...] = ()
    #: The InstanceSpec.network modes this platform can realise (scenarios pick among these).
    network_modes: tuple[str, ...] = ("none",)
    #: When a run names no platforms, the scenario group (scenarios.base.SCENARIO_GROUPS) this platform is
    #: run on by default, or None for every scenario: a variant that only matters there (a user namespace
    #: changes what an instance can reach, not what it costs) does not lengthen the default run.
    default_scope: str | None = None

    @classmethod
    def variant_options(cls, variant: str) -> dict[str, object]:
        """The keyword arguments that select the variant `variant` of this platform (the part in brackets
        of a run's platform name `name[variant]`, e.g. a storage driver). The platform parses its own
        variants; SpecError for one it does not have."""
        raise SpecError(f"platform {cls.name} has no variants (asked for {cls.name}[{variant}])")

    #: How run_once runs a command: the default path, or a description of the platform's own one-shot path.
    one_shot: str = DEFAULT_RUN_ONCE

    def check_available(self) -> None:
        """Raise PlatformUnavailable with the reason when this host cannot run the platform."""
        return None

    def run_once(self, argv: Sequence[str], spec: InstanceSpec | None = None, timeout: float = 120.0) -> RunOnce:
        """Start a throwaway instance whose command is argv, wait for its exit and its removal.

        The default: create(spec), exec(argv), destroy(). Platforms with a one-shot path override it
        (and set `one_shot`); on any failure nothing is left behind and the error is raised."""
        begin = time.perf_counter()
        instance = self.create(spec or InstanceSpec())
        try:
            result = instance.exec(argv, timeout=timeout)
            ready = time.perf_counter()
            phases = dict(instance.start_phases.phases)
        finally:
            destroy_begin = time.perf_counter()
            instance.destroy()
        end = time.perf_counter()
        return RunOnce(end - begin, result.returncode, DEFAULT_RUN_ONCE, phases, ready - begin, end - destroy_begin,
                       result.stderr_tail(), instance.instance_id)

    @abstractmethod
    def create(self, spec: InstanceSpec) -> Instance:
        """Start an instance; on any failure, leave nothing behind and raise."""

    @abstractmethod
    def describe(self) -> PlatformInfo:
        """Kind, display name, colour and mechanism as this platform runs here (after check_available())."""

    def environment(self) -> dict[str, object]:
        """Facts about how this platform runs here (accelerator, runtime versions) for env.json."""
        return {}

    def cleanup_leftovers(self) -> list[str]:
        """Remove what a crashed earlier run of this platform left beyond what runtime.sweep removes
        (instances recorded through runtime.state, cgroups, mounts, network, libvirt domains)."""
        return []


# name -> "module:Class". Platforms import lazily so that a broken optional one cannot break the rest.
PLATFORMS: dict[str, str] = {
    "native": "runtime.native:NativePlatform",
    "container": "runtime.container.platform:ContainerPlatform",
    "container-userns": "runtime.container.platform:ContainerUsernsPlatform",
    "vm": "runtime.vm.platform:VmPlatform",
    "crun": "runtime.oci.platform:CrunPlatform",
    "runc": "runtime.oci.platform:RuncPlatform",
    "lxc": "runtime.lxc.platform:LxcPlatform",
    "docker": "runtime.docker.platform:DockerPlatform",
    "gvisor": "runtime.gvisor.platform:GvisorPlatform",
}
#: What a run measures when no platform is named (`--platform all` means every registered one): the
#: platforms registered before the production runtimes came (issue #12 keeps them as the default).
DEFAULT_PLATFORMS: tuple[str, ...] = ("native", "container", "container-userns", "vm")


def platform_names() -> list[str]:
    """Every registered platform."""
    return list(PLATFORMS)


def default_platform_names() -> list[str]:
    """The platforms a run uses when none is named."""
    return [n for n in DEFAULT_PLATFORMS if n in PLATFORMS]


_VARIANT = re.compile(r"([^\[\]]+)\[([^\[\]]*)\]")


def split_variant(name: str) -> tuple[str, str | None]:
    """'container[btrfs]' -> ('container', 'btrfs'); 'vm' -> ('vm', None). Any platform may have variants;
    which ones is its own business (Platform.variant_options)."""
    match = _VARIANT.fullmatch(name)
    return (match.group(1), match.group(2)) if match else (name, None)


def validate_platform_names(names: Sequence[str]) -> list[str]:
    unknown = [n for n in names if split_variant(n)[0] not in PLATFORMS]
    if unknown:
        raise SpecError(f"unknown platform {', '.join(unknown)}: choose from {', '.join(PLATFORMS)} "
                        f"(a variant as name[variant], e.g. a storage driver)")
    for name in names:
        base, variant = split_variant(name)
        if variant is not None:
            try:
                cls = platform_class(base)
            except PlatformUnavailable:
                continue  # its code is missing here: the run reports it as unavailable
            cls.variant_options(variant)
    return list(names)


def platform_class(name: str) -> type[Platform]:
    """The class of a platform (of its variants too), imported on demand; PlatformUnavailable if its code
    is not present here."""
    name = split_variant(name)[0]
    if name not in PLATFORMS:
        validate_platform_names([name])
    module_name, class_name = PLATFORMS[name].split(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        raise PlatformUnavailable(f"platform {name}: module {exc.name} is missing ({exc})") from exc
    return getattr(module, class_name)


def load_platform(name: str, **options: object) -> Platform:
    """Instantiate a platform by name (`name[variant]` for a variant); PlatformUnavailable if its code is
    not present here."""
    cls = platform_class(name)
    variant = split_variant(name)[1]
    return cls(**options, **({} if variant is None else cls.variant_options(variant)))
