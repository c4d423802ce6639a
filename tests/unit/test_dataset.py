"""Damaged or old results directories load what they can, and the report says what is missing."""

import json

from bench import dataset
from bench.results import CellOutcome, RunStore, SampleRecord
from reporting.html import build


def make_run(root, run_id="r1", *, schema=2, scenarios=("cpu", "memory"), hostname="hostA", values=(100.0,)):
    store = RunStore.create(root, run_id)
    info = {"run_id": run_id, "status": "complete",
            "config": {"profile": "quick", "reps": 3, "platforms": ["base", "box"], "scenarios": list(scenarios)}}
    if schema is not None:
        info["schema"] = schema
    store.write_run_info(info)
    store.write_env({"host": {"hostname": hostname, "kernel": "6.1"}, "cpu": {}, "memory_bytes": 2**30,
                     "command_line": ["x"], "platforms": {}})
    for platform, factor in (("base", 1.0), ("box", 0.5)):
        for rep in (1, 2, 3):
            for base in values:
                store.add_sample(SampleRecord(run_id, platform, "cpu", "sysbench_cpu_events_per_s",
                                              factor * base + rep, "events/s", rep, {"threads": 1}))
        store.add_outcome(CellOutcome(platform, "cpu", "ok", repetitions=3))
    return store


def test_a_whole_run_loads_without_problems(tmp_path):
    data = dataset.load(make_run(tmp_path, scenarios=("cpu",)).path)
    assert data.problems == []
    assert len(data.samples) == 6 and data.hosts == {"r1": "hostA"}


def test_corrupt_line_is_skipped_and_named(tmp_path):
    store = make_run(tmp_path, scenarios=("cpu",))
    path = store.path / "samples.jsonl"
    lines = path.read_text().splitlines()
    lines.insert(2, '{"platform": "box", "metric": garbage')
    lines.insert(4, json.dumps({**json.loads(lines[0]), "value": "NaN"}))
    path.write_text("\n".join(lines) + "\n")
    data = dataset.load(store.path)
    assert len(data.samples) == 6
    assert any("line 3 is not JSON" in p for p in data.problems)
    assert any("not a number" in p and "line 5" in p for p in data.problems)
    text = build(store, tmp_path / "reports").read_text()
    assert "Missing or unreadable results" in text and "line 3 is not JSON" in text
    assert "sysbench_cpu_events_per_s" in text  # the rest is still reported


def test_non_finite_values_are_not_used(tmp_path):
    store = make_run(tmp_path, scenarios=("cpu",))
    with open(store.path / "samples.jsonl", "a") as out:
        out.write(json.dumps({**json.loads((store.path / "samples.jsonl").read_text().splitlines()[0]),
                              "value": float("inf")}) + "\n")
    data = dataset.load(store.path)
    assert len(data.samples) == 6 and any("not a finite number" in p for p in data.problems)


def test_missing_area_is_named(tmp_path):
    store = make_run(tmp_path, scenarios=("cpu", "disk"))
    data = dataset.load(store.path)
    assert data.problems == ["area disk: no samples (no samples and no outcome: the run stopped before it or "
                             "its lines were lost)"]
    text = build(store, tmp_path / "reports").read_text()
    assert "area disk: no samples" in text


def test_missing_files_are_named(tmp_path):
    store = make_run(tmp_path, scenarios=("cpu",))
    (store.path / "env.json").unlink()
    (store.path / "cells.jsonl").unlink()
    data = dataset.load(store.path)
    assert any(p.startswith("env.json is missing") for p in data.problems)
    assert any(p.startswith("cells.jsonl is missing") for p in data.problems)
    assert "env.json is missing" in build(store.path, tmp_path / "reports").read_text()


def test_unknown_schema_is_refused_in_words(tmp_path):
    store = make_run(tmp_path, schema=99, scenarios=("cpu",))
    data = dataset.load(store.path)
    assert data.samples == []
    assert data.problems[0].startswith("results schema 99 is not one this isolab reads (1, 2)")
    text = build(store, tmp_path / "reports").read_text()
    assert "results schema 99" in text and "No samples" in text


def test_unknown_sample_schema_is_skipped(tmp_path):
    store = make_run(tmp_path, scenarios=("cpu",))
    with open(store.path / "samples.jsonl", "a") as out:
        out.write(json.dumps({**json.loads((store.path / "samples.jsonl").read_text().splitlines()[0]),
                              "schema": 7}) + "\n")
    data = dataset.load(store.path)
    assert len(data.samples) == 6 and any("unknown sample schema 7" in p for p in data.problems)


def test_schema_1_run_keeps_loading(tmp_path):
    """A run written before schema 2: no 'schema' in run.json, samples with schema 1, no platform info."""
    store = make_run(tmp_path, schema=None, scenarios=("cpu",))
    path = store.path / "samples.jsonl"
    path.write_text("".join(json.dumps({**json.loads(line), "schema": 1}) + "\n"
                            for line in path.read_text().splitlines()))
    data = dataset.load(store.path)
    assert data.problems == [] and len(data.samples) == 6
    text = build(store, tmp_path / "reports").read_text()
    assert "Missing or unreadable" not in text and "sysbench_cpu_events_per_s" in text


def test_find_names_what_is_missing(tmp_path):
    import pytest

    from runtime.errors import IsolabError

    with pytest.raises(IsolabError, match="no run or dataset 'nope'"):
        dataset.find("nope", tmp_path)
