"""Study profiles (bench/profiles/*.toml) against the parameters they claim to reproduce.

felter2015: the fio jobs field by field against the authors' job files, recorded here as facts (not
copied files): github.com/thewmf/kvm-docker-comparison at commit 6820500beab45d7c8d005caefb40eda7381eb05f,
fio/test.fio and fio/mixed.fio ([global] ioengine=libaio, direct=1, size=16g, group_reporting, thread),
and netperf/docker.sh + netperf/vm.sh (`netperf -l 60 -H ... -t TCP_RR|UDP_RR -- -r 100,200`).
Fields the profile scales are excepted only when its `scaled` list names them.
"""

import pytest

from bench import studies
from bench.config import parse_selection
from reporting import reproduction
from reporting.claims import load_claims, scenario_mismatches
from runtime.errors import SpecError
from scenarios import base

FELTER_SOURCE = ("https://github.com/thewmf/kvm-docker-comparison", "6820500beab45d7c8d005caefb40eda7381eb05f")
FELTER_GLOBAL = {"ioengine": "libaio", "direct": 1, "size": "16g", "group_reporting": True, "thread": True}
# profile job name -> (job file, section, its fields); iodepth 1 and numjobs 1 are fio's defaults
FELTER_JOBS = {
    "seqwrite": ("test.fio", "sequential-fill", {"rw": "write", "bs": "1M", "iodepth": 16, "numjobs": 1}),
    "seqread": ("test.fio", "seq-read-2", {"rw": "read", "bs": "1M", "iodepth": 2, "numjobs": 1}),
    "randread": ("test.fio", "random-read-16x8", {"rw": "randread", "bs": "4K", "iodepth": 16, "numjobs": 8,
                                                  "runtime": 60}),
    "randwrite": ("test.fio", "random-write-16x8", {"rw": "randwrite", "bs": "4K", "iodepth": 16, "numjobs": 8,
                                                    "runtime": 60}),
    "randrw70": ("mixed.fio", "mixed-random-rw-32x8", {"rw": "randrw", "rwmixread": 70, "bs": "4K", "iodepth": 32,
                                                       "numjobs": 8, "runtime": 60}),
}
FELTER_NETPERF = {"rr_tests": ["TCP_RR", "UDP_RR"], "rr_sizes": [100, 200], "rr_seconds": 60}
# Fields the profile may differ in, each of which its `scaled` list must name (with a reason).
FELTER_SCALED = {"disk": {"file_size", "runtime_s", "sequential jobs: size-based", "device"},
                 "network": {"rr_seconds", "topology"}}


@pytest.fixture(scope="module")
def felter() -> studies.Study:
    return studies.load_study("felter2015")


def test_felter_fio_jobs_match_the_job_files_field_by_field(felter):
    study_source = (felter.meta["url"], felter.meta["source_commit"])
    assert study_source == FELTER_SOURCE
    params = studies.params_for(base.load("disk"), "felter2015")
    assert params["ioengine"] == FELTER_GLOBAL["ioengine"] and params["thread"] is FELTER_GLOBAL["thread"]
    # direct=1 and group_reporting are fixed in scenarios.disk for every job
    jobs = {job["name"]: job for job in params["jobs"]}
    assert set(jobs) == set(FELTER_JOBS)
    for name, (job_file, section, fields) in FELTER_JOBS.items():
        job = jobs[name]
        for key, value in fields.items():
            if key == "runtime":  # scaled: the profile's runtime_s, listed below
                continue
            assert job.get(key, 1 if key in ("iodepth", "numjobs") else None) == value, (name, job_file, section, key)
    scaled = {s.field: s for s in felter.scaled_for("disk")}
    assert scaled["file_size"].paper == FELTER_GLOBAL["size"] and params["file_size"] == scaled["file_size"].here
    assert scaled["runtime_s"].paper == 60 and params["runtime_s"] == scaled["runtime_s"].here
    assert params["storage"] == ["volume"]  # /ferrari: a dedicated device, bind-mounted / virtio, not the root disk


def test_felter_netperf_matches_the_scripts(felter):
    params = studies.params_for(base.load("network"), "felter2015")
    assert params["rr_tests"] == FELTER_NETPERF["rr_tests"] and params["rr_sizes"] == FELTER_NETPERF["rr_sizes"]
    scaled = {s.field: s for s in felter.scaled_for("network")}
    assert scaled["rr_seconds"].paper == FELTER_NETPERF["rr_seconds"]
    assert params["rr_seconds"] == scaled["rr_seconds"].here
    assert not params["directions"]  # no iperf3: the paper's bulk test (nuttcp) needs two hosts


def test_felter_lists_every_scaled_field_with_a_reason(felter):
    for scenario, fields in FELTER_SCALED.items():
        listed = {s.field for s in felter.scaled_for(scenario)}
        assert fields <= listed, scenario
    assert all(s.why.strip() for s in felter.scaled)


@pytest.mark.parametrize("name", studies.study_names())
def test_every_study_loads_and_its_rows_name_registered_claims(name):
    study = studies.load_study(name)
    claims = {c.id: c for c in load_claims()}
    config = parse_selection("native", None, name, None)
    assert config.scenarios == study.scenarios and config.reps == study.repetitions
    for scenario in study.scenarios:
        studies.params_for(base.load(scenario), name)
    for row in study.rows:
        assert row.claim in claims, row.claim
    moved = [reproduction._claim_for(row, claims) for row in study.rows]
    assert scenario_mismatches([c for c in moved if c is not None]) == []


