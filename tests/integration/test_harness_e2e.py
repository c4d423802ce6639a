"""The harness end to end on native, for real: CLI run, results layout, report, and bad input."""

import json
import os
import subprocess
import sys
import types
from pathlib import Path

import pytest

from bench.config import RunConfig
from bench.results import RunStore
from bench.runner import execute
from scenarios import base as scenario_base
from scenarios.base import Range, Sample, check

ROOT = Path(__file__).resolve().parents[2]


def bench_cli(*args, tmp_path):
    env = {**os.environ, "ISOLAB_RESULTS_DIR": str(tmp_path / "results"),
           "ISOLAB_REPORTS_DIR": str(tmp_path / "reports"), "COLUMNS": "200"}
    return subprocess.run([sys.executable, "-m", "bench", *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=900)


def test_cpu_on_native_end_to_end(image, tmp_path):
    proc = bench_cli("run", "--platform", "native", "--scenario", "cpu", "--repetitions", "3", tmp_path=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "repetition 3/3" in proc.stdout  # progress is visible
    run_dir = next((tmp_path / "results").iterdir())
    samples = [json.loads(line) for line in (run_dir / "samples.jsonl").read_text().splitlines()]
    metrics = {s["metric"] for s in samples}
    assert metrics == {"sysbench_cpu_events_per_s", "stressng_matrix_bogo_ops_per_s"}
    per_variant = {}
    for s in samples:
        per_variant.setdefault((s["metric"], s["variant"]), []).append(s["value"])
    counts = {len(v) for v in per_variant.values()}
    assert len(counts) == 1 and 3 <= counts.pop() <= 6  # 3, extended up to 2 x 3 while CV > 5%
    assert all(min(v) > 0 for v in per_variant.values())
    env = json.loads((run_dir / "env.json").read_text())
    assert env["image"]["digest"] == image.digest and env["platforms"]["native"]["available"]
    info = env["platforms"]["native"]["info"]  # the platform described itself
    assert info["baseline"] and info["kind"] == "native" and info["mechanism"] == "chroot"
    assert (run_dir / "raw/native/cpu/rep1/sysbench-cpu-t1.txt").exists()
    report = tmp_path / "reports" / f"{run_dir.name}.html"
    assert report.exists() and f"report: {report}" in proc.stdout.replace("\n", "")
    assert "sysbench_cpu_events_per_s" in report.read_text()


@pytest.mark.parametrize("args, message", [
    (["--platform", "xen"], "isolab: error: unknown platform xen"),
    (["--scenario", "gpu"], "isolab: error: unknown scenario gpu"),
    (["--profile", "huge"], "isolab: error: unknown profile 'huge'"),
])
def test_bad_selection_is_one_line(tmp_path, args, message):
    proc = bench_cli("run", *args, tmp_path=tmp_path)
    assert proc.returncode == 2
    assert proc.stderr.strip() == message + proc.stderr.strip()[len(message):]
    assert len(proc.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "results").exists()


# These in-process tests exercise the sequential order's per-cell behaviour (test_interleaving.py covers the
# interleaved one).
SEQUENTIAL_NATIVE_FLAKY = {"platforms": ("native",), "scenarios": ("flaky",), "order": "sequential"}


def _flaky_scenario(fail_on_rep: int, missing_tool: str | None = None) -> types.ModuleType:
    """A scenario that measures for real and then, on one repetition, runs a command that fails."""
    module = types.ModuleType("scenarios.flaky")
    module.NAME, module.PROFILES = "flaky", {"quick": {}, "full": {}}
    module.METRICS, module.RANGES = {"events": ("events/s", ())}, {"events": Range("higher")}
    state = {"rep": 0}

    def prepare(instance, params):
        scenario_base.require_tools(instance, ["sysbench"] + ([missing_tool] if missing_tool else []))

    def run(instance, params, raw):
        state["rep"] += 1
        if state["rep"] == fail_on_rep:
            check(instance.exec(["sh", "-c", "echo 'disk on fire' >&2; exit 3"]), instance)
        result = check(instance.exec(["sysbench", "cpu", "--time=1", "run"]), instance)
        raw("sysbench.txt", result.stdout)
        return [Sample("events", 1.0 + state["rep"], "events/s")]

    module.prepare, module.run = prepare, run
    return module


@pytest.fixture
def flaky(monkeypatch):
    def install(module):
        monkeypatch.setitem(sys.modules, "scenarios.flaky", module)
        monkeypatch.setattr(scenario_base, "SCENARIOS", (*scenario_base.SCENARIOS, "flaky"))
    return install


def test_failing_tool_keeps_the_samples_already_written(image, tmp_path, flaky):
    flaky(_flaky_scenario(fail_on_rep=3))
    lines = []
    store = RunStore.create(tmp_path)
    result = execute(RunConfig(**SEQUENTIAL_NATIVE_FLAKY, repetitions=4), image, lines.append,
                     resume=_fresh(store))
    assert result.exit_code == 1
    assert result.failed == ["native × flaky: sh exited 3 on native: disk on fire"]
    assert [s.repetition for s in store.samples()] == [1, 2]
    assert any("FAILED after 2 of 4 repetitions: sh exited 3 on native: disk on fire" in line for line in lines)


def test_missing_tool_in_the_image_is_one_clear_error(image, tmp_path, flaky):
    flaky(_flaky_scenario(fail_on_rep=99, missing_tool="quantum-bench"))
    lines = []
    store = RunStore.create(tmp_path)
    result = execute(RunConfig(**SEQUENTIAL_NATIVE_FLAKY, repetitions=2), image, lines.append,
                     resume=_fresh(store))
    assert result.failed and result.failed[0].startswith("native × flaky: quantum-bench: not found in the image")
    assert store.samples() == []


def _fresh(store: RunStore) -> RunStore:
    """An empty run directory used through the resume path (so the test controls where it lives)."""
    store.write_run_info({"run_id": store.run_id, "config": {}, "status": "new"})
    return store


def _constant_or_noisy(values: list[float]) -> types.ModuleType:
    module = types.ModuleType("scenarios.flaky")
    module.NAME, module.PROFILES = "flaky", {"quick": {}, "full": {}}
    module.METRICS, module.RANGES = {"m": ("units", ())}, {"m": Range("higher")}
    state = {"rep": 0}

    def run(instance, params, raw):
        check(instance.exec(["true"]), instance)
        state["rep"] += 1
        return [Sample("m", values[(state["rep"] - 1) % len(values)], "units")]

    module.run = run
    return module


@pytest.mark.parametrize("values, expected", [([10.0], 3), ([10.0, 20.0, 5.0], 5)])
def test_repetitions_extend_while_cv_is_high(image, tmp_path, flaky, values, expected):
    flaky(_constant_or_noisy(values))
    store = _fresh(RunStore.create(tmp_path))
    config = RunConfig(**SEQUENTIAL_NATIVE_FLAKY, repetitions=3, max_repetitions=5)
    lines = []
    assert execute(config, image, lines.append, resume=store).exit_code == 0
    assert len(store.samples()) == expected
    assert any("extending: CV" in line for line in lines) == (expected > 3)
    timings = json.loads((store.path / "pytest-benchmark.json").read_text())["benchmarks"]
    assert timings[0]["stats"]["rounds"] == expected  # pytest-benchmark kept every timed round


def test_resume_skips_finished_cells(image, tmp_path, flaky):
    flaky(_constant_or_noisy([1.0]))
    store = _fresh(RunStore.create(tmp_path))
    config = RunConfig(**SEQUENTIAL_NATIVE_FLAKY, repetitions=3)
    store.write_run_info({"run_id": store.run_id, "config": config.to_dict(), "status": "interrupted"})
    assert execute(config, image, print, resume=store).exit_code == 0
    assert len(store.samples()) == 3
    lines = []
    assert execute(config, image, lines.append, resume=store).exit_code in (0, 5)  # nothing left to run
    assert len(store.samples()) == 3
    assert any("1 finished cell(s) kept, 0 to run" in line for line in lines)


def test_failure_in_an_extension_round_keeps_the_cell(image, tmp_path, flaky):
    flaky(_flaky_scenario(fail_on_rep=3))  # values 2, 3 differ (CV > 5%): round 3 is an extension
    store = _fresh(RunStore.create(tmp_path))
    config = RunConfig(**SEQUENTIAL_NATIVE_FLAKY, repetitions=2, max_repetitions=4)
    result = execute(config, image, print, resume=store)
    assert result.exit_code == 0 and not result.failed
    outcome = store.outcomes()[-1]
    assert outcome.status == "ok" and outcome.repetitions == 2
    assert outcome.reason == "stopped extending after 2 repetitions: sh exited 3 on native: disk on fire"
