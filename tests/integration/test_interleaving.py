"""The interleaved design for real: an idle container is frozen while another platform is measured
(its processes use no CPU), and a killed interleaved run resumes at the block after the last one it
finished, with the same sample count as an uninterrupted run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from bench.results import RunStore
from runtime.container.platform import ContainerPlatform
from runtime.linux.process import tree_cpu_seconds
from runtime.spec import InstanceSpec

ROOT = Path(__file__).resolve().parents[2]
REPS = 3
pytestmark = [pytest.mark.root, pytest.mark.image]


def test_frozen_container_uses_no_cpu(image, require_root):
    with ContainerPlatform(image).create(InstanceSpec()) as box:
        assert box.exec(["sh", "-c", "(while :; do :; done) >/dev/null 2>&1 &"], timeout=60).ok
        pids = box.host_pids()
        time.sleep(0.5)
        assert box.quiesce() == "cgroup freezer"
        before = tree_cpu_seconds(pids)
        time.sleep(1.5)
        frozen = tree_cpu_seconds(pids) - before
        box.wake()
        before = tree_cpu_seconds(pids)
        time.sleep(1.5)
        running = tree_cpu_seconds(pids) - before
        assert box.exec(["true"], timeout=60).ok
        assert box.quiesce() and box.exec is not None  # destroy must work on a frozen container too
    assert frozen < 0.02, f"a frozen container used {frozen:.3f} s of CPU in 1.5 s"
    assert running > 0.3, f"the thawed busy loop used only {running:.3f} s of CPU in 1.5 s"


def _env(tmp_path: Path) -> dict[str, str]:
    return {**os.environ, "ISOLAB_RESULTS_DIR": str(tmp_path / "results"),
            "ISOLAB_REPORTS_DIR": str(tmp_path / "reports"), "COLUMNS": "200"}


def _lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.exists() else []


def test_killed_interleaved_run_resumes_at_the_next_block(image, tmp_path):
    args = ["--platform", "native,container", "--scenario", "cpu", "--repetitions", str(REPS),
            "--max-repetitions", str(REPS), "--no-report"]
    log = open(tmp_path / "run.log", "w+")
    proc = subprocess.Popen([sys.executable, "-m", "bench", "run", *args], cwd=ROOT, env=_env(tmp_path),
                            stdout=log, stderr=subprocess.STDOUT, text=True)
    try:
        results = tmp_path / "results"
        deadline = time.monotonic() + 1200
        run_dir = None
        while time.monotonic() < deadline and proc.poll() is None:
            dirs = list(results.iterdir()) if results.is_dir() else []
            if dirs and len(_lines(dirs[0] / "blocks.jsonl")) >= 1:
                run_dir = dirs[0]
                break
            time.sleep(0.2)
        assert run_dir is not None, "block 1 never finished"
        time.sleep(1.0)  # into block 2
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        log.seek(0)
        progress = log.read()
        log.close()
    assert proc.returncode == -signal.SIGKILL, progress[-2000:]
    finished = len(_lines(run_dir / "blocks.jsonl"))
    assert finished < REPS

    def bench(*extra: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "bench", *extra], cwd=ROOT, env=_env(tmp_path),
                              capture_output=True, text=True, timeout=1800)

    assert bench("cleanup").returncode == 0
    resumed = bench("run", "--resume", run_dir.name, "--no-report")
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    assert f"resuming at block {finished + 1}" in resumed.stdout

    store = RunStore.open(str(run_dir))
    blocks = [b["block"] for b in store.blocks()]
    assert blocks == list(range(1, REPS + 1))  # each block once, in order, across the kill
    assert len({b["attempt"] for b in store.blocks()}) == 1  # the resume continued the same attempt
    samples = store.samples()
    per_block = Counter((s.platform, s.metadata["block"]) for s in samples)
    per_platform_block = set(per_block.values())
    assert len(per_platform_block) == 1  # every platform has the same samples in every block
    assert {block for _, block in per_block} == set(range(1, REPS + 1))
    assert len(_lines(run_dir / "samples.jsonl")) == len(samples)  # the cut block's samples are gone
    outcomes = {o.platform: o for o in store.outcomes()}
    assert {p: o.status for p, o in outcomes.items()} == {"native": "ok", "container": "ok"}
    assert all(o.repetitions == REPS for o in outcomes.values())
