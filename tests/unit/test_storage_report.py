"""The storage scenario's contract and the report's storage section (pure: synthetic samples)."""

from __future__ import annotations

from bench.config import RunConfig
from bench.results import SampleRecord
from reporting import storage as report
from scenarios import base
from scenarios import storage as scenario


def _s(platform: str, scenario_name: str, metric: str, value: float, unit: str, rep: int, **meta: object):
    return SampleRecord("run", platform, scenario_name, metric, value, unit, rep, dict(meta))


def test_the_storage_scenario_is_opt_in():
    assert "storage" in base.EXTRA_SCENARIOS and "storage" not in base.SCENARIOS
    assert "storage" not in RunConfig().scenarios  # a run without --scenario does not pay for it
    assert set(scenario.PROFILES) == {"quick", "full"} and set(scenario.RANGES) == set(scenario.METRICS)
    assert scenario._ordinal(1) == "1st" and scenario._ordinal(10) == "10th" and scenario._ordinal(22) == "22nd"


ENV = {
    "plain[alpha]": {"available": True, "storage_driver": "alpha", "storage": "stacked layers",
                     "storage_drivers_unavailable": {"delta": "the kernel has no delta-thin"}},
    "plain[beta]": {"available": True, "storage_driver": "beta", "storage": "snapshots"},
    "plain[gamma]": {"available": False, "reason": "gamma: not installed"},
    "other": {"available": True, "storage_driver": "image-file", "storage": "copy-on-write disk image"},
}


def _creates(platform: str, values: list[float]) -> list[SampleRecord]:
    return [_s(platform, "storage", "storage_create_s", v, "s", rep, which="1st") for rep, v in enumerate(values)]


def test_tables_are_drivers_by_platforms_with_one_value_per_repetition():
    samples = [
        *_creates("plain[alpha]", [1, 2, 3]), *_creates("plain[beta]", [4, 5, 6]), *_creates("other", [7, 8, 9]),
        _s("other", "storage", "storage_create_s", 10, "s", 0, which="10th"),
        # two instances in one repetition count once (their median)
        _s("plain[alpha]", "storage", "storage_disk_mib", 2, "MiB", 0, after="create"),
        _s("plain[alpha]", "storage", "storage_disk_mib", 4, "MiB", 0, after="create"),
        _s("plain[alpha]", "disk", "fio_iops", 100, "IOPS", 0, storage="cow", bs="4k", rw="randread",
           direction="read", iodepth=32),
    ]
    found = report.tables(samples, ENV)
    first = next(t for t in found if t["metric"] == "storage_create_s" and t["variant"] == "which 1st")
    assert first["rows"] == ["alpha", "beta", "image-file"] and first["columns"] == ["plain", "other"]
    cell = first["cells"][("beta", "plain")]
    assert cell.summary.median == 5 and cell.summary.n == 3 and "75" in cell.text
    assert ("alpha", "other") not in first["cells"]
    disk = next(t for t in found if t["metric"] == "storage_disk_mib")
    assert disk["cells"][("alpha", "plain")].summary.median == 3 and disk["cells"][("alpha", "plain")].summary.n == 1
    assert any(t["metric"] == "fio_iops" and "copy-on-write root" in t["heading"] for t in found)
    assert report.unavailable(ENV) == {"delta": "the kernel has no delta-thin", "gamma": "gamma: not installed"}


def test_section_lists_unavailable_drivers_and_is_empty_without_storage_samples():
    html = report.section([_s("plain[alpha]", "storage", "storage_commit_s", 0.5, "s", 0, change_mib=16)], ENV, {})
    assert "storage: drivers × platforms" in html and "delta" in html and "delta-thin" in html
    assert "stacked layers" in html
    assert report.section([_s("plain", "cpu", "sysbench_eps", 1.0, "events/s", 0)], ENV, {}) == ""
