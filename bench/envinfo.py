"""The environment fingerprint written to env.json: what a reader needs to reproduce or doubt a result."""

from __future__ import annotations

import os
import platform as pyplatform
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

REQUIRED_KEYS = ("host", "cpu", "memory_bytes", "cgroup", "tools", "isolab", "command_line", "captured_at")

# Host tools every run uses; a platform reports its own runtime's version in Platform.environment()
# (env.json "platforms"), so that this file names no platform.
_VERSION_COMMANDS = {
    "qemu": ["qemu-system-x86_64", "--version"],
    "libvirt": ["libvirtd", "--version"],
    "fio": ["fio", "--version"],
    "iperf3": ["iperf3", "--version"],
    "sysbench": ["sysbench", "--version"],
    "stress-ng": ["stress-ng", "--version"],
}


def _first_line(argv: list[str]) -> str | None:
    if shutil.which(argv[0]) is None:
        return None
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    text = (out.stdout or out.stderr).strip()
    return text.splitlines()[0] if text else None


def cpu_info() -> dict[str, object]:
    text = Path("/proc/cpuinfo").read_text()
    model = re.search(r"^model name\s*:\s*(.+)$", text, re.M)
    flags = re.search(r"^flags\s*:\s*(.+)$", text, re.M)
    flag_set = set(flags.group(1).split()) if flags else set()
    return {
        "model": model.group(1).strip() if model else pyplatform.processor(),
        "logical_cpus": os.cpu_count(),
        "online_cpus": len(os.sched_getaffinity(0)),
        "virtualization_flags": sorted(flag_set & {"vmx", "svm", "hypervisor"}),
    }


def cgroup_info() -> dict[str, object]:
    fs = Path("/sys/fs/cgroup")
    if (fs / "cgroup.controllers").exists():
        return {"version": 2, "layout": "unified"}
    v1 = sorted(p.name for p in fs.iterdir() if p.is_dir() and (p / "tasks").exists()) if fs.is_dir() else []
    unified = fs / "unified" / "cgroup.controllers"
    return {"version": 1, "layout": "hybrid" if unified.exists() else "legacy", "v1_controllers": v1}


def git_revision(repo: Path) -> dict[str, object]:
    def git(*args: str) -> str | None:
        try:
            out = subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True, timeout=10)
        except OSError:
            return None
        return out.stdout.strip() if out.returncode == 0 else None

    rev = git("rev-parse", "HEAD")
    status = git("status", "--porcelain", "--untracked-files=no")
    return {"revision": rev, "dirty": bool(status) if status is not None else None}


def memory_bytes() -> int:
    match = re.search(r"^MemTotal:\s+(\d+) kB", Path("/proc/meminfo").read_text(), re.M)
    return int(match.group(1)) * 1024 if match else 0


def capture(image_manifest: dict[str, object] | None, platforms: dict[str, dict[str, object]],
            command_line: list[str]) -> dict[str, object]:
    uname = os.uname()
    tools = {name: _first_line(argv) for name, argv in _VERSION_COMMANDS.items()}
    image_packages = (image_manifest or {}).get("packages", {}) or {}
    wanted = ("fio", "iperf3", "sysbench", "stress-ng", "netperf", "iozone3", "sockperf", "qemu-guest-agent")
    return {
        "host": {"hostname": uname.nodename, "kernel": uname.release, "kernel_version": uname.version,
                 "machine": uname.machine, "os": _os_release()},
        "cpu": cpu_info(),
        "memory_bytes": memory_bytes(),
        "cgroup": cgroup_info(),
        "tools": {"host": tools,
                  "image": {p: image_packages.get(p) for p in wanted if isinstance(image_packages, dict)}},
        "image": {k: (image_manifest or {}).get(k) for k in ("digest", "kernel_version", "built_at", "mirror")},
        "platforms": platforms,
        "isolab": {**git_revision(Path(__file__).resolve().parent.parent), "python": sys.version.split()[0]},
        "command_line": command_line,
        "captured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def _os_release() -> str:
    try:
        text = Path("/etc/os-release").read_text()
    except OSError:
        return "unknown"
    match = re.search(r'^PRETTY_NAME="?([^"\n]+)"?', text, re.M)
    return match.group(1) if match else "unknown"