def test_unknown_profile_is_one_clear_error():
    with pytest.raises(SpecError, match="unknown profile 'nope': choose from quick, full, "):
        parse_selection("native", None, "nope", None)


def test_every_row_variant_survives_the_variant_label():
    """A value with a comma would split a stored variant label ('k=v,k=v') and never match."""
    for name in studies.study_names():
        for row in studies.load_study(name).rows:
            assert all("," not in str(v) for v in (row.variant or {}).values()), (name, row.claim)
    for claim in load_claims():
        assert all("," not in str(v) for v in claim.variant.values()), claim.id


# ibs2007: the Isolation Benchmark Suite's setup (Matthews et al., ExpCS 2007, results page Table 1, recorded in
# /work/shared/literature-claims.md): 4 guests, 1 misbehaving, every guest serving the web, six stressors;
# Table 1 gives a well-behaved and a misbehaving figure per stressor and product (DNR where not reported).
IBS_STRESSORS = {"cpu", "memory", "forkbomb", "disk", "net_send", "net_recv"}
IBS_MISBEHAVING_REPORTED = {"container": {"cpu", "forkbomb", "disk", "net_send"},  # OpenVZ: memory, net_recv DNR
                            "vm": {"cpu", "memory", "disk", "net_send", "net_recv"}}  # VMware/Xen: fork bomb DNR


def test_ibs2007_runs_the_suite_the_papers_way():
    from scenarios import isolation_noisy as noisy

    ibs = studies.load_study("ibs2007")
    params = studies.params_for(noisy, "ibs2007")
    p = noisy.plan(params)
    assert p.instances == 4 and p.workloads == ("web",) and set(p.stressors) == IBS_STRESSORS
    scaled = {s.field for s in ibs.scaled_for(noisy.NAME)}
    assert "instances" not in scaled and {"workloads", "stressors", "limits"} <= scaled
    assert not any("misbehaving guest's own degradation" in s for s in ibs.not_covered)
    claims = {c.id: c for c in load_claims()}
    rows = {(row.variant["stressor"], row.variant["role"], claims[row.claim].kind) for row in ibs.rows}
    assert all(row.metric == "web_good_fraction" for row in ibs.rows)
    for kind, reported in IBS_MISBEHAVING_REPORTED.items():
        assert {s for s, role, k in rows if role == "misbehaving" and k == kind} == reported, kind
    assert {s for s, role, k in rows if role == "well-behaved"} == IBS_STRESSORS
    for row in ibs.rows:  # a misbehaving row's claim carries the paper's misbehaving figures
        claim = claims[row.claim]
        assert (row.variant["role"] == "misbehaving") == claim.id.endswith("-misbehaving"), row.claim
        assert claim.variant.get("stressor") == row.variant["stressor"], row.claim
    assert claims["IBS-forkbomb-container-misbehaving"].published["openvz_pct"] == 87.80
    assert claims["IBS-memory-vm-misbehaving"].published["vmware_pct"] == 91.30
    assert noisy.plan(noisy.PROFILES["quick"]).instances == 2  # quick and full keep one victim and one aggressor


def test_felter_runs_the_papers_platforms_unless_others_are_named(felter):
    assert felter.platforms == ("native", "container", "docker", "vm")  # Docker with and without NAT, KVM
    config = parse_selection(None, None, "felter2015", None)
    assert config.platforms == felter.platforms and config.platforms_named  # every scenario on each
    assert parse_selection("native,container", None, "felter2015", None).platforms == ("native", "container")


def test_felter_skips_only_its_cpu_bound_scenarios_on_an_emulated_platform(felter):
    assert set(felter.skip_emulated) == {"hpcc", "compress"}
    reason = studies.emulated_skip_reason("felter2015", "hpcc", True, "vm: TCG (emulated)")
    assert reason and reason.startswith("not testable here (emulated): vm: TCG (emulated); HPL")
    assert studies.emulated_skip_reason("felter2015", "disk", True, "vm: TCG (emulated)") is None
    assert studies.emulated_skip_reason("felter2015", "hpcc", False, "vm: KVM") is None
    assert studies.emulated_skip_reason("quick", "cpu", True, "vm: TCG (emulated)") is None


@pytest.mark.parametrize("section, message", [
    ('[scenarios.cpu]\nskip_emulted = "typo"\n', r"\[scenarios.cpu\] has unknown key\(s\) skip_emulted"),
    ('[scenarios.cpu]\nskip_emulated = " "\n', "skip_emulated needs its reason"),
    ('', "unknown platform xen"),
])
def test_a_malformed_study_section_is_one_clear_error(tmp_path, monkeypatch, section, message):
    platforms = '["native", "xen"]' if not section else '["native"]'
    (tmp_path / "broken.toml").write_text(
        '[study]\ntitle = "t"\nauthors = "a"\nvenue = "v"\nyear = 2000\nurl = "u"\nbase_profile = "quick"\n'
        f'repetitions = 3\nscenarios = ["cpu"]\nplatforms = {platforms}\n{section}')
    monkeypatch.setattr(studies, "PROFILES_DIR", tmp_path)
    studies.load_study.cache_clear()
    try:
        with pytest.raises(SpecError, match=message):
            studies.load_study("broken")
    finally:
        studies.load_study.cache_clear()
