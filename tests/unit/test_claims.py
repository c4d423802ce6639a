"""The claims registry: its schema, its mapping onto what scenarios emit, and mechanical verdicts."""

import re
from pathlib import Path

import pytest
import yaml

from bench.results import SampleRecord
from reporting import claims as registry
from reporting.summary import summary_frame
from runtime.platform import PlatformInfo
from scenarios import base as scenario_base


def info(name, kind, baseline=False, emulated=False, mechanism=""):
    return PlatformInfo(name=name, kind=kind, display_name=name.title(), colour="#123456", mechanism=mechanism,
                        emulated=emulated, baseline=baseline)


def test_registry_follows_its_schema_and_has_at_least_20_claims():
    claims = registry.load_claims()
    assert len(claims) >= 20
    for claim in claims:
        assert claim.source["year"] and claim.source["title"] and claim.citation
        assert claim.published, claim.id


def test_every_claim_maps_to_a_metric_a_scenario_emits():
    assert registry.scenario_mismatches(registry.load_claims()) == []


@pytest.mark.parametrize("name", scenario_base.SCENARIOS)
def test_declared_metrics_match_the_scenario_code(name):
    module = scenario_base.load(name)
    source = Path(module.__file__).read_text()
    emitted = set(re.findall(r'Sample\(\s*"(\w+)"', source))
    declared = set(module.METRICS)
    assert emitted <= declared, f"{name} emits undeclared {emitted - declared}"
    for metric in declared:
        assert f'"{metric}"' in source, f"{name} declares {metric} but never names it"


def test_schema_errors_name_the_claim(tmp_path):
    good = yaml.safe_load(registry.CLAIMS_FILE.read_text())[0]
    path = tmp_path / "claims.yaml"
    path.write_text(yaml.safe_dump([{**good, "test": {"type": "vibes"}}]))
    with pytest.raises(registry.ClaimsError, match=r"entry 1 \(F1-container\): test.type"):
        registry.load_claims(path)
    path.write_text(yaml.safe_dump([{k: v for k, v in good.items() if k != "source"}]))
    with pytest.raises(registry.ClaimsError, match="missing source"):
        registry.load_claims(path)
    bad = {**good, "metric": "no_such_metric"}
    path.write_text(yaml.safe_dump([bad]))
    assert registry.scenario_mismatches(registry.load_claims(path)) == [
        "F1-container: scenario cpu emits no metric no_such_metric"]


def _samples(values_by_platform, metric="sysbench_cpu_events_per_s", scenario="cpu", meta=None):
    meta = meta or {"threads": 1}
    out = []
    for platform, values in values_by_platform.items():
        for rep, value in enumerate(values, start=1):
            out.append(SampleRecord("r", platform, scenario, metric, value, "events/s", rep, meta))
    return out


def _claim(**over):
    base = dict(id="T", claim="c", source={"title": "t", "venue": "v", "year": 2015, "where": "w",
                                           "confidence": "P", "url": "u"},
                published={"ratio": 1.0}, setting={}, kind="container", versus="baseline", scenario="cpu",
                metric="sysbench_cpu_events_per_s", variant={"threads": 1},
                test={"type": "ratio_within", "expect": 1.0, "margin": 0.05})
    return registry.Claim(**{**base, **over})


INFOS = {"base": info("base", "native", baseline=True), "box": info("box", "container"),
         "guest": info("guest", "vm", emulated=True, mechanism="TCG (emulated)")}


def _verdict(claim, values, infos=INFOS):
    samples = _samples(values)
    frame = registry.claims_frame(summary_frame(samples, "base"), infos, samples, claims=[claim])
    return frame.iloc[0]["verdict"]


def test_supported_contradicted_inconclusive():
    base = [100.0, 100.5, 99.5, 100.2, 99.8, 100.1]
    assert _verdict(_claim(), {"base": base, "box": [v * 0.99 for v in base]}) == "supported"
    assert _verdict(_claim(), {"base": base, "box": [v * 0.5 for v in base]}) == "contradicted"
    wide = [80.0, 120.0, 95.0, 105.0, 90.0, 110.0]
    assert _verdict(_claim(), {"base": base, "box": wide}) == "inconclusive"


