"""The container's seccomp filter: Docker's default profile (the data file seccomp_default.toml),
compiled by libseccomp's own Python bindings into a BPF program once per process, and loaded into each
container process (pid 1 and every `exec`) with one seccomp(2) call just before it execs.

Profiles: "default" (Docker's default profile for the container's capability set, host architecture
and kernel) and "unconfined" (no filter, like `docker run --security-opt seccomp=unconfined`).

The bindings: Debian's `python3-seccomp` (built from libseccomp's source tree, the same version as the
host's libseccomp2; PyPI has no release of them). It installs for the system Python 3.11 only; the
project's virtualenv runs that same interpreter, so when `import seccomp` fails the extension module
is loaded from Debian's path by file name (nothing else of the system's site-packages is exposed).
"""

from __future__ import annotations

import functools
import importlib.machinery
import importlib.util
import os
import platform
import re
import tomllib
from dataclasses import dataclass
from importlib import resources
from types import ModuleType
from typing import Any

from runtime.errors import PlatformUnavailable, SpecError

PROFILES = ("default", "unconfined")
DATA_FILE = "seccomp_default.toml"
DEBIAN_DIST_PACKAGES = "/usr/lib/python3/dist-packages"

# libseccomp's names for `platform.machine()` values, and for the names the data file uses.
_MACHINE_ARCH = {"x86_64": "x86_64", "amd64": "x86_64", "aarch64": "aarch64", "arm64": "aarch64",
                 "s390x": "s390x", "riscv64": "riscv64", "ppc64le": "ppc64le", "mips64": "mips64"}


@dataclass(frozen=True)
class Program:
    """A compiled filter: the BPF program the kernel receives, and what went into it."""

    profile: str  # "default"
    name: str  # the data file's profile name, e.g. "docker-default"
    source: str  # where the facts come from (moby's profile and version)
    arches: tuple[str, ...]
    bpf: bytes  # struct sock_filter[], as libseccomp exports it
    unknown_syscalls: tuple[str, ...]  # allowed by the profile but unknown to this libseccomp (stay EPERM)

    def describe(self) -> str:
        return f"{self.name} ({self.source})"


def bindings() -> ModuleType:
    """libseccomp's Python module, from the virtualenv or else from Debian's python3-seccomp."""
    try:
        import seccomp  # type: ignore[import-not-found]

        return seccomp  # type: ignore[no-any-return]
    except ImportError:
        pass
    candidates = [os.path.join(DEBIAN_DIST_PACKAGES, "seccomp" + suffix)
                  for suffix in importlib.machinery.EXTENSION_SUFFIXES]  # this interpreter's ABI first
    path = next((c for c in candidates if os.path.exists(c)), None)
    if path is None:
        raise PlatformUnavailable(
            f"container: libseccomp's Python bindings are missing (no module 'seccomp', none of "
            f"{', '.join(candidates)}): install the Debian package python3-seccomp (`nox -s setup` does)")
    loader = importlib.machinery.ExtensionFileLoader("seccomp", path)
    spec = importlib.util.spec_from_file_location("seccomp", path, loader=loader)
    assert spec is not None
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    return module


def load_profile_data() -> dict[str, Any]:
    text = resources.files("runtime.container").joinpath(DATA_FILE).read_text(encoding="utf-8")
    return tomllib.loads(text)


def kernel_version(release: str | None = None) -> tuple[int, int]:
    match = re.match(r"(\d+)\.(\d+)", release or platform.release())
    return (int(match.group(1)), int(match.group(2))) if match else (0, 0)


def rule_applies(rule: dict[str, Any], caps: frozenset[str], arch: str, kernel: tuple[int, int]) -> bool:
    """Whether a conditional rule of the data file holds for this container and host."""
    if "if_caps" in rule and not caps & set(rule["if_caps"]):
        return False
    if "unless_caps" in rule and caps & set(rule["unless_caps"]):
        return False
    if "if_arches" in rule and arch not in rule["if_arches"]:
        return False
    if "unless_arches" in rule and arch in rule["unless_arches"]:
        return False
    if "if_kernel_at_least" in rule and kernel < kernel_version(rule["if_kernel_at_least"]):
        return False
    return True


def compile_profile(data: dict[str, Any], caps: frozenset[str], arch: str | None = None,
                    kernel: tuple[int, int] | None = None) -> Program:
    """Build the filter for `caps` (capability names the container keeps) on this host; export its BPF."""
    sc = bindings()
    arch = arch or _MACHINE_ARCH.get(platform.machine(), platform.machine())
    kernel = kernel or kernel_version()
    profile = data["profile"]
    if profile["default"] != "errno":
        raise SpecError(f"seccomp profile {profile['name']}: unsupported default action {profile['default']!r}")
    filt = sc.SyscallFilter(defaction=sc.ERRNO(profile["default_errno"]))
    arches = (arch, *data["arches"].get(arch, ()))
    for extra in arches[1:]:
        filt.add_arch(getattr(sc.Arch, extra.upper()))
    ops = {"eq": sc.EQ, "ne": sc.NE, "lt": sc.LT, "le": sc.LE, "gt": sc.GT, "ge": sc.GE,
           "masked_eq": sc.MASKED_EQ}
    unknown: list[str] = []

    def add(action: Any, name: str, args: list[Any]) -> None:
        try:
            filt.add_rule(action, name, *args)
        except (RuntimeError, ValueError):
            unknown.append(name)

    for name in data["allow"]["syscalls"]:
        add(sc.ALLOW, name, [])
    for rule in data["rule"]:
        if not rule_applies(rule, caps, arch, kernel):
            continue
        action = sc.ERRNO(rule["errno"]) if rule.get("action") == "errno" else sc.ALLOW
        args = [sc.Arg(a["index"], ops[a["op"]], a["mask"], a["value"]) if a["op"] == "masked_eq"
                else sc.Arg(a["index"], ops[a["op"]], a["value"]) for a in rule.get("args", [])]
        for name in rule["syscalls"]:
            add(action, name, args)
    fd = os.memfd_create("isolab-seccomp", os.MFD_CLOEXEC)
    with os.fdopen(fd, "w+b") as out:
        filt.export_bpf(out)
        out.seek(0)
        bpf = out.read()
    if not bpf or len(bpf) % 8:
        raise SpecError(f"seccomp profile {profile['name']}: libseccomp exported a malformed program "
                        f"({len(bpf)} bytes)")
    return Program("default", profile["name"], profile["source"], arches, bpf, tuple(sorted(set(unknown))))


@functools.cache
def program(profile: str, caps: frozenset[str]) -> Program | None:
    """The compiled filter for `profile` (None for "unconfined"), built once per process."""
    if profile == "unconfined":
        return None
    if profile != "default":
        raise SpecError(f"unknown seccomp profile {profile!r}: choose one of {', '.join(PROFILES)}")
    return compile_profile(load_profile_data(), caps)


def describe(profile: str, caps: frozenset[str]) -> str:
    """What ran, for metadata: e.g. 'docker-default (moby/profiles seccomp v0.2.3 ...)' or 'unconfined'."""
    compiled = program(profile, caps)
    return "unconfined" if compiled is None else compiled.describe()
