"""The sample and environment schema, atomic appends, torn lines, resume bookkeeping."""

import json
import warnings

import pytest

from bench import envinfo
from bench.results import CellOutcome, RunStore, SampleRecord, TornLineWarning, read_jsonl, variant_of
from runtime.errors import IsolabError


def sample(**over):
    base = dict(run_id="r", platform="native", scenario="cpu", metric="m", value=1.5, unit="events/s",
                repetition=1, metadata={"threads": 2})
    return SampleRecord(**{**base, **over})


def test_variant_is_stable_and_sorted():
    assert variant_of({"threads": 1, "method": "prod"}) == "method=prod,threads=1"
    assert variant_of({}) == "-"


def test_sample_round_trip(tmp_path):
    store = RunStore.create(tmp_path, "run1")
    store.add_sample(sample())
    store.add_sample(sample(repetition=2, value=2.5))
    line = json.loads((tmp_path / "run1" / "samples.jsonl").read_text().splitlines()[0])
    assert set(line) == {"schema", "run_id", "platform", "scenario", "metric", "variant", "value", "unit",
                         "repetition", "metadata", "timestamp", "attempt"}
    assert line["variant"] == "threads=2"
    assert [s.value for s in store.samples()] == [1.5, 2.5]


def test_sample_schema_rejects_missing_fields():
    with pytest.raises(ValueError, match="lacks"):
        SampleRecord.from_dict({"metric": "m", "value": 1})
    good = json.loads(sample().to_json())
    with pytest.raises(ValueError, match="not a number"):
        SampleRecord.from_dict({**good, "value": "fast"})


def test_torn_last_line_is_skipped_with_a_warning_naming_file_and_line(tmp_path):
    path = tmp_path / "samples.jsonl"
    path.write_text(sample().to_json() + "\n" + '{"metric": "m", "val')
    with pytest.warns(TornLineWarning, match=r"samples\.jsonl:2: skipped a torn last line"):
        assert len(list(read_jsonl(path))) == 1


def test_power_loss_mid_append_then_resume_keeps_every_whole_line(tmp_path):
    """A torn last line of samples.jsonl and cells.jsonl: reported, skipped; a resume repairs both files
    so that its appends do not land after the fragment."""
    store = RunStore.create(tmp_path, "run3")
    store.add_samples([sample(attempt="a1"), sample(attempt="a1", repetition=2)])
    store.add_outcome(CellOutcome("native", "cpu", "ok", repetitions=2, attempt="a1"))
    with open(store.path / "samples.jsonl", "a") as out:
        out.write('{"schema": 2, "run_id": "r", "va')
    with open(store.path / "cells.jsonl", "a") as out:
        out.write('{"platform": "container", "scen')
    with pytest.warns(TornLineWarning) as caught:
        assert [s.repetition for s in store.samples()] == [1, 2]
    assert {str(w.message).split(":")[0] for w in caught} >= {str(store.path / "samples.jsonl"),
                                                             str(store.path / "cells.jsonl")}
    with pytest.warns(TornLineWarning):
        store.drop_unfinished(keep_raw_of={("native", "cpu")})
    store.add_samples([sample(attempt="a3", platform="container")])
    store.add_outcome(CellOutcome("container", "cpu", "ok", repetitions=1, attempt="a3"))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # repaired: no torn line any more
        assert sorted((s.platform, s.repetition) for s in store.samples()) == [
            ("container", 1), ("native", 1), ("native", 2)]


def test_only_the_attempt_of_the_latest_outcome_counts(tmp_path):
    """The killed-run bug: attempt k1 stored repetition 1 and was killed (no outcome); the resumed attempt
    r1 stored 3 repetitions. n must be 3, and resuming removes k1's sample from the file."""
    store = RunStore.create(tmp_path, "run4")
    store.add_samples([sample(platform="native", attempt="n1", repetition=r) for r in (1, 2, 3)])
    store.add_outcome(CellOutcome("native", "cpu", "ok", repetitions=3, attempt="n1"))
    store.add_samples([sample(platform="container", attempt="k1", repetition=1)])
    (store.path / "raw" / "container" / "cpu" / "rep1").mkdir(parents=True)
    assert [s.platform for s in store.samples()] == ["native"] * 3  # k1 has no outcome: never read
    assert store.drop_unfinished(keep_raw_of=store.finished_cells()) == 1
    assert not (store.path / "raw" / "container").exists() or not any((store.path / "raw" / "container").iterdir())
    assert len((store.path / "samples.jsonl").read_text().splitlines()) == 3
    store.add_samples([sample(platform="container", attempt="r1", repetition=r) for r in (1, 2, 3)])
    store.add_outcome(CellOutcome("container", "cpu", "ok", repetitions=3, attempt="r1"))
    counts = {p: sum(s.platform == p for s in store.samples()) for p in ("native", "container")}
    assert counts == {"native": 3, "container": 3}


