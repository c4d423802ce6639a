"""The memory, disk and network scenario modules follow the contract, without running anything."""

import pytest

from runtime.spec import InstanceSpec
from scenarios import disk, memory, network

MODULES = (memory, disk, network)


@pytest.mark.parametrize("module", MODULES, ids=lambda m: m.NAME)
def test_contract(module):
    assert module.NAME and module.DESCRIPTION and module.TOOLS and module.__doc__
    assert set(module.PROFILES) == {"quick", "full"}
    assert set(module.PROFILES["quick"]) == set(module.PROFILES["full"])
    assert callable(getattr(module, "run", None) or getattr(module, "run_platform", None))


def test_network_measures_each_mode_itself():
    assert callable(network.run_platform) and not hasattr(network, "run")
    for profile in network.PROFILES.values():
        assert profile["modes"] == ["bridge", "host", "nat"]
        assert set(profile["extra_modes"]) <= set(profile)


class FakePlatform:
    name = "fake"
    network_modes = ("none",)

    def create(self, spec):
        raise AssertionError("nothing to create: no mode of the profile is supported")


def test_network_without_any_supported_mode_is_a_scenario_error_and_a_note():
    from scenarios.base import ScenarioError

    raws = {}
    with pytest.raises(ScenarioError, match="fake supports none of the modes bridge, host, nat"):
        network.run_platform(FakePlatform(), dict(network.PROFILES["quick"]), raws.__setitem__)
    assert "nat: not measured: fake does not support it" in raws["network-modes.log"]


def test_nat_ruleset_forwards_only_between_the_suite_bridges():
    from runtime.network import nat

    book = {"ct-1": {"pid": 1, "address": "10.214.0.2", "host_address": "10.213.0.1", "suite_bridge": "islbr0",
                     "nat_bridge": "islnat0", "ports": [["tcp", 5201], ["tcp", 12865], ["udp", 12866]]}}
    text = nat.ruleset(book)
    assert text.startswith("table ip isolab\ndelete table ip isolab\n")  # atomic replace
    assert ('iifname "islbr0" ip daddr 10.213.0.1 tcp dport { 5201, 12865 } dnat to 10.214.0.2' in text)
    assert 'udp dport { 12866 } dnat to 10.214.0.2' in text
    assert 'iifname "islbr0" oifname "islnat0" ct status dnat ip daddr 10.214.0.2 accept' in text
    assert 'iifname "islnat0" oifname "islbr0" ct state established,related accept' in text
    assert 'iifname { "islbr0", "islnat0" } drop' in text and 'oifname { "islbr0", "islnat0" } drop' in text
    assert "masquerade" not in text and "snat" not in text
    assert nat.ruleset({}) == "table ip isolab\ndelete table ip isolab\n"
    assert {("tcp", 5201), ("tcp", 12865), ("tcp", 12866), ("udp", 12866)} <= set(nat.PUBLISHED_PORTS)


def test_memory_full_asks_for_enough_memory():
    assert memory.instance_spec(memory.PROFILES["quick"]).memory is None
    assert memory.instance_spec(memory.PROFILES["full"]).memory == 4 * 2**30


def test_disk_asks_for_the_volume_it_measures():
    assert disk.instance_spec(disk.PROFILES["quick"]) == InstanceSpec(volume=True)
    assert disk.instance_spec(disk.PROFILES["full"]) == InstanceSpec(volume=True)
    assert disk.instance_spec({**disk.PROFILES["quick"], "storage": ["cow"]}) == InstanceSpec()
    with pytest.raises(disk.ScenarioError, match="unknown storage"):
        disk.instance_spec({"storage": ["tmpfs"]})


def test_disk_storage_jobs_filter():
    quick, full = disk.PROFILES["quick"], disk.PROFILES["full"]
    assert [j["name"] for j in disk._jobs(quick, "volume")] == ["randread", "randwrite"]
    assert disk._jobs(quick, "cow") == quick["jobs"] and disk._jobs(full, "volume") == full["jobs"]


def test_quick_is_short():
    quick = disk.PROFILES["quick"]
    assert quick["runtime_s"] <= 5 and quick["file_size"] == "256M"
    assert network.PROFILES["quick"]["seconds"] <= 5 and network.PROFILES["quick"]["rr_seconds"] <= 5
    assert memory.PROFILES["quick"]["seconds"] <= 3


@pytest.mark.parametrize("job", disk.PROFILES["quick"]["jobs"], ids=lambda j: j["name"])
def test_every_fio_job_is_direct_and_time_based(job):
    argv = disk._fio_argv(disk.PROFILES["quick"], "/tmp", job)
    assert "--direct=1" in argv and "--time_based" in argv and "--output-format=json" in argv
    assert f"--filename=/tmp/{disk.FIO_FILE}" in argv


def test_disk_jobs_cover_the_issue():
    jobs = {(j["rw"], j["bs"], j["iodepth"], j.get("rwmixread")) for j in disk.PROFILES["full"]["jobs"]}
    assert {("read", "1M", 8, None), ("write", "1M", 8, None), ("randread", "4k", 32, None),
            ("randwrite", "4k", 32, None), ("randrw", "4k", 32, 70)} == jobs


def test_rr_selectors_include_the_percentiles():
    assert {"P50_LATENCY", "P99_LATENCY", "MEAN_LATENCY", "THROUGHPUT"} <= set(network.RR_SELECTORS)


class VanishedPeer:
    """A peer whose netns was removed under it: what a concurrent cleanup does."""

    netns = "isl00000000"

    def run(self, argv, timeout):
        import subprocess

        raise subprocess.SubprocessError("Exception occurred in preexec_fn.")

    def popen(self, argv):
        raise FileNotFoundError(2, "No such file or directory", f"/run/netns/{self.netns}")


def test_a_vanished_peer_is_a_scenario_error_not_a_crash():
    from scenarios.base import ScenarioError

    with pytest.raises(ScenarioError, match="cannot run ss in peer isl00000000"):
        network._in_peer(VanishedPeer(), ["ss", "-ltn"])
    with pytest.raises(ScenarioError, match="cannot start iperf3 in peer"):
        network._start_server(VanishedPeer(), ["iperf3", "-s"], 5201, 1)


def test_stream_runs_long_enough_for_its_rates():
    """stress-ng 0.15 computes the stream stressor's MB/s only after about 5 s (scenarios/parsers/stressng.py):
    a shorter profile fails every memory cell (4 s did, in a quick run on 2026-11-28)."""
    from scenarios import memory

    assert all(int(p["stream_seconds"]) >= 6 for p in memory.PROFILES.values())
