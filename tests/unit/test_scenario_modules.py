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
    assert callable(module.run)


def test_network_asks_for_the_bridge():
    assert network.instance_spec(network.PROFILES["quick"]) == InstanceSpec(network="bridge")


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
    assert [j["name"] for j in disk._jobs(quick, "volume")] == ["seqwrite", "randread", "randwrite"]
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