def test_a_failed_attempt_redone_counts_only_the_redo(tmp_path):
    store = RunStore.create(tmp_path, "run5")
    store.add_samples([sample(attempt="f1", repetition=1)])
    store.add_outcome(CellOutcome("native", "cpu", "failed", "boom", repetitions=1, attempt="f1"))
    assert len(store.samples()) == 1  # a failed cell keeps its plausible repetitions, shown as failed
    store.add_samples([sample(attempt="f2", repetition=r) for r in (1, 2, 3)])
    store.add_outcome(CellOutcome("native", "cpu", "ok", repetitions=3, attempt="f2"))
    assert [s.attempt for s in store.samples()] == ["f2"] * 3


def test_schema_1_samples_without_attempt_are_still_read(tmp_path):
    store = RunStore.create(tmp_path, "old")
    line = json.loads(sample().to_json())
    del line["attempt"]
    line["schema"] = 1
    (store.path / "samples.jsonl").write_text(json.dumps(line) + "\n")
    assert len(store.samples()) == 1


def test_atomic_writes_leave_no_temporary_files_and_sync_covers_the_run(tmp_path):
    store = RunStore.create(tmp_path, "run6")
    store.write_run_info({"status": "running"})
    store.raw_writer("native", "cpu", 1)("tool.txt", "output")
    store.sync()
    names = [p.name for p in store.path.rglob("*")]
    assert not [n for n in names if ".tmp-" in n]
    assert (store.path / "raw" / "native" / "cpu" / "rep1" / "tool.txt").read_text() == "output"


def test_corrupt_middle_line_is_an_error(tmp_path):
    path = tmp_path / "samples.jsonl"
    path.write_text("garbage\n" + sample().to_json() + "\n")
    with pytest.raises(IsolabError, match=r"samples\.jsonl:1"):
        list(read_jsonl(path))


def test_finished_cells_exclude_failures(tmp_path):
    store = RunStore.create(tmp_path, "run2")
    store.add_outcome(CellOutcome("native", "cpu", "ok", repetitions=3))
    store.add_outcome(CellOutcome("vm", "cpu", "skipped", "no libvirt"))
    store.add_outcome(CellOutcome("container", "cpu", "failed", "boom"))
    assert store.finished_cells() == {("native", "cpu"), ("vm", "cpu")}


def test_open_unknown_run_is_one_clear_error(tmp_path):
    with pytest.raises(IsolabError, match="no run 'nope'"):
        RunStore.open("nope", tmp_path)


def test_env_fingerprint_has_the_required_keys():
    env = envinfo.capture({"digest": "abc", "kernel_version": "6.1", "packages": {"fio": "3.33-1"}},
                          {"vm": {"accelerator": "tcg"}}, ["python", "-m", "bench", "run"])
    for key in envinfo.REQUIRED_KEYS:
        assert key in env, key
    assert env["image"]["digest"] == "abc"
    assert env["tools"]["image"]["fio"] == "3.33-1"
    assert env["cgroup"]["version"] in (1, 2)
    assert env["cpu"]["logical_cpus"] >= 1
    json.dumps(env)  # serialisable


def test_the_report_reader_counts_only_finished_attempts(tmp_path):
    from bench import dataset

    store = RunStore.create(tmp_path, "run7")
    store.write_run_info({"run_id": "run7", "schema": 2, "config": {"platforms": ["native", "container"],
                                                                     "scenarios": ["cpu"]}})
    store.add_samples([sample(run_id="run7", platform="native", attempt="n1", repetition=r) for r in (1, 2, 3)])
    store.add_outcome(CellOutcome("native", "cpu", "ok", repetitions=3, attempt="n1"))
    store.add_samples([sample(run_id="run7", platform="container", attempt="k1", repetition=1)])  # killed
    loaded = dataset.load(store.path)
    assert [s.platform for s in loaded.samples] == ["native"] * 3
    assert any("1 sample(s) of cell attempts that did not finish" in p for p in loaded.problems)


def test_every_results_file_and_directory_is_fsynced_before_the_run_is_marked_complete(tmp_path, monkeypatch):
    import os

    synced: list[str] = []
    real_fsync = os.fsync

    def recording_fsync(fd):
        synced.append(os.readlink(f"/proc/self/fd/{fd}"))
        return real_fsync(fd)

    store = RunStore.create(tmp_path, "run8")
    store.write_run_info({"status": "running"})
    store.add_samples([sample(attempt="a"), sample(attempt="a", repetition=2)])
    store.add_outcome(CellOutcome("native", "cpu", "ok", repetitions=2, attempt="a"))
    store.raw_writer("native", "cpu", 1)("sysbench.txt", "report")
    (store.path / "pytest-benchmark.json").write_text("{}")  # written by pytest-benchmark, not atomically
    monkeypatch.setattr(os, "fsync", recording_fsync)
    store.sync()
    store.write_run_info({"status": "complete"})
    marked = synced.index(str(store.path / "run.json").replace("run.json", ".run.json.tmp-" + str(os.getpid())))
    before = set(synced[:marked])
    files = {str(p) for p in store.path.rglob("*") if p.is_file()}
    dirs = {str(p) for p in store.path.rglob("*") if p.is_dir()} | {str(store.path)}
    assert files <= before and dirs <= before
    assert synced[-1] == str(store.path)  # the rename of run.json made durable by the directory's fsync
