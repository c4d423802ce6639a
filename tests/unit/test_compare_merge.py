"""`bench compare` and `bench merge` on synthetic runs (real recorded runs: test_fixture_runs.py)."""

import json

import pytest

from bench import compare, dataset
from bench.cli import main
from bench.merge import merge
from bench.results import CellOutcome, RunStore, SampleRecord
from reporting.html import build
from runtime.errors import IsolabError


def make_run(root, run_id, *, scenarios=("cpu",), hostname="hostA", values=(100.0,)):
    """A schema-2 run: platforms base and box, cpu samples (box at half of base), 3 repetitions."""
    store = RunStore.create(root, run_id)
    store.write_run_info({"schema": 2, "run_id": run_id, "status": "complete",
                          "config": {"profile": "quick", "reps": 3, "platforms": ["base", "box"],
                                     "scenarios": list(scenarios)}})
    store.write_env({"host": {"hostname": hostname}, "cpu": {}, "memory_bytes": 2**30, "command_line": ["x"],
                     "platforms": {}})
    for platform, factor in (("base", 1.0), ("box", 0.5)):
        for rep in (1, 2, 3):
            for value in values:
                store.add_sample(SampleRecord(run_id, platform, "cpu", "sysbench_cpu_events_per_s",
                                              factor * value + rep, "events/s", rep, {"threads": 1}))
        store.add_outcome(CellOutcome(platform, "cpu", "ok", repetitions=3))
    return store


def test_compare_gives_delta_interval_and_verdict(tmp_path):
    a = make_run(tmp_path, "ra", scenarios=("cpu",), values=(100.0, 100.4, 99.6))
    b = make_run(tmp_path, "rb", scenarios=("cpu",), values=(200.0, 200.4, 199.6))
    _, _, frame = compare.compare(a.path, b.path)
    rows = frame.set_index("platform")
    # base: 100 + rep -> 200 + rep: about +98 %, faster (events/s: higher is better)
    assert rows.loc["base", "delta_pct"] == pytest.approx(100 * (202.0 / 102.0 - 1))
    # three samples per repetition are one unit: 3 vs 3 repetitions reach 90 %, and the verdict says so
    assert rows.loc["base", "verdict"] == "better (at 90 %; n too small for 95 %)"
    assert rows.loc["base", "ratio_level"] == pytest.approx(0.9)
    assert rows.loc["base", "n_a"] == 3 and rows.loc["base", "ratio_method"].startswith("Mann-Whitney")


def test_compare_same_run_is_no_detectable_change_and_names_its_level(tmp_path):
    a = make_run(tmp_path, "ra", scenarios=("cpu",))
    b = make_run(tmp_path, "rb", scenarios=("cpu",))
    _, _, frame = compare.compare(a.path, b.path)
    assert set(frame.verdict) == {"no detectable change (at 90 %; n too small for 95 %)"}
    lines = compare.text_table(frame)
    assert any("90 % interval" in line for line in lines)


def test_compare_rows_only_in_one_run(tmp_path):
    a = make_run(tmp_path, "ra", scenarios=("cpu",))
    b = make_run(tmp_path, "rb", scenarios=("cpu",))
    with open(b.path / "samples.jsonl", "a") as out:
        line = json.loads((b.path / "samples.jsonl").read_text().splitlines()[0])
        out.write(json.dumps({**line, "metric": "new_metric"}) + "\n")
    _, _, frame = compare.compare(a.path, b.path)
    assert frame[frame.metric == "new_metric"].verdict.tolist() == ["only in B"]


def test_compare_cli_writes_tables_and_survives_a_damaged_side(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("ISOLAB_RESULTS_DIR", str(tmp_path))
    monkeypatch.setenv("ISOLAB_REPORTS_DIR", str(tmp_path / "reports"))
    make_run(tmp_path, "ra", scenarios=("cpu",))
    b = make_run(tmp_path, "rb", scenarios=("cpu", "disk"))
    (b.path / "samples.jsonl").write_text((b.path / "samples.jsonl").read_text() + "garbage\n")
    assert main(["report", "--compare", "ra", "rb"]) == 0
    out = capsys.readouterr().out
    assert "B (rb): missing: area disk: no samples" in out and "base sysbench_cpu_events_per_s" in out
    html = (tmp_path / "reports" / "compare-ra-vs-rb.html").read_text()
    assert "Missing or unreadable results" in html and "no detectable change" in html
    assert (tmp_path / "reports" / "compare-ra-vs-rb.csv").exists()


def test_merge_keeps_hosts_apart(tmp_path):
    a = make_run(tmp_path, "ra", scenarios=("cpu",), hostname="hostA")
    b = make_run(tmp_path, "rb", scenarios=("cpu",), hostname="hostB", values=(50.0,))
    data = merge([a.path, b.path], tmp_path / "fleet")
    assert data.merged and data.problems == []
    assert data.hosts == {"ra": "hostA", "rb": "hostB"} and len(data.samples) == 12
    info = json.loads((tmp_path / "fleet" / "run.json").read_text())
    assert info["schema"] == 2 and info["hosts"] == ["hostA", "hostB"]
    from reporting.summary import summary_frame

    summary = summary_frame(data.samples, "base", data.hosts)
    assert sorted(set(summary.host)) == ["hostA", "hostB"]
    assert (summary.groupby(["host", "platform"]).n.first() == 3).all()  # never pooled across hosts
    text = build(tmp_path / "fleet", tmp_path / "reports").read_text()
    assert "base @ hostA" in text and "box @ hostB" in text


def test_merge_of_one_host_pools_its_repetitions(tmp_path):
    a = make_run(tmp_path, "ra", scenarios=("cpu",))
    b = make_run(tmp_path, "rb", scenarios=("cpu",))
    data = merge([a.path, b.path], tmp_path / "both")
    from reporting.summary import summary_frame

    summary = summary_frame(data.samples, "base", data.hosts)
    assert set(summary.n) == {6}  # two runs x 3 repetitions, each repetition one unit


def test_merge_refuses_a_run_twice_and_carries_problems(tmp_path):
    a = make_run(tmp_path, "ra", scenarios=("cpu",))
    with pytest.raises(IsolabError, match="given twice"):
        merge([a.path, a.path], tmp_path / "twice")
    b = make_run(tmp_path, "rb", scenarios=("cpu", "memory"))
    data = merge([a.path, b.path], tmp_path / "m")
    assert any("rb: area memory in run rb: no samples" in p or "area memory" in p for p in data.problems)
    again = merge([tmp_path / "m", make_run(tmp_path, "rc", scenarios=("cpu",)).path], tmp_path / "m2")
    assert sorted(again.runs) == ["ra", "rb", "rc"]


def test_merge_cli(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("ISOLAB_RESULTS_DIR", str(tmp_path))
    monkeypatch.setenv("ISOLAB_REPORTS_DIR", str(tmp_path / "reports"))
    make_run(tmp_path, "ra", scenarios=("cpu",), hostname="hostA")
    make_run(tmp_path, "rb", scenarios=("cpu",), hostname="hostB")
    assert main(["merge", "ra", "rb", "--into", "fleet"]) == 0
    out = capsys.readouterr().out
    assert "merged 2 runs from 2 host(s) (hostA, hostB)" in out
    assert (tmp_path / "reports" / "fleet.html").exists()
    assert main(["merge", "ra", "rb", "--into", "fleet"]) == 2  # exists: one clear error
    assert "exists already" in " ".join(capsys.readouterr().err.split())
    assert dataset.load(tmp_path / "fleet").merged
