"""The hpcc scenario's parser on captured output, and the reproduction section's verdicts (pure logic)."""

import math
from pathlib import Path

import pandas as pd
import pytest

from bench import studies
from reporting import reproduction
from reporting.claims import load_claims
from runtime.platform import PlatformInfo
from scenarios import hpcc
from scenarios.base import ScenarioError

FIXTURES = Path(__file__).parents[1] / "fixtures" / "hpcc"


def test_hpcc_summary_gives_hpl_stream_and_randomaccess():
    samples = hpcc.samples_from(hpcc.parse_summary((FIXTURES / "hpccoutf-n4000.txt").read_text()), 4000)
    by = {(s.metric, s.metadata.get("kernel")): s.value for s in samples}
    assert by[("hpl_gflops", None)] == pytest.approx(1.31042)
    assert by[("stream_bandwidth", "Triad")] == pytest.approx(16.8526)
    assert by[("randomaccess_gups", None)] == pytest.approx(0.0494068)
    assert {k for m, k in by if m == "stream_bandwidth"} == set(hpcc.STREAM_KERNELS)


def test_hpcc_truncated_output_is_refused():
    with pytest.raises(ScenarioError, match="no complete summary"):
        hpcc.parse_summary((FIXTURES / "truncated-hpccoutf-n4000.txt").read_text())


def _info(name, kind, emulated=False, baseline=False):
    return PlatformInfo(name, kind, name, "#123456", "TCG" if emulated else "", emulated, baseline)


def _row(platform, variant, median, ratio, low, high, level=0.9):
    return {"host": "", "platform": platform, "scenario": "compress", "metric": "xz_compress_throughput",
            "variant": variant, "unit": "MB/s", "n": 3, "median": median, "ci_low": median * 0.98,
            "ci_high": median * 1.02, "ci_level": 0.75, "ci_method": "order statistic",
            "ratio_to_baseline": ratio, "ratio_ci_low": low, "ratio_ci_high": high, "ratio_ci_level": level,
            "ratio_ci_method": "Mann-Whitney", "ratio_note": ""}


def test_verdicts_per_row_and_platform_kind():
    variant = "level=6,size_mib=64,threads=2"
    summary = pd.DataFrame([_row("base", variant, 10.0, 1.0, math.nan, math.nan, 0.0),
                            _row("ctr", variant, 9.6, 0.96, 0.94, 0.98),
                            _row("guest", variant, 0.5, 0.05, 0.04, 0.06)])
    infos = {"base": _info("base", "native", baseline=True), "ctr": _info("ctr", "container"),
             "guest": _info("guest", "vm", emulated=True)}
    rows = (studies.Row("F4-container", "xz, container"), studies.Row("F4-vm-untuned", "xz, KVM"),
            studies.Row("F4-vm-tuned", "xz, KVM tuned", untestable="no tuned VM here"))
    study = studies.Study("s", {}, {}, (studies.Scaled("compress", "size_mib", "?", 64, "budget"),), rows, Path("s"))
    frame = reproduction.rows_frame(study, summary, infos, load_claims())
    got = {(r["claim"], r["platform"]): r for r in frame.to_dict("records")}
    assert got[("F4-container", "ctr")]["verdict"] == "reproduced (at 90 %)"
    assert got[("F4-container", "ctr")]["paper ratio"] == "0.96"
    assert got[("F4-container", "ctr")]["setting differs"] == "scaled: size_mib"
    assert got[("F4-container", "ctr")]["baseline here"].startswith("10 MB/s [9.8–10.2, 75 %], n = 3")
    assert got[("F4-vm-untuned", "guest: TCG")]["verdict"] == "not testable here (emulated)"
    assert got[("F4-vm-tuned", "(vm)")]["why"] == "no tuned VM here"


