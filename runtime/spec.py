"""Plain data shared by every platform: what a scenario asks for and what it gets back.

`InstanceSpec` is the only thing a scenario may ask of a platform; each platform realises it
(native ignores limits and says so, the container maps it to cgroups/namespaces/tc, the VM to
libvirt XML). Nothing here talks to the kernel.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field

from runtime.container.storage import DEFAULT_DRIVER as DEFAULT_STORAGE_DRIVER
from runtime.container.storage import validate_driver as validate_storage_driver
from runtime.errors import SpecError

# none: own empty network; host: the host's network stack; bridge: own stack on the suite's isolated
# bridge with an address; nat: own stack on a private bridge, reachable only through a port-forward
# (DNAT) on the suite bridge's host address, as Docker publishes ports.
NETWORK_MODES = ("none", "host", "bridge", "nat")
# default: the platform's default syscall filter (the container: Docker's default seccomp profile);
# unconfined: none (like `docker run --security-opt seccomp=unconfined`).
SECCOMP_PROFILES = ("default", "unconfined")
VOLUME_DIR = "/mnt"  # where InstanceSpec(volume=True) mounts the instance's data volume

_SIZE_UNITS = {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4}
_RATE_UNITS = {"": 1, "k": 10**3, "m": 10**6, "g": 10**9}


def parse_size(text: str | int, what: str = "size") -> int:
    """'64M' -> 67108864 bytes (binary units, like docker --memory). Rejects zero and negatives."""
    if isinstance(text, int):
        value = text
    else:
        match = re.fullmatch(r"\s*(-?\d+)\s*([kKmMgGtT]?)(i?[bB])?\s*", str(text))
        if not match:
            raise SpecError(f"invalid {what} {text!r}: expected a number with an optional K/M/G/T suffix")
        value = int(match.group(1)) * _SIZE_UNITS[match.group(2).lower()]
    if value <= 0:
        raise SpecError(f"invalid {what} {text!r}: must be greater than zero")
    return value


def parse_rate(text: str | int, what: str = "bandwidth") -> int:
    """'100mbit' -> 100_000_000 bits per second (decimal units, like tc)."""
    if isinstance(text, int):
        value = text
    else:
        match = re.fullmatch(r"\s*(-?\d+)\s*([kKmMgG]?)(bit|bps)?\s*", str(text))
        if not match:
            raise SpecError(f"invalid {what} {text!r}: expected e.g. 100mbit or 1gbit")
        value = int(match.group(1)) * _RATE_UNITS[match.group(2).lower()]
        if match.group(3) == "bps":
            value *= 8
    if value <= 0:
        raise SpecError(f"invalid {what} {text!r}: must be greater than zero")
    return value


def parse_cpuset(text: str) -> list[int]:
    """'0-2,5' -> [0, 1, 2, 5]."""
    cpus: set[int] = set()
    for part in str(text).split(","):
        part = part.strip()
        match = re.fullmatch(r"(\d+)(?:-(\d+))?", part)
        if not match:
            raise SpecError(f"invalid cpuset {text!r}: expected a list like 0-2,5")
        low = int(match.group(1))
        high = int(match.group(2) or low)
        if high < low:
            raise SpecError(f"invalid cpuset {text!r}: range {part} runs backwards")
        cpus.update(range(low, high + 1))
    return sorted(cpus)


@dataclass(frozen=True)
class InstanceSpec:
    """What a scenario asks for. Limits left as None mean 'no limit'."""

    cpus: float | None = None  # CPU quota in cores (0.5 = half a core); a VM gets ceil(cpus) vcpus
    cpuset: str | None = None  # host CPUs the instance may run on, e.g. "0" or "0-1"
    cpu_shares: int | None = None  # relative weight (cgroup v1 shares scale, 2..262144)
    memory: int | None = None  # bytes
    memory_swap: int | None = None  # bytes of memory+swap (cgroup v1 semantics), None = same as memory
    io_read_bps: int | None = None  # bytes/s on the root disk
    io_write_bps: int | None = None
    io_read_iops: int | None = None
    io_write_iops: int | None = None
    pids_max: int | None = None
    network: str = "none"  # one of NETWORK_MODES
    bandwidth: int | None = None  # bits/s egress+ingress cap on the instance's link
    hostname: str = "isolab"
    env: dict[str, str] = field(default_factory=dict)
    # A data volume at VOLUME_DIR that bypasses the instance's copy-on-write root: a bind-mounted host
    # directory (container), a raw disk image (vm), a host directory (native).
    volume: bool = False
    seccomp: str = "default"  # one of SECCOMP_PROFILES (platforms without a syscall filter ignore it)
    # The container's root is an unprivileged host uid (runtime.container.userns); other platforms ignore it.
    userns: bool = False
    # bytes: a hard limit on what the instance writes to its copy-on-write root and its volume together,
    # enforced by a filesystem (runtime.container.quota); a platform that cannot enforce it says so
    disk_quota: int | None = None
    # How the container's root is made from its image (runtime.container.storage; other platforms ignore it).
    storage_driver: str = DEFAULT_STORAGE_DRIVER

    def __post_init__(self) -> None:
        validate_storage_driver(self.storage_driver)
        if self.network not in NETWORK_MODES:
            raise SpecError(f"unknown network mode {self.network!r}: choose one of {', '.join(NETWORK_MODES)}")
        if self.seccomp not in SECCOMP_PROFILES:
            raise SpecError(f"unknown seccomp profile {self.seccomp!r}: choose one of {', '.join(SECCOMP_PROFILES)}")
        if self.cpus is not None and self.cpus <= 0:
            raise SpecError(f"invalid cpus {self.cpus!r}: must be greater than zero")
        for name in ("memory", "memory_swap", "io_read_bps", "io_write_bps", "io_read_iops",
                     "io_write_iops", "pids_max", "bandwidth", "cpu_shares", "disk_quota"):
            value = getattr(self, name)
            if value is not None and value <= 0:
                raise SpecError(f"invalid {name} {value!r}: must be greater than zero")
        if self.cpuset is not None:
            parse_cpuset(self.cpuset)
        if not re.fullmatch(r"[A-Za-z0-9]([A-Za-z0-9-]{0,62})", self.hostname):
            raise SpecError(f"invalid hostname {self.hostname!r}")

    def limits(self) -> dict[str, object]:
        """The limits that are set, by name (for 'limits ignored' reports and metadata)."""
        skip = {"network", "hostname", "env", "volume", "seccomp", "userns", "storage_driver"}
        return {k: v for k, v in asdict(self).items() if k not in skip and v is not None}

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


@dataclass(frozen=True)
class ExecResult:
    """Outcome of one command run inside an instance."""

    argv: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str
    duration_s: float

    @property
    def ok(self) -> bool:
        return self.returncode == 0

    def stderr_tail(self, lines: int = 3) -> str:
        tail = [line for line in self.stderr.strip().splitlines() if line.strip()][-lines:]
        return " | ".join(tail)
