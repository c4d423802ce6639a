"""Run a configured set of cells through pytest, into a results directory; resume an interrupted run.

A resume keeps the cells with a final outcome and redoes the others from a clean slate: samples and raw
outputs of their unfinished attempts are removed first (RunStore.drop_unfinished). Every file of the run
is fsynced before run.json says the run is complete.
"""

from __future__ import annotations

import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from bench import envinfo
from bench.config import RunConfig
from bench.harness import Harness, Say
from bench.results import SCHEMA_VERSION, RunStore, write_json_atomic
from runtime.errors import IsolabError
from runtime.image.store import Image

CELLS_MODULE = Path(__file__).with_name("cells.py")


@dataclass(frozen=True)
class RunResult:
    store: RunStore
    exit_code: int  # pytest's: 0 all ok, 1 some cell failed, 2 interrupted
    failed: list[str]
    skipped: list[str]


def _sigterm_as_interrupt(_signum: int, _frame: object) -> None:
    raise KeyboardInterrupt("SIGTERM")


def execute(config: RunConfig, image: Image, say: Say, *, resume: RunStore | None = None,
            command_line: list[str] | None = None) -> RunResult:
    store = resume or RunStore.create()
    skip = resume.finished_cells() if resume else set()
    if resume:
        dropped = resume.drop_unfinished(keep_raw_of=skip)
        if dropped:
            say(f"resuming {store.run_id}: dropped {dropped} sample(s) of cell attempts that did not finish")
    info = {"schema": SCHEMA_VERSION, "run_id": store.run_id, "config": config.to_dict(),
            "command_line": command_line or sys.argv,
            "image": image.digest, "started_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "status": "running"}
    if resume:
        info = {**store.run_info(), "schema": SCHEMA_VERSION, "status": "running",
                "resumed_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    store.write_run_info(info)
    harness = Harness(config, store, image, say, skip_cells=skip)
    if skip:
        say(f"resuming {store.run_id}: {len(skip)} finished cell(s) kept, "
            f"{len(config.cells()) - len(skip)} to run")
    _write_env(store, config, image, harness, command_line or sys.argv)

    previous = signal.signal(signal.SIGTERM, _sigterm_as_interrupt)
    try:
        code = pytest.main(
            [str(CELLS_MODULE), "-q", "-s", "-p", "no:cacheprovider", "--rootdir", str(CELLS_MODULE.parent),
             "-o", "addopts=", "-o", "testpaths=",
             f"--benchmark-json={store.path / 'pytest-benchmark.json'}",
             "--benchmark-columns=min,median,max,rounds", "--benchmark-sort=name"],
            plugins=[harness])
    finally:
        signal.signal(signal.SIGTERM, previous)
        _write_env(store, config, image, harness, command_line or sys.argv)  # now with platforms' facts
    outcomes = {(o.platform, o.scenario): o for o in store.outcomes()}
    failed = [f"{p} × {s}: {o.reason}" for (p, s), o in outcomes.items() if o.status == "failed"]
    skipped = [f"{p} × {s}: {o.reason}" for (p, s), o in outcomes.items() if o.status == "skipped"]
    status = "interrupted" if code == pytest.ExitCode.INTERRUPTED else ("failed" if failed else "complete")
    store.sync()  # every results file on disk before run.json says so
    store.write_run_info({**store.run_info(), "status": status,
                          "finished_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())})
    return RunResult(store, int(code), failed, skipped)


def _write_env(store: RunStore, config: RunConfig, image: Image, harness: Harness, command_line: list[str]) -> None:
    platforms: dict[str, dict[str, object]] = {}
    for name in config.platforms:
        try:
            platform = harness.platform(name)
        except IsolabError as exc:
            platforms[name] = {"available": False, "reason": str(exc)}
            continue
        facts: dict[str, object] = {"available": True}
        try:  # a probe must not lose a run
            facts["info"] = platform.describe().to_dict()
        except Exception as exc:
            facts["info_error"] = str(exc)
        try:
            facts.update(platform.environment())
        except Exception as exc:
            facts["environment_error"] = str(exc)
        platforms[name] = facts
    env = envinfo.capture(image.manifest, platforms, command_line)
    store.write_env(env)
    write_json_atomic(store.path / "image-manifest.json", image.manifest)
