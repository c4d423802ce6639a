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


def test_merge_real_runs(tmp_path):
    data = merge([A, B], tmp_path / "ab")
    assert data.problems == [] and len(data.runs) == 2 and set(data.hosts.values()) == {"vm"}
    summary = summary_frame(data.samples, "native", data.hosts)
    startup = summary[(summary.metric == "startup_ready_s") & (summary.platform == "container")].iloc[0]
    # one host: the two runs' repetitions pool, 2 instances per repetition stay one unit
    assert (startup.n, startup.n_instances) == (6, 12)
    assert startup.ci_level == stats.order_statistic_coverage(6, 1, 6)


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
    assert "container @ host2" in text and "native @ vm" in text and "Missing or unreadable" not in text


def test_no_interval_in_the_report_claims_a_level_it_does_not_have(tmp_path):
    """3 repetitions per cell: medians reach 75 %, ratios 90 %; nothing in the report may say 95 %."""
    import re

    text = build(A, tmp_path / "reports").read_text()
    assert "75 % interval" in text and "90 % interval" in text
    claimed = re.findall(r"9[5-9](?:\.\d+)?\s?% (?:interval|CI|confidence)|95\s?% ?CI", text)
    assert claimed == []


def test_compare_a_fleet_with_a_run(tmp_path):
    other = tmp_path / "b-on-host2"
    shutil.copytree(B, other)
    (other / "env.json").write_text((other / "env.json").read_text().replace('"hostname": "vm"',
                                                                             '"hostname": "host2"'))
    merge([A, other], tmp_path / "fleet")
    _, _, frame = compare.compare(tmp_path / "fleet", B)
    # per host: the fleet's "vm" rows meet B (host vm); its host2 rows have no counterpart in B
    assert set(frame[frame.n_a > 0].host) == {"vm", "host2"}
    assert (frame[frame.host == "host2"].verdict == "only in A").all()
    assert (frame[(frame.host == "vm") & (frame.n_b > 0)].n_a == 3).all()
