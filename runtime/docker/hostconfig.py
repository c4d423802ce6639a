"""InstanceSpec -> the Docker SDK's `containers.create` arguments (plain data; nothing here talks to Docker).

Limits map onto Docker's own options, as `docker run` would set them: cpus -> NanoCpus (a CFS quota over
a 100 ms period), cpuset -> CpusetCpus, cpu_shares -> CpuShares, memory -> Memory with MemorySwap equal
to it unless memory_swap says otherwise (our spec's "no swap beyond the limit"; Docker's own default would
be twice the memory), pids_max -> PidsLimit, io_* -> BlkioDevice{Read,Write}{Bps,IOps} on the block device
that holds Docker's data root (where the container's writable layer lives). Docker's default seccomp
profile and capabilities stay as they are (that is the point of this reference); `unconfined` is
`--security-opt seccomp=unconfined`.

What Docker refuses outright is refused here first, with one SpecError naming the limit: cpus above the
host's CPU count or below 0.01, a cpuset naming CPUs the host does not have, less than 6 MiB of memory, a
swap limit without or below the memory limit, cpu_shares below 2. Limits it cannot apply on this host
(io without a block device under the data root, a swap limit without swap accounting, bandwidth outside
bridge/nat, disk_quota: overlay2 limits a container's size only on an xfs data root mounted with pquota)
are returned as ignored.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from runtime.errors import SpecError
from runtime.spec import VOLUME_DIR, InstanceSpec, parse_cpuset

MIN_MEMORY = 6 * 2**20  # Docker: "Minimum memory limit allowed is 6MB"
MIN_CPUS = 0.01  # Docker: "Range of CPUs is from 0.01 to <host CPUs>"
#: Network modes and how Docker runs them: Docker's own `none` or `host`; bridge and nat start as `none`
#: and are wired afterwards by runtime.container.netsetup (a veth on the suite's bridge), so that Docker
#: never touches a bridge, a route or a firewall rule.
DOCKER_NETWORK = {"none": "none", "host": "host", "bridge": "none", "nat": "none"}
_IO = (("io_read_bps", "device_read_bps"), ("io_write_bps", "device_write_bps"),
       ("io_read_iops", "device_read_iops"), ("io_write_iops", "device_write_iops"))


def check(spec: InstanceSpec, host_cpus: list[int]) -> None:
    """SpecError for a spec Docker cannot honour at all (before anything is made)."""
    if spec.cpus is not None and not MIN_CPUS <= spec.cpus <= len(host_cpus):
        raise SpecError(f"docker: cpus {spec.cpus:g} is outside what Docker accepts on this host "
                        f"({MIN_CPUS:g} to {len(host_cpus)}, the host's CPU count)")
    if spec.cpuset is not None:
        missing = sorted(set(parse_cpuset(spec.cpuset)) - set(host_cpus))
        if missing:
            raise SpecError(f"docker: cpuset {spec.cpuset!r} names CPU(s) {','.join(map(str, missing))} this "
                            f"host does not have (online: {','.join(map(str, host_cpus))})")
    if spec.cpu_shares is not None and spec.cpu_shares < 2:
        raise SpecError(f"docker: cpu_shares {spec.cpu_shares} is below Docker's minimum of 2")
    if spec.memory is not None and spec.memory < MIN_MEMORY:
        raise SpecError(f"docker: memory {spec.memory} bytes is below Docker's minimum of 6 MiB")
    if spec.memory_swap is not None:
        if spec.memory is None:
            raise SpecError("docker: memory_swap needs memory (Docker sets no swap limit without a memory limit)")
        if spec.memory_swap < spec.memory:
            raise SpecError(f"docker: memory_swap {spec.memory_swap} is below memory {spec.memory} "
                            "(it counts memory plus swap)")


def create_args(spec: InstanceSpec, *, host_cpus: list[int], io_device: str | None, swap_accounting: bool,
                volume: Path | None = None) -> tuple[dict[str, Any], dict[str, object]]:
    """(keyword arguments for `containers.create`, limits not applied {name: value}). Calls check()."""
    check(spec, host_cpus)
    args: dict[str, Any] = {"hostname": spec.hostname, "environment": dict(spec.env),
                            "network_mode": DOCKER_NETWORK[spec.network]}
    ignored: dict[str, object] = {}
    if spec.cpus is not None:
        args["nano_cpus"] = round(spec.cpus * 1e9)
    if spec.cpuset is not None:
        args["cpuset_cpus"] = ",".join(map(str, parse_cpuset(spec.cpuset)))
    if spec.cpu_shares is not None:
        args["cpu_shares"] = spec.cpu_shares
    if spec.memory is not None:
        args["mem_limit"] = spec.memory
        if swap_accounting:
            args["memswap_limit"] = spec.memory_swap if spec.memory_swap is not None else spec.memory
        elif spec.memory_swap is not None:
            ignored["memory_swap"] = spec.memory_swap
    if spec.pids_max is not None:
        args["pids_limit"] = spec.pids_max
    for field, option in _IO:
        value = getattr(spec, field)
        if value is None:
            continue
        if io_device is None:
            ignored[field] = value
        else:
            args[option] = [{"Path": io_device, "Rate": value}]
    if spec.disk_quota is not None:  # overlay2's `--storage-opt size` needs an xfs data root with pquota
        ignored["disk_quota"] = spec.disk_quota
    if spec.bandwidth is not None and spec.network not in ("bridge", "nat"):
        ignored["bandwidth"] = spec.bandwidth
    if spec.seccomp == "unconfined":
        args["security_opt"] = ["seccomp=unconfined"]
    if volume is not None:
        args["mounts"] = [{"Type": "bind", "Source": str(volume), "Target": VOLUME_DIR, "ReadOnly": False}]
    return args, ignored
