"""The report from stored samples: medians table, banners, exports — no workload runs here."""

import pandas as pd

from bench.results import CellOutcome, RunStore, SampleRecord
from reporting.html import build
from reporting.summary import summary_frame


def make_run(tmp_path, accelerator="tcg"):
    store = RunStore.create(tmp_path / "results", "r1")
    store.write_run_info({"run_id": "r1", "status": "complete",
                          "config": {"profile": "quick", "reps": 3, "platforms": ["native", "container", "vm"],
                                     "scenarios": ["cpu"]}})
    store.write_env({"platforms": {"vm": {"available": True, "accelerator": accelerator,
                                          "accelerator_reason": "no vmx/svm: KVM-PVM"}},
                     "host": {"kernel": "6.1"}, "cpu": {}, "memory_bytes": 2**30, "command_line": ["x"]})
    for platform, base in (("native", 100.0), ("container", 99.0), ("vm", 40.0)):
        for rep, delta in enumerate((0.0, 1.0, -1.0), start=1):
            store.add_sample(SampleRecord("r1", platform, "cpu", "sysbench_cpu_events_per_s", base + delta,
                                          "events/s", rep, {"threads": 1}))
    store.add_outcome(CellOutcome("native", "cpu", "ok", repetitions=3))
    store.add_outcome(CellOutcome("vm", "cpu", "failed", "guest agent did not answer", repetitions=3))
    return store


def test_summary_ratios(tmp_path):
    summary = summary_frame(make_run(tmp_path).samples(), "native").set_index("platform")
    assert summary.loc["native", "n"] == 3
    assert summary.loc["native", "median"] == 100.0
    assert summary.loc["container", "ratio_to_native"] == 0.99
    assert summary.loc["vm", "ratio_to_native"] == 0.4


def test_report_is_self_contained_and_honest(tmp_path):
    path = build(make_run(tmp_path), tmp_path / "reports")
    text = path.read_text()
    assert path.name == "r1.html"
    assert '<td class="num">100</td>' in text and "99.0–101" in text  # median with its interval
    assert "75 %" in text  # at its real level
    assert "were <em>emulated</em>" in text and "TCG" in text  # the accelerator banner (old env: no info)
    assert "guest agent did not answer" in text  # failures are listed with the reason
    assert "container ÷ native = 0.990" in text and "Felter" in text  # the claims table
    assert "not testable here (" in text  # claims whose kind did not run, or that need KVM, say why
    assert "data:image/svg+xml;base64," in text  # figures are embedded
    assert 'src="http' not in text and "<link" not in text and "<script" not in text  # nothing fetched
    tables = tmp_path / "reports" / "r1" / "tables"
    assert (tables / "cpu.csv").exists() and (tables / "cpu.tex").exists() and (tables / "summary.csv").exists()


def test_kvm_banner(tmp_path):
    text = build(make_run(tmp_path, accelerator="kvm"), tmp_path / "reports").read_text()
    assert "<em>emulated</em>" not in text and "not comparable to KVM" not in text


def test_network_modes_compare_with_native_host_network(tmp_path):
    from reporting.summary import baseline_variant_candidates

    assert baseline_variant_candidates("direction=forward,network=nat,streams=1") == [
        "direction=forward,network=nat,streams=1", "direction=forward,network=host,streams=1"]
    assert baseline_variant_candidates("threads=1") == ["threads=1"]
    store = RunStore.create(tmp_path / "results", "r2")
    for platform, mode, value in (("native", "host", 10.0), ("container", "nat", 5.0), ("container", "host", 10.0)):
        store.add_sample(SampleRecord("r2", platform, "network", "iperf3_throughput", value, "Gbit/s", 1,
                                      {"network": mode, "streams": 1}))
    summary = summary_frame(store.samples(), "native").set_index(["platform", "variant"])
    assert summary.loc[("container", "network=nat,streams=1"), "ratio_to_native"] == 0.5
    assert summary.loc[("container", "network=host,streams=1"), "ratio_to_native"] == 1.0


def test_instances_of_a_repetition_are_one_unit(tmp_path):
    """Two instances per repetition, three repetitions: n = 3 (75 % interval), not 6."""
    from bench.results import variant_of

    assert variant_of({"mode": "serial", "instance": 1}) == "mode=serial"
    store = RunStore.create(tmp_path / "results", "r3")
    for rep, values in enumerate(((1.0, 3.0), (2.0, 4.0), (5.0, 7.0)), start=1):
        for index, value in enumerate(values):
            store.add_sample(SampleRecord("r3", "p", "startup", "startup_ready_s", value, "s", rep,
                                          {"mode": "serial", "instance": index}))
    row = summary_frame(store.samples()).iloc[0]
    assert (row["n"], row["n_instances"], row["n_samples"]) == (3, 6, 6)
    assert row["median"] == 3.0  # medians per repetition: 2, 3, 6
    assert (row["ci_low"], row["ci_high"], row["ci_level"]) == (2.0, 6.0, 0.75)
    assert row["direction"] == "lower"


def test_significance_column_says_when_n_is_too_small(tmp_path):
    from reporting.summary import pairwise_mann_whitney

    samples = make_run(tmp_path).samples()
    versus = pairwise_mann_whitney(samples, [("container", "vm")])
    row = versus.iloc[0]
    assert pd.isna(row["mann_whitney_p"]) and row["test"].startswith("n too small for p < 0.05")