def test_an_emulated_platform_whose_cell_was_skipped_reads_not_testable_emulated():
    """A study skips its CPU-bound cells on an emulated VM: nothing measured, and the row says why."""
    variant = "level=6,size_mib=64,threads=2"
    summary = pd.DataFrame([_row("base", variant, 10.0, 1.0, math.nan, math.nan, 0.0)])
    infos = {"base": _info("base", "native", baseline=True), "guest": _info("guest", "vm", emulated=True)}
    study = studies.Study("s", {}, {}, (), (studies.Row("F4-vm-untuned", "xz, KVM"),), Path("s"))
    row = reproduction.rows_frame(study, summary, infos, load_claims()).to_dict("records")[0]
    assert (row["platform here"], row["verdict"]) == ("not measured", "not testable here (emulated)")
    assert row["why"].startswith("emulated: guest runs under TCG")


def test_a_row_against_the_victim_alone_uses_the_samples():
    from bench.results import SampleRecord
    from reporting.summary import summary_frame

    records = []
    for stressor, values in (("none", (100.0, 101.0, 99.0)), ("cpu", (98.0, 99.5, 97.0))):
        for rep, value in enumerate(values, start=1):
            records.append(SampleRecord("r", "ctr", "isolation_noisy", "victim_cpu_events_per_s", value, "events/s",
                                        rep, {"setting": "limited", "stressor": stressor},
                                        f"setting=limited,stressor={stressor}"))
    infos = {"ctr": _info("ctr", "container")}
    summary = summary_frame(records, None, {})
    study = studies.Study("s", {}, {}, (), (studies.Row("IBS-cpu-container", "cpu neighbour"),), Path("s"))
    record = reproduction.rows_frame(study, summary, infos, load_claims(), records, {}).to_dict("records")[0]
    assert record["baseline here"].startswith("100 events/s")  # the victim alone
    assert record["ratio here"].startswith("0.980 [") and "; degradation 2.0 % [" in record["ratio here"]
    assert record["verdict"].startswith("reproduced")  # within 1.0 ± 10 %


def test_ibs2007_rows_give_both_roles_their_degradation():
    """The web figure's role keeps the well-behaved instances' and the misbehaving one's rows apart, each
    against its own alone figure."""
    from bench.results import SampleRecord
    from reporting.summary import summary_frame

    figures = {("none", "well-behaved"): (1.0, 0.99, 1.0), ("forkbomb", "well-behaved"): (0.98, 0.99, 0.97),
               ("none", "misbehaving"): (1.0, 1.0, 0.99), ("forkbomb", "misbehaving"): (0.2, 0.25, 0.3)}
    records = []
    for (stressor, role), values in figures.items():
        for rep, value in enumerate(values, start=1):
            records.append(SampleRecord("r", "ctr", "isolation_noisy", "web_good_fraction", value,
                                        "fraction of responses", rep,
                                        {"setting": "limited", "stressor": stressor, "role": role},
                                        f"role={role},setting=limited,stressor={stressor}"))
    infos = {"ctr": _info("ctr", "container")}
    summary = summary_frame(records, None, {})
    study = studies.load_study("ibs2007")
    frame = reproduction.rows_frame(study, summary, infos, load_claims(), records, {})
    got = {r["claim"]: r for r in frame.to_dict("records")}
    well, mis = got["IBS-forkbomb-container"], got["IBS-forkbomb-container-misbehaving"]
    assert well["baseline here"].startswith("1 fraction of responses") and "degradation 2.0 %" in well["ratio here"]
    assert well["verdict"].startswith("reproduced")  # within 1.0 ± 10 %
    assert "degradation 75.0 %" in mis["ratio here"] and mis["verdict"].startswith("reproduced")  # lower, as 87.8 %
    assert got["IBS-cpu-container"]["platform here"] == "not measured"


def test_no_degradation_prints_as_zero_not_minus_zero():
    from bench import stats

    text = reproduction._degradation(stats.Ratio(1.0, stats.Interval(1.0, 1.0, 0.9, "exact"), ""), "higher")
    assert text == "; degradation 0.0 % [0.0–0.0]"
