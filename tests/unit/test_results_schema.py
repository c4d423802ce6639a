"""The sample and environment schema, atomic appends, torn lines, resume bookkeeping."""

import json

import pytest

from bench import envinfo
from bench.results import CellOutcome, RunStore, SampleRecord, read_jsonl, variant_of
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
                         "repetition", "metadata", "timestamp"}
    assert line["variant"] == "threads=2"
    assert [s.value for s in store.samples()] == [1.5, 2.5]


def test_sample_schema_rejects_missing_fields():
    with pytest.raises(ValueError, match="lacks"):
        SampleRecord.from_dict({"metric": "m", "value": 1})
    good = json.loads(sample().to_json())
    with pytest.raises(ValueError, match="not a number"):
        SampleRecord.from_dict({**good, "value": "fast"})


def test_torn_last_line_is_skipped(tmp_path):
    path = tmp_path / "samples.jsonl"
    path.write_text(sample().to_json() + "\n" + '{"metric": "m", "val')
    assert len(list(read_jsonl(path))) == 1


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
