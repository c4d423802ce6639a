"""Which gVisor platform (the sentry's way to intercept the application's syscalls) runs on this host.

runsc lists the platforms it was built with (`runsc help platforms`: the Debian 12 build of 2022-12-19
has ptrace and kvm, no systrap). Each is tried by running `/bin/true` in a real sandbox (`runsc do`, the
host's root read-only under a tmpfs overlay, no network, cgroups left to us) with a deadline: on a
KVM-PVM host the kvm platform hangs instead of failing. The first that answers, in PREFERENCE order,
is the platform; the result is kept for the life of the process (a probe that hangs costs its timeout).

A probe is an instance like any other: a claimed state dir (`gvprobe-<token>`, holding runsc's --root
and its temporary bundle) and a cgroup `isolab/gvprobe-<token>` that holds runsc and everything it
spawns, so a timed-out probe is killed whole, and a probe of a killed run is swept by `cleanup`.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from runtime import state
from runtime.container.cgroups import make_cgroup
from runtime.linux import syscalls as sc

#: Best first: kvm (hardware virtualisation of the sentry's address spaces), systrap (seccomp traps,
#: gVisor's default since 2023), ptrace (a ptrace stub per address space: the slowest syscalls).
PREFERENCE = ("kvm", "systrap", "ptrace")
#: Requests that name a group rather than one platform: every platform, or those without hardware
#: virtualisation ("software": what a run forced to TCG, no KVM, asks of gVisor).
GROUPS = {"auto": PREFERENCE, "software": ("systrap", "ptrace")}
KVM_DEVICE = Path("/dev/kvm")
PROBE_TIMEOUT_S = 8.0
PROBE_KIND = "gvprobe"


@dataclass
class PlatformChoice:
    """The platform in use and what every candidate did when tried (platform -> 'ok in 0.31 s' or why not)."""

    platform: str | None
    tried: dict[str, str] = field(default_factory=dict)
    requested: str = "auto"

    @property
    def reason(self) -> str:
        """Why no platform was chosen, one line."""
        detail = "; ".join(f"{p}: {why}" for p, why in self.tried.items()) or "runsc lists no platform"
        return f"no gVisor platform runs a sandbox here ({detail})"


def built_platforms(binary: str) -> list[str]:
    """Platforms this runsc was built with, from `runsc help platforms` (one name a line)."""
    proc = subprocess.run([binary, "help", "platforms"], capture_output=True, text=True, timeout=30)
    return [line.strip() for line in (proc.stdout + proc.stderr).splitlines()
            if line.strip() and " " not in line.strip()]


def probe(binary: str, platform: str, timeout: float = PROBE_TIMEOUT_S) -> str | None:
    """Run /bin/true in a sandbox on `platform`; None if it worked, else why not (one line)."""
    if platform == "kvm" and not os.access(KVM_DEVICE, os.R_OK | os.W_OK):
        return f"{KVM_DEVICE} is missing or not accessible"
    probe_id, state_dir = state.create(PROBE_KIND)
    cgroup = make_cgroup(probe_id)
    try:
        cgroup.create()
        argv = [binary, "--root", str(state_dir / "runtime"), f"--platform={platform}", "--network=none",
                "--ignore-cgroups", "do", "--quiet", "--", "/bin/true"]
        # `read` holds the command until it sits in the cgroup, so whatever it spawns starts there.
        proc = subprocess.Popen(["sh", "-c", 'read _ && exec "$@"', "isolab-gvprobe", *argv],
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                env={**os.environ, "TMPDIR": str(state_dir)}, text=True, errors="replace")
        cgroup.join(proc.pid)
        try:
            out, _ = proc.communicate("\n", timeout=timeout)
        except subprocess.TimeoutExpired:
            cgroup.kill_all()
            proc.communicate()
            return f"no answer within {timeout:g} s (killed){_kvm_note(platform)}"
        if proc.returncode != 0:
            last = out.strip().splitlines()[-1] if out.strip() else "no output"
            return f"runsc do /bin/true exited {proc.returncode}: {last[-300:]}"
        return None
    finally:
        cgroup.kill_all()
        cgroup.remove()
        sc.detach_all_under(state_dir)
        shutil.rmtree(state_dir, ignore_errors=True)


def _kvm_note(platform: str) -> str:
    """What is known about /dev/kvm when the kvm platform failed (runtime.vm.accel's host facts)."""
    if platform != "kvm":
        return ""
    from runtime.vm.accel import read_host_facts

    facts = read_host_facts()
    if facts.kvm_pvm:
        return f"; {KVM_DEVICE} is KVM-PVM (module kvm_pvm) here"
    if facts.hw_virt is None:
        return "; the CPU advertises neither vmx nor svm"
    return ""


_CHOICES: dict[tuple[str, str], PlatformChoice] = {}


def choose(binary: str, requested: str = "auto") -> PlatformChoice:
    """The platform to use: `requested` if it runs (else none), or for a group (GROUPS) the first of it, in
    PREFERENCE order, that runs. Cached per (binary, requested) for the life of the process."""
    key = (binary, requested)
    if key in _CHOICES:
        return _CHOICES[key]
    built = built_platforms(binary)
    if requested in GROUPS:
        candidates = [p for p in GROUPS[requested] if p in built]
    else:
        candidates = [requested]
    choice = PlatformChoice(None, requested=requested)
    for platform in candidates:
        if platform not in built:
            choice.tried[platform] = f"not built into this runsc (it has {', '.join(built) or 'none'})"
            continue
        t0 = time.perf_counter()
        why = probe(binary, platform)
        if why is None:
            choice.tried[platform] = f"ok (/bin/true in {time.perf_counter() - t0:.2f} s)"
            choice.platform = platform
            break
        choice.tried[platform] = why
    for platform in built:
        choice.tried.setdefault(platform, "not tried (a preferred platform runs)" if platform in candidates
                                else f"not tried ({requested} was asked for)")
    _CHOICES[key] = choice
    return choice
