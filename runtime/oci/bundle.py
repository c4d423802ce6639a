"""An OCI runtime bundle's config.json built from an `InstanceSpec` (runtime-spec 1.0.2).

What it sets, like our runtime and Docker's defaults: pid, network, ipc, uts and mount namespaces;
cgroup limits (cpu quota/period, cpuset, shares, memory and memory+swap, pids, blkio throttles on the
disk that holds the writable layer); Docker's default capabilities, masked and read-only /proc and /sys
paths, no_new_privs; all devices denied but the runtime's default set; Docker's default seccomp
profile (restated in runtime/container/seccomp_default.toml) unless the spec says unconfined. The root
is either read-only (the shared rootfs itself) or a writable overlay the caller mounted.
Pure data: nothing here touches the kernel but reading which cgroup files exist.
"""

from __future__ import annotations

import platform
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from runtime.container.hardening import DEFAULT_CAP_NAMES, DEFAULT_CAPS, MASKED_PATHS, READONLY_PATHS
from runtime.spec import VOLUME_DIR, InstanceSpec

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
CPU_PERIOD_US = 100_000
MEMSW = Path("/sys/fs/cgroup/memory/memory.memsw.limit_in_bytes")

_ARCH = {"x86_64": "x86_64", "aarch64": "aarch64"}
_OPS = {"eq": "SCMP_CMP_EQ", "ne": "SCMP_CMP_NE", "lt": "SCMP_CMP_LT", "le": "SCMP_CMP_LE",
        "gt": "SCMP_CMP_GT", "ge": "SCMP_CMP_GE", "masked_eq": "SCMP_CMP_MASKED_EQ"}


def resources(spec: InstanceSpec, io_device: str | None) -> tuple[dict[str, Any], dict[str, object]]:
    """(linux.resources, limits of the spec it cannot express here). io limits go to 'MAJ:MIN'."""
    res: dict[str, Any] = {"devices": [{"allow": False, "access": "rwm"}]}
    ignored: dict[str, object] = {}
    cpu: dict[str, Any] = {}
    if spec.cpus is not None:
        cpu.update(quota=max(1000, round(spec.cpus * CPU_PERIOD_US)), period=CPU_PERIOD_US)
    if spec.cpuset is not None:
        cpu["cpus"] = spec.cpuset
    if spec.cpu_shares is not None:
        cpu["shares"] = spec.cpu_shares
    if cpu:
        res["cpu"] = cpu
    if spec.memory is not None:
        res["memory"] = {"limit": spec.memory}
        if MEMSW.exists():  # v1 memory+swap, only with swap accounting; same as memory when not given
            res["memory"]["swap"] = spec.memory_swap or spec.memory
        elif spec.memory_swap is not None:
            ignored["memory_swap"] = spec.memory_swap
    elif spec.memory_swap is not None:
        ignored["memory_swap"] = spec.memory_swap
    if spec.pids_max is not None:
        res["pids"] = {"limit": spec.pids_max}
    throttles = {"throttleReadBpsDevice": spec.io_read_bps, "throttleWriteBpsDevice": spec.io_write_bps,
                 "throttleReadIOPSDevice": spec.io_read_iops, "throttleWriteIOPSDevice": spec.io_write_iops}
    wanted = {k: v for k, v in throttles.items() if v is not None}
    if wanted and io_device is None:
        ignored.update({k: v for k, v in spec.limits().items() if k.startswith("io_")})
    elif wanted and io_device is not None:
        major, minor = (int(x) for x in io_device.split(":"))
        res["blockIO"] = {k: [{"major": major, "minor": minor, "rate": v}] for k, v in wanted.items()}
    if spec.bandwidth is not None:
        ignored["bandwidth"] = spec.bandwidth  # network "none" only: no link to shape
    if spec.disk_quota is not None:
        ignored["disk_quota"] = spec.disk_quota  # the bundle's writable layer is a plain overlay upper
    return res, ignored


