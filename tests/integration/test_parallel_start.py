"""Containers created from a thread pool, as the startup scenario does: 8 at once, 100 rounds, with no hang
and no leak (this process's fds and threads, cgroups, mounts, links, netns, state dirs, address books).

Every fourth round the 8 containers are on the suite bridge (veths and addresses handed out under the
bridge's lock at the same time). A round that does not finish within its deadline is a hang."""

from __future__ import annotations

import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from runtime.container.platform import ContainerPlatform
from runtime.naming import SCRATCH_ROOT, STATE_ROOT
from runtime.network.bridge import NET_STATE
from runtime.platform import Instance
from runtime.spec import InstanceSpec

ROUNDS = int(os.environ.get("ISOLAB_PARALLEL_ROUNDS", "100"))
WORKERS = 8
ROUND_DEADLINE_S = 120.0


def _traces(ids: set[str]) -> list[str]:
    """Anything on the host still named after one of these instances."""
    tokens = {i.rsplit("-", 1)[-1] for i in ids}
    found = [line for line in open("/proc/self/mountinfo") if any(t in line for t in tokens)]
    found += [str(p) for p in Path("/sys/fs/cgroup").glob("*/isolab/*") if p.name in ids]
    found += [p.name for p in Path("/sys/class/net").iterdir() if p.name[3:11] in tokens]
    netns = Path("/run/netns")
    found += [p.name for p in netns.iterdir() if p.name[3:11] in tokens] if netns.is_dir() else []
    found += [str(root / i) for root in (STATE_ROOT, SCRATCH_ROOT) for i in ids if (root / i).exists()]
    for book in NET_STATE.glob("*.json") if NET_STATE.is_dir() else []:
        found += [f"{book.name}: {i}" for i in ids if i in book.read_text()]
    return found


def _start(platform: ContainerPlatform, spec: InstanceSpec) -> Instance:
    instance = platform.create(spec)
    try:
        result = instance.exec(["true"], timeout=60)
        assert result.ok, result.stderr
    except BaseException:
        instance.destroy()
        raise
    return instance


def test_parallel_starts_do_not_hang_or_leak(image, require_root):
    platform = ContainerPlatform(image)
    platform.check_available()
    with ThreadPoolExecutor(max_workers=WORKERS) as pool:  # warm-up: imports, cgroup parents, the bridge
        for instance in [f.result(timeout=ROUND_DEADLINE_S) for f in
                         [pool.submit(_start, platform, InstanceSpec(network="bridge")) for _ in range(2)]]:
            instance.destroy()
    fds = sorted(os.listdir("/proc/self/fd"))
    threads = len(os.listdir("/proc/self/task"))
    ids: set[str] = set()
    slowest = 0.0
    began = time.monotonic()
    with ThreadPoolExecutor(max_workers=WORKERS) as pool:
        for round_no in range(ROUNDS):
            spec = InstanceSpec(network="bridge" if round_no % 4 == 3 else "none")
            started = time.monotonic()
            futures = [pool.submit(_start, platform, spec) for _ in range(WORKERS)]
            instances, errors = [], []
            for future in futures:
                try:
                    instances.append(future.result(timeout=max(1.0, started + ROUND_DEADLINE_S - time.monotonic())))
                except BaseException as exc:  # TimeoutError here is a hang
                    errors.append(exc)
            ids |= {i.instance_id for i in instances}
            for done in [pool.submit(i.destroy) for i in instances]:
                done.result(timeout=ROUND_DEADLINE_S)
            assert not errors, f"round {round_no}: {len(errors)} of {WORKERS} starts failed: {errors[0]!r}"
            slowest = max(slowest, time.monotonic() - started)
    elapsed = time.monotonic() - began
    print(f"{ROUNDS} rounds x {WORKERS} parallel starts in {elapsed:.1f} s, slowest round {slowest:.2f} s")
    assert len(ids) == ROUNDS * WORKERS
    assert sorted(os.listdir("/proc/self/fd")) == fds, "file descriptors leaked"
    deadline = time.monotonic() + 5  # a joined thread's task may take a moment to leave /proc
    while len(os.listdir("/proc/self/task")) > threads and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(os.listdir("/proc/self/task")) <= threads, f"threads leaked: {threading.enumerate()}"
    assert _traces(ids) == []


@pytest.fixture(autouse=True)
def _no_stray_children():
    yield
    assert os.waitpid(-1, os.WNOHANG) == (0, 0) if _has_children() else True


def _has_children() -> bool:
    try:
        return bool(open(f"/proc/{os.getpid()}/task/{os.getpid()}/children").read().split())
    except OSError:
        return False
