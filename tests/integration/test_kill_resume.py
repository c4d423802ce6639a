"""kill -9 of `python -m bench run` at seeded random moments, then `python -m bench cleanup`: nothing isolab made
is left (processes, mounts, cgroups, links, netns, nft table, domains, state and scratch dirs, partial image
builds); `--resume` then finishes the run with as many samples as an uninterrupted run.

One chain of kills on native,container x cpu (two repetitions per cell, so that a kill can fall after a
stored repetition, whose samples the resumed cell must not keep): kill points at a random time, while a
container starts, while a tool (sysbench, stress-ng) runs natively and in a container, and while the
report is written; each is followed by cleanup, the leftover check and a resume that is killed at the
next point, until a resume finishes. Separately: one kill while a VM boots (TCG is slow: one kill point)
and one during an image build (in a private cache dir). The seed is printed; set
ISOLAB_KILL_SEED to replay a sequence.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest
from hostobjects import bench_env as _env
from hostobjects import leftovers, owned_tokens

from runtime import state
from runtime.linux.process import process_cmdline, process_root, processes
from runtime.naming import CGROUP_PARENT, STATE_ROOT, VM_STATE_ROOT

REPO = Path(__file__).resolve().parents[2]
SEED = int(os.environ.get("ISOLAB_KILL_SEED", str(int(time.time()) % 100000)))
# --max-repetitions 2: no CV-driven extension, so the killed-and-resumed run's sample counts can be compared with
# the plain run's (with extension up to 4, one run extended and the other did not: 8 vs 4 samples per metric)
RUN = ["--platform", "native,container", "--scenario", "cpu", "--profile", "quick", "--repetitions", "2",
       "--max-repetitions", "2"]

pytestmark = [pytest.mark.root, pytest.mark.image]


# ---- driving `python -m bench` ----------------------------------------------------------------------------

def _bench(args: list[str], results: Path, log: Path, **extra: str) -> subprocess.Popen[bytes]:
    with open(log, "ab") as out:
        return subprocess.Popen([sys.executable, "-m", "bench", *args], cwd=REPO, env=_env(results, **extra),
                                stdout=out, stderr=subprocess.STDOUT)


def _cleanup(results: Path, **extra: str) -> str:
    done = subprocess.run([sys.executable, "-m", "bench", "cleanup"], cwd=REPO, env=_env(results, **extra),
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def _owned_by(pid: int, kind: str, root: Path = STATE_ROOT) -> list[Path]:
    return [p for p in state.instances(root, kind) if state.owner_pid(p) == pid]


def _tool_running(pid: int) -> bool:
    """A workload (sysbench, stress-ng) of this run is running natively or in a container."""
    for other in processes():
        if open_comm(other) not in ("sysbench", "stress-ng", "stress-ng-matri"):
            continue
        root = process_root(other) or ""
        if any(root.startswith(f"{p}/") for p in _owned_by(pid, "nat")):
            return True
        cgroup = _read(f"/proc/{other}/cgroup")
        if any(f"/{CGROUP_PARENT}/{p.name}" in cgroup for p in _owned_by(pid, "ct")):
            return True
    return False


def open_comm(pid: int) -> str:
    return _read(f"/proc/{pid}/comm").strip()


def _read(path: str) -> str:
    try:
        return Path(path).read_text()
    except OSError:
        return ""


def _status(results: Path) -> str:
    runs = sorted(results.glob("*/run.json"))
    return str(json.loads(runs[-1].read_text()).get("status")) if runs else ""


#: kill point name -> (condition on the run's pid and results dir, delay range after it holds, in seconds)
Trigger = tuple[Callable[[int, Path], bool], tuple[float, float]]
TRIGGERS: dict[str, Trigger] = {
    "container start": (lambda pid, _r: bool(_owned_by(pid, "ct")), (0.0, 0.05)),
    "inside a tool (native or container)": (lambda pid, _r: _tool_running(pid), (0.0, 2.0)),
    "report": (lambda _pid, r: _status(r) in ("complete", "failed"), (0.0, 0.5)),
}


def _kill_at(proc: subprocess.Popen[bytes], point: str, results: Path, rng: random.Random, budget_s: float,
             tokens: set[str]) -> str:
    """Wait for the kill point, SIGKILL the run there; returns what happened. `tokens` collects the ids of
    the instances the run owned meanwhile (what it may leave behind when killed)."""
    began = time.monotonic()
    def after(_pid: int, _results: Path) -> bool:
        return time.monotonic() - began >= float(point[3:-2])

    condition, delay = (after, (0.0, 0.0)) if point.startswith("at ") else TRIGGERS[point]
    while time.monotonic() - began < budget_s:
        if proc.poll() is not None:
            return f"{point}: the run ended (exit {proc.returncode}) before the kill point"
        tokens |= owned_tokens({proc.pid})
        if condition(proc.pid, results):
            time.sleep(rng.uniform(*delay))
            if proc.poll() is not None:
                return f"{point}: the run ended (exit {proc.returncode}) before the kill point"
            tokens |= owned_tokens({proc.pid})
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            return f"{point}: killed after {time.monotonic() - began:.2f} s"
        time.sleep(0.005)
    raise AssertionError(f"kill point {point!r} not reached in {budget_s:.0f} s")


def _sample_counts(results: Path) -> Counter[tuple[str, str, str]]:
    counts: Counter[tuple[str, str, str]] = Counter()
    for run in results.glob("*/samples.jsonl"):
        for line in run.read_text().splitlines():
            if line.strip():
                sample = json.loads(line)
                counts[(sample["platform"], sample["scenario"], sample["metric"])] += 1
    return counts


# ---- the tests ----------------------------------------------------------------------------------------------

def test_kill_anywhere_then_cleanup_and_resume(image, require_root, tmp_path):
    rng = random.Random(SEED)
    print(f"kill test seed {SEED} (ISOLAB_KILL_SEED={SEED} replays it)")
    baseline = tmp_path / "baseline"
    log = tmp_path / "bench.log"
    began = time.monotonic()
    plain = _bench(["run", *RUN, "--no-report"], baseline, log)
    assert plain.wait(timeout=900) == 0, log.read_text()[-3000:]
    duration = time.monotonic() - began
    expected = _sample_counts(baseline)
    assert expected

    tool = "inside a tool (native or container)"
    points = [f"at {rng.uniform(0.5, duration * 0.4):.2f} s", tool, "container start", tool, "container start",
              f"at {rng.uniform(1.0, 8.0):.2f} s", tool, "report"]  # with the VM and image-build tests: 10
    results = tmp_path / "killed"
    log = tmp_path / "killed.log"
    report: list[str] = []
    run_id = None
    for point in points:
        args = ["run", *RUN] if run_id is None else ["run", "--resume", run_id]
        proc = _bench(args, results, log)
        tokens: set[str] = set()
        outcome = _kill_at(proc, point, results, rng, budget_s=600, tokens=tokens)
        runs = sorted(results.glob("*/run.json"))
        run_id = runs[-1].parent.name if runs else None
        removed = _cleanup(results)
        left = leftovers(results, tokens)
        report.append(f"{outcome}; cleanup: {removed.strip().splitlines()[-1] if removed.strip() else '-'}; "
                      f"left: {left}")
        assert left == [], f"after kill point {outcome}: {left}"
    while True:  # the last resume runs to the end
        args = ["run", *RUN] if run_id is None else ["run", "--resume", run_id]
        proc = _bench(args, results, log)
        assert proc.wait(timeout=900) == 0, log.read_text()[-3000:]
        if run_id is not None:
            break
        run_id = sorted(results.glob("*/run.json"))[-1].parent.name
    print("\n".join(report))
    assert _status(results) == "complete"
    assert _sample_counts(results) == expected
    assert not [p for p in processes() if any(str(results) in a for a in process_cmdline(p))]


def _domain_of(pid: int) -> bool:
    names = subprocess.run(["virsh", "-c", "qemu:///system", "list", "--all", "--name"], capture_output=True,
                           text=True, timeout=60).stdout.split()
    return any(f"isolab-{p.name}" in names for p in _owned_by(pid, "vm", VM_STATE_ROOT))


@pytest.mark.vm
def test_kill_during_vm_boot_then_cleanup(image, require_root, tmp_path):
    """One kill while a VM boots (expensive under TCG): the domain, its overlay and tap go with cleanup."""
    import shutil

    if shutil.which("virsh") is None or shutil.which("qemu-system-x86_64") is None:
        pytest.skip("no libvirt/QEMU on this host")
    from runtime.errors import PlatformUnavailable
    from runtime.vm.platform import VmPlatform

    try:
        VmPlatform(image).check_available()
    except PlatformUnavailable as exc:
        pytest.skip(str(exc))
    rng = random.Random(SEED + 1)
    results, log = tmp_path / "vm", tmp_path / "vm.log"
    proc = _bench(["run", "--platform", "vm", "--scenario", "cpu", "--profile", "quick", "--repetitions", "1",
                   "--no-report"], results, log)
    began = time.monotonic()
    while not _domain_of(proc.pid):  # defined: libvirtd has it (an in-flight define could land after cleanup)
        assert proc.poll() is None, log.read_text()[-2000:]
        assert time.monotonic() - began < 300, "the VM was never defined"
        time.sleep(0.05)
    time.sleep(rng.uniform(0.0, 3.0))  # somewhere in QEMU start / kernel / init / agent
    tokens = owned_tokens({proc.pid})
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    removed = _cleanup(results)
    assert "domain isolab-vm-" in removed
    assert leftovers(results, tokens) == []


def test_kill_during_image_build_then_cleanup(require_root, tmp_path):
    """An image build killed in debootstrap (in a private cache dir): cleanup kills what the build left
    running, detaches its mounts and removes the partial tree."""
    import shutil

    if shutil.which("debootstrap") is None:
        pytest.skip("debootstrap is not installed")
    rng = random.Random(SEED + 2)
    cache, log = tmp_path / "cache", tmp_path / "build.log"
    proc = _bench(["image", "build"], tmp_path / "results", log, ISOLAB_CACHE_DIR=str(cache))
    began = time.monotonic()
    while not list(cache.glob("images/*.partial-*/rootfs/debootstrap")):  # debootstrap at work
        assert proc.poll() is None, log.read_text()[-2000:]
        assert time.monotonic() - began < 120, "the build never started"
        time.sleep(0.05)
    time.sleep(rng.uniform(2.0, 10.0))
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    _cleanup(tmp_path / "results", ISOLAB_CACHE_DIR=str(cache))
    assert not list((cache / "images").glob("*.partial-*"))
    assert not [line for line in open("/proc/self/mountinfo") if str(cache) in line]
    assert not [pid for pid in processes() if any(str(cache) in a for a in process_cmdline(pid))
                or (process_root(pid) or "").startswith(str(cache))]
