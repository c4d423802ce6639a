"""The report's start-time comparison: one table (platforms as rows) and one CDF figure across platforms."""

from __future__ import annotations

from bench.results import CellOutcome, RunStore, SampleRecord
from reporting.html import build


def make_run(tmp_path):
    store = RunStore.create(tmp_path / "results", "r1")
    store.write_run_info({"run_id": "r1", "status": "complete",
                          "config": {"profile": "quick", "reps": 6, "platforms": ["native", "container"],
                                     "scenarios": ["startup"]}})
    store.write_env({"host": {"kernel": "6.1"}, "cpu": {}, "memory_bytes": 2**30, "command_line": ["x"]})
    for platform, base in (("native", 0.010), ("container", 0.030)):
        for rep in range(1, 7):
            for instance in (0, 1):
                value = base + 0.001 * rep + 0.0001 * instance
                store.add_sample(SampleRecord("r1", platform, "startup", "start_to_exit_s", value, "s", rep,
                                              {"mode": "serial", "instance": instance}))
                store.add_sample(SampleRecord("r1", platform, "startup", "startup_ready_s", value / 2, "s", rep,
                                              {"mode": "serial", "instance": instance}))
            store.add_sample(SampleRecord("r1", platform, "startup", "startup_all_exit_s", 3 * base, "s", rep,
                                          {"mode": "parallel", "instances": 2}))
        store.add_outcome(CellOutcome(platform, "startup", "ok", repetitions=6))
    return store


def test_start_times_side_by_side(tmp_path):
    text = build(make_run(tmp_path), tmp_path / "reports").read_text()
    assert "start times, side by side" in text
    table = text[text.index("start times, side by side"):]
    table = table[:table.index("</table>")]
    assert "start to exit" in table and "ready for exec" in table and "all exited (parallel), instances=2" in table
    assert table.count("<tr><td>") == 2  # a row per platform
    # the second platform's start-to-exit: median of the 6 repetition medians (each of 2 instances)
    assert "33.6 ms" in table and "31.1–36.0" in table
    assert "96.8 %" in table or "96.9 %" in table  # the [min, max] of 6 at its real level
    out = tmp_path / "reports" / "r1"
    assert (out / "figures" / "startup-start-cdf.svg").exists() and (out / "figures" / "startup-start-cdf.png").exists()
    assert (out / "tables" / "startup-start.csv").exists() and (out / "tables" / "startup-start.tex").exists()
    assert "startup-start_to_exit_s-cdf" not in text  # one CDF for the start metrics, not one each
