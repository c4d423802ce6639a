"""Two `python -m bench run` at the same time on one host: both complete with the same, complete set of
samples (instance names, bridge addresses, nat publications and "last one out removes the bridge" are
shared between them under runtime.state's locks), and together they leave nothing behind, without any
cleanup. One repetition per cell to keep the CI time modest."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
from hostobjects import REPO, leftovers, owned_tokens
from hostobjects import bench_env as _env

RUN = ["run", "--platform", "native,container", "--scenario", "network", "--profile", "quick",
       "--repetitions", "1", "--no-report"]

pytestmark = [pytest.mark.root, pytest.mark.image]


def _counts(results: Path) -> Counter[tuple[str, str, str]]:
    counts: Counter[tuple[str, str, str]] = Counter()
    for line in next(results.glob("*/samples.jsonl")).read_text().splitlines():
        sample = json.loads(line)
        counts[(sample["platform"], str(sample.get("variant")), sample["metric"])] += 1
    return counts


def test_two_runs_at_once_both_complete_and_leave_nothing(image, require_root, tmp_path):
    procs = []
    began = time.monotonic()
    for name in ("a", "b"):
        log = open(tmp_path / f"{name}.log", "wb")
        procs.append((name, log, subprocess.Popen([sys.executable, "-m", "bench", *RUN], cwd=REPO,
                                                   env=_env(tmp_path / name), stdout=log, stderr=subprocess.STDOUT)))
    tokens: set[str] = set()  # the instances the two runs make, seen while they run
    pids = {proc.pid for _n, _l, proc in procs}
    while any(proc.poll() is None for _n, _l, proc in procs) and time.monotonic() - began < 1200:
        tokens |= owned_tokens(pids)
        time.sleep(0.01)
    for name, log, proc in procs:
        code = proc.wait(timeout=60)
        log.close()
        assert code == 0, (tmp_path / f"{name}.log").read_text()[-3000:]
    print(f"two concurrent runs finished in {time.monotonic() - began:.1f} s")
    a, b = _counts(tmp_path / "a"), _counts(tmp_path / "b")
    assert a == b and a
    for name in ("a", "b"):
        run = next((tmp_path / name).glob("*/run.json"))
        assert json.loads(run.read_text())["status"] == "complete"
        modes = "".join(p.read_text() for p in run.parent.rglob("network-modes.log"))
        assert all(f"{mode}: measured" in modes for mode in ("bridge", "host", "nat")), modes
    assert tokens and leftovers(tokens=tokens) == []


LIVE_RUN = """
import sys, time
from runtime.container.container import Container
from runtime.image.build import ensure_image
from runtime.native import NativePlatform
from runtime.network.bridge import ensure_bridge
from runtime.network.peer import PeerNamespace
from runtime.spec import InstanceSpec
image = ensure_image()
c = Container(InstanceSpec(network="bridge"), [image.rootfs]).start()
n = NativePlatform(image).create(InstanceSpec())
p = PeerNamespace(ensure_bridge(), image)
print(c.instance_id, n.instance_id, p.peer_id, p.netns, c.network.host_link, flush=True)
time.sleep(120)
"""


def test_cleanup_beside_a_live_run_spares_it_and_removes_it_once_dead(image, require_root):
    """`python -m bench cleanup` while another process runs a bridged container, a native instance and a
    peer: none of their objects is touched (the container still answers over its veth); after that
    process is SIGKILLed, the next cleanup removes them all."""
    import signal

    from runtime.naming import STATE_ROOT

    proc = subprocess.Popen([sys.executable, "-c", LIVE_RUN], cwd=REPO, env=_env(Path("/nonexistent")),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()  # type: ignore[union-attr]
        assert line, proc.stderr.read() if proc.stderr else ""
        ct, nat, peer, netns, veth = line.split()
        objects = [STATE_ROOT / ct, STATE_ROOT / nat, STATE_ROOT / peer, Path("/run/netns") / netns,
                   Path("/sys/class/net") / veth, *Path("/sys/fs/cgroup").glob(f"*/isolab/{ct}")]
        done = subprocess.run([sys.executable, "-m", "bench", "cleanup"], cwd=REPO, env=_env(Path("/nonexistent")),
                              capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr
        assert not [o for o in objects if not o.exists()], done.stdout
        assert not [name for name in (ct, nat, peer, netns, veth) if name in done.stdout], done.stdout
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    done = subprocess.run([sys.executable, "-m", "bench", "cleanup"], cwd=REPO, env=_env(Path("/nonexistent")),
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert not [o for o in objects if o.exists()], done.stdout
    assert not [pid for pid in os.listdir("/proc") if pid.isdigit()
                and (Path(f"/proc/{pid}/cgroup").exists() and f"/isolab/{ct}" in _read(f"/proc/{pid}/cgroup"))]


def _read(path: str) -> str:
    try:
        return Path(path).read_text()
    except OSError:
        return ""
