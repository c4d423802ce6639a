"""kill -9 of a real run during its container cell, `cleanup`, `--resume`: the resumed cell starts clean.

The bug this guards against: the killed attempt's repetition-1 samples stayed beside the redone
cell's (n = 4 where an uninterrupted run has 3). Here the native cell finishes uninterrupted in the
same run, so its sample count is the reference.
"""

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

ROOT = Path(__file__).resolve().parents[2]
REPS = 3


def _env(tmp_path: Path) -> dict[str, str]:
    return {**os.environ, "ISOLAB_RESULTS_DIR": str(tmp_path / "results"),
            "ISOLAB_REPORTS_DIR": str(tmp_path / "reports"), "COLUMNS": "200"}


def _bench(tmp_path: Path, *args: str, timeout: float = 1800) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "bench", *args], cwd=ROOT, env=_env(tmp_path),
                          capture_output=True, text=True, timeout=timeout)


def _lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.exists() else []


def _wait_for(condition, timeout: float, proc: subprocess.Popen, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        if proc.poll() is not None:
            out = proc.stdout.read() if proc.stdout else ""
            pytest.fail(f"the run ended (exit {proc.returncode}) before {what}:\n{out[-3000:]}")
        time.sleep(0.2)
    pytest.fail(f"timed out waiting for {what}")


def test_kill_9_during_the_container_cell_then_cleanup_and_resume(image, tmp_path):
    log = open(tmp_path / "run.log", "w+")
    proc = subprocess.Popen(
        [sys.executable, "-m", "bench", "run", "--order", "sequential", "--platform", "native,container",
         "--scenario", "cpu", "--repetitions", str(REPS), "--max-repetitions", str(REPS), "--no-report"],
        cwd=ROOT, env=_env(tmp_path), stdout=log, stderr=subprocess.STDOUT, text=True)
    try:
        results = tmp_path / "results"
        _wait_for(lambda: results.is_dir() and any(results.iterdir()), 600, proc, "the run directory appeared")
        run_dir = next(results.iterdir())
        samples_file = run_dir / "samples.jsonl"
        _wait_for(lambda: any(s["platform"] == "container" for s in _lines(samples_file)), 1500, proc,
                  "the container cell stored its first repetition")
        os.kill(proc.pid, signal.SIGKILL)  # mid-cell: repetition 2 of the container is running
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        log.seek(0)
        progress = log.read()
        log.close()
    assert proc.returncode == -signal.SIGKILL, progress[-2000:]

    killed = RunStore.open(str(run_dir))
    on_disk = Counter(s["platform"] for s in _lines(samples_file))
    assert on_disk["container"] > 0  # the killed attempt's repetition 1 is in the file...
    assert {s.platform for s in killed.samples()} == {"native"}  # ...but an attempt without an outcome is not read
    assert [o.platform for o in killed.outcomes()] == ["native"]

    cleanup = _bench(tmp_path, "cleanup", timeout=600)
    assert cleanup.returncode == 0, cleanup.stdout + cleanup.stderr

    resumed = _bench(tmp_path, "run", "--resume", run_dir.name, "--no-report")
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert "1 finished cell(s) kept, 1 to run" in resumed.stdout
    assert f"dropped {on_disk['container']} sample(s) of cell attempts that did not finish" in resumed.stdout

    store = RunStore.open(str(run_dir))
    samples = store.samples()
    per_platform = Counter(s.platform for s in samples)
    per_rep = Counter((s.platform, s.repetition) for s in samples)
    native_per_rep = per_rep[("native", 1)]
    assert native_per_rep > 0
    assert per_platform == {"native": REPS * native_per_rep, "container": REPS * native_per_rep}  # n = 3, not 4
    assert {rep for platform, rep in per_rep if platform == "container"} == set(range(1, REPS + 1))
    per_variant = Counter((s.platform, s.metric, s.variant) for s in samples)
    assert set(per_variant.values()) == {REPS}
    assert len(_lines(samples_file)) == len(samples)  # the killed attempt's samples are gone from the file too
    outcome = {o.platform: o for o in store.outcomes()}
    assert outcome["container"].status == "ok" and outcome["container"].repetitions == REPS
    assert {s.attempt for s in samples if s.platform == "container"} == {outcome["container"].attempt}
    assert store.run_info()["status"] == "complete"
    assert sorted(p.name for p in (run_dir / "raw" / "container" / "cpu").iterdir()) == [
        f"rep{n}" for n in range(1, REPS + 1)]
