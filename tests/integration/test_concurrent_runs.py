"""Two `python -m bench run` at the same time on one host: both complete with the same, complete set of
samples (instance names, bridge addresses, nat publications and "last one out removes the bridge" are
shared between them under runtime.state's locks), and together they leave nothing behind, without any
cleanup. One repetition per cell to keep the CI time modest."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
from hostobjects import REPO, leftovers
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
    for name, log, proc in procs:
        code = proc.wait(timeout=1200)
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
    assert leftovers() == []