def test_direction_and_level_below_95():
    claim = _claim(test={"type": "direction", "expect": "lower"})
    assert _verdict(claim, {"base": [100.0, 101, 102], "box": [50.0, 51, 52]}) == "supported (at 90 %)"
    assert _verdict(claim, {"base": [100.0, 101, 102], "box": [150.0, 151, 152]}) == "contradicted (at 90 %)"


def test_not_testable_here_says_why():
    values = {"base": [100.0, 101, 102], "box": [99.0, 100, 101], "guest": [10.0, 11, 12]}
    assert _verdict(_claim(kind="sandboxed container"), values) == (
        "not testable here (platform not run: no sandboxed container platform in this run)")
    kvm = _claim(kind="vm", needs=("kvm",))
    assert _verdict(kvm, values) == "not testable here (Guest emulated (TCG (emulated)): needs KVM)"
    missing = _claim(variant={"threads": 2})
    assert _verdict(missing, values) == (
        "not testable here (sysbench_cpu_events_per_s [threads=2] was not measured on box)")
    assert _verdict(_claim(scenario="memory", metric="sysbench_memory_bandwidth"), values) == (
        "not testable here (scenario memory has no samples on box in this run)")


def test_for_comparison_and_versus_another_kind():
    values = {"base": [100.0, 101, 102], "box": [99.0, 100, 101], "guest": [10.0, 11, 12]}
    row = registry.claims_frame(summary_frame(_samples(values), "base"), INFOS, _samples(values),
                                claims=[_claim(test={"type": "for_comparison", "figure": 4.09, "unit": "MB"})]).iloc[0]
    assert row["verdict"] == "for comparison" and "published 4.09 MB" in row["this host"]
    versus = _claim(kind="vm", versus="container", test={"type": "direction", "expect": "lower"})
    row = registry.claims_frame(summary_frame(_samples(values), "base"), INFOS, _samples(values),
                                claims=[versus]).iloc[0]
    assert row["verdict"] == "supported (at 90 %)" and "guest ÷ box" in row["this host"]


def test_the_shipped_registry_runs_on_a_run_with_all_kinds_absent_but_baseline():
    samples = _samples({"base": [100.0, 101, 102]})
    frame = registry.claims_frame(summary_frame(samples, "base"), {"base": INFOS["base"]}, samples)
    assert len(frame) == len(registry.load_claims())
    assert frame["verdict"].str.startswith("not testable here (platform not run: no ").all()


def test_versus_a_reference_variant_of_the_same_platform():
    """Noisy neighbour: the victim beside a stressor ÷ the victim alone, on the same platform."""
    samples = []
    for stressor, values in (("none", [100.0, 101, 102, 100.5, 101.5, 99.5]),
                             ("cpu", [99.0, 100, 101, 99.5, 100.5, 98.5]),
                             ("memory", [50.0, 51, 52, 50.5, 51.5, 49.5])):
        for rep, value in enumerate(values, start=1):
            samples.append(SampleRecord("r", "box", "isolation_noisy", "victim_cpu_events_per_s", value,
                                        "events/s", rep, {"setting": "limited", "stressor": stressor}))
    infos = {"base": INFOS["base"], "box": INFOS["box"]}
    summary = summary_frame(samples, "base")
    claims = [_claim(id=f"N-{s}", scenario="isolation_noisy", metric="victim_cpu_events_per_s",
                     variant={"setting": "limited", "stressor": s}, versus="variant", reference={"stressor": "none"},
                     test={"type": "ratio_within", "expect": 1.0, "margin": 0.05}) for s in ("cpu", "memory")]
    frame = registry.claims_frame(summary, infos, samples, claims=claims).set_index("id")
    assert frame.loc["N-cpu", "verdict"] == "supported"
    assert frame.loc["N-memory", "verdict"] == "contradicted"
    assert "box ÷ stressor=none = 0.504" in frame.loc["N-memory", "this host"]
