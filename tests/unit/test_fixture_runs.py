"""compare and merge on two real recorded runs (tests/fixtures/compare-runs, see its README)."""

import shutil
from pathlib import Path

from bench import compare, dataset, stats
from bench.merge import merge
from reporting.html import build
from reporting.summary import summary_frame

RUNS = Path(__file__).resolve().parents[1] / "fixtures" / "compare-runs"
A, B = RUNS / "20261128-095012-fca8", RUNS / "20261128-095300-9b4a"


def test_fixture_runs_load_cleanly():
    for path in (A, B):
        data = dataset.load(path)
        assert data.problems == [], data.problems
        assert {s.scenario for s in data.samples} == {"cpu", "startup", "footprint"}


def test_compare_real_runs():
    _, _, frame = compare.compare(A, B)
    assert not frame.empty and set(frame.platform) == {"native", "container"}
    both = frame[(frame.n_a > 0) & (frame.n_b > 0)]
    assert (both.n_a == 3).all() and (both.n_b == 3).all()  # repetitions, not instances or samples
    for verdict, level in zip(both.verdict, both.ratio_level, strict=True):
        # 3 vs 3 repetitions reach 90 %: every verdict names that level, none claims 95 %
        assert verdict.startswith("not comparable") or "(at 90 %; n too small for 95 %)" in verdict
        assert level != level or level < 0.95
    assert "95 %" not in " ".join(line for line in compare.text_table(frame) if "n too small" not in line)


def test_merge_real_runs_and_report(tmp_path):
    data = merge([A, B], tmp_path / "ab")
    assert data.problems == [] and len(data.runs) == 2 and set(data.hosts.values()) == {"vm"}
    summary = summary_frame(data.samples, "native", data.hosts)
    startup = summary[(summary.metric == "startup_ready_s") & (summary.platform == "container")].iloc[0]
    # one host: the two runs' repetitions pool, 2 instances per repetition stay one unit
    assert (startup.n, startup.n_instances) == (6, 12)
    assert startup.ci_level == stats.order_statistic_coverage(6, 1, 6)
    text = build(tmp_path / "ab", tmp_path / "reports").read_text()
    assert "startup_ready_s" in text and "Missing or unreadable" not in text


def test_merge_as_two_hosts(tmp_path):
    """B copied and relabelled as another host (the only edit): the report keeps the hosts apart."""
    other = tmp_path / "b-on-host2"
    shutil.copytree(B, other)
    env = (other / "env.json").read_text().replace('"hostname": "vm"', '"hostname": "host2"')
    (other / "env.json").write_text(env)
    data = merge([A, other], tmp_path / "fleet")
    summary = summary_frame(data.samples, "native", data.hosts)
    assert set(summary.host) == {"vm", "host2"} and set(summary.n) == {3}
    text = build(tmp_path / "fleet", tmp_path / "reports").read_text()
    assert "container @ host2" in text and "native @ vm" in text