def seccomp_section(profile: str) -> dict[str, Any] | None:
    """Docker's default profile as an OCI `linux.seccomp` object for the default capabilities on this host
    (None for "unconfined"): the same data our runtime compiles, in the runtime-spec's shape."""
    if profile == "unconfined":
        return None
    from runtime.container import seccomp

    data = seccomp.load_profile_data()
    arch = _ARCH.get(platform.machine(), platform.machine())
    kernel = seccomp.kernel_version()
    syscalls: list[dict[str, Any]] = [{"names": list(data["allow"]["syscalls"]), "action": "SCMP_ACT_ALLOW"}]
    for rule in data["rule"]:
        if not seccomp.rule_applies(rule, DEFAULT_CAP_NAMES, arch, kernel):
            continue
        entry: dict[str, Any] = {"names": list(rule["syscalls"]), "action": "SCMP_ACT_ALLOW"}
        if rule.get("action") == "errno":
            entry.update(action="SCMP_ACT_ERRNO", errnoRet=rule["errno"])
        args = []
        for a in rule.get("args", []):
            if a["op"] == "masked_eq":  # OCI: (arg & value) == valueTwo
                args.append({"index": a["index"], "value": a["mask"], "valueTwo": a["value"],
                             "op": _OPS["masked_eq"]})
            else:
                args.append({"index": a["index"], "value": a["value"], "op": _OPS[a["op"]]})
        if args:
            entry["args"] = args
        syscalls.append(entry)
    arches = [arch, *data["arches"].get(arch, ())]
    return {"defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": data["profile"]["default_errno"],
            "architectures": [f"SCMP_ARCH_{a.upper()}" for a in arches], "syscalls": syscalls}


def config(spec: InstanceSpec, rootfs: Path, args: Sequence[str], cgroups_path: str, *,
           writable: bool = False, volume: Path | None = None, io_device: str | None = None,
           ) -> tuple[dict[str, Any], dict[str, object]]:
    """(config.json as a dict, limits it could not express). `rootfs`: the root directory (the shared
    image, mounted read-only unless `writable`, for a root that is the caller's overlay); `volume`: a
    host directory bind-mounted at VOLUME_DIR."""
    caps = sorted(DEFAULT_CAPS)
    env = [f"PATH={DEFAULT_PATH}", *(f"{k}={v}" for k, v in spec.env.items())]
    mounts: list[dict[str, Any]] = [
        {"destination": "/proc", "type": "proc", "source": "proc"},
        {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
         "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
        {"destination": "/dev/pts", "type": "devpts", "source": "devpts",
         "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"]},
        {"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
         "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]},
        {"destination": "/sys", "type": "sysfs", "source": "sysfs", "options": ["nosuid", "noexec", "nodev", "ro"]},
    ]
    if volume is not None:
        mounts.append({"destination": VOLUME_DIR, "type": "bind", "source": str(volume),
                       "options": ["rbind", "rw", "nosuid", "nodev"]})
    res, ignored = resources(spec, io_device)
    linux: dict[str, Any] = {
        "cgroupsPath": cgroups_path,
        "resources": res,
        "namespaces": [{"type": t} for t in ("pid", "network", "ipc", "uts", "mount")
                       if not (t == "network" and spec.network == "host")],
        "maskedPaths": list(MASKED_PATHS), "readonlyPaths": list(READONLY_PATHS),
    }
    if (seccomp := seccomp_section(spec.seccomp)) is not None:
        linux["seccomp"] = seccomp
    cfg: dict[str, Any] = {
        "ociVersion": "1.0.2",
        "process": {"terminal": False, "user": {"uid": 0, "gid": 0}, "args": list(args), "env": env,
                    "cwd": "/", "noNewPrivileges": True,
                    "capabilities": {k: caps for k in ("bounding", "effective", "permitted")}},
        "root": {"path": str(rootfs), "readonly": not writable},
        "hostname": spec.hostname,
        "mounts": mounts,
        "linux": linux,
    }
    return cfg, ignored
