"""The memory, disk and network scenarios for real on the native platform, shrunk below their quick profile.

Each runs prepare/run/cleanup the way the harness does and checks the samples' names, units and
variants, that failures surface as ScenarioError (a recorded cell failure, not a crash), and that
nothing is left behind (fio/iozone files, the peer netns and its veth).
"""

from pathlib import Path

import pytest

from bench import sanity
from runtime.native import NativePlatform
from runtime.spec import InstanceSpec
from scenarios import base, disk, memory, network
from scenarios.base import ScenarioError


def run_scenario(image, module, overrides):
    params = {**module.PROFILES["quick"], **overrides}
    raws: dict[str, str] = {}
    with NativePlatform(image).create(base.spec_for(module, params)) as instance:
        module.prepare(instance, params)
        samples = module.run(instance, params, lambda name, text: raws.__setitem__(name, text))
        if hasattr(module, "cleanup"):
            module.cleanup(instance, params)
        sanity.check_repetition(module, samples)  # real figures of real tools pass the sanity layer
        leftovers = sorted(p.name for p in instance.scratch.iterdir())
        if instance.volume is not None:
            leftovers += sorted(f"volume/{p.name}" for p in instance.volume.iterdir())
    return samples, raws, leftovers


def by_metric(samples):
    out: dict[str, list] = {}
    for sample in samples:
        out.setdefault(sample.metric, []).append(sample)
    return out


def test_memory_quick_shrunk(image):
    samples, raws, leftovers = run_scenario(image, memory, {"seconds": 1, "seq_block": "64M", "rnd_block": "64M"})
    metrics = by_metric(samples)
    assert {s.unit for s in metrics["sysbench_memory_bandwidth"]} == {"MiB/s"}
    assert {(s.metadata["access"], s.metadata["op"]) for s in metrics["sysbench_memory_bandwidth"]} == {
        ("seq", "read"), ("seq", "write"), ("rnd", "read"), ("rnd", "write")}
    assert all(s.value > 0 for s in samples)
    assert {s.metadata["op"] for s in metrics["memory_random_access_rate"]} == {"read", "write"}
    assert metrics["memory_random_access_rate"][0].unit == "M accesses/s"
    assert metrics["stressng_stream_read_bandwidth"][0].unit == "MB/s"
    assert "stress-ng-stream-t1.yaml" in raws
    assert leftovers == []


def test_disk_quick_shrunk(image):
    """Both storages of the quick profile (cow: the host disk behind /tmp; volume: the host dir at /mnt)."""
    assert disk.PROFILES["quick"]["storage"] == ["cow", "volume"]
    samples, raws, leftovers = run_scenario(image, disk, {
        "file_size": "64M", "runtime_s": 2, "iozone": {"file_size": "16M", "records": ["1M"], "tests": [0, 1]}})
    metrics = by_metric(samples)
    variants = {(s.metadata["storage"], s.metadata["rw"], s.metadata["direction"]) for s in metrics["fio_iops"]}
    assert variants == {("cow", "read", "read"), ("cow", "write", "write"), ("cow", "randread", "read"),
                        ("cow", "randwrite", "write"), ("cow", "randrw", "read"), ("cow", "randrw", "write"),
                        ("volume", "randread", "read"), ("volume", "randwrite", "write")}
    rand = next(s for s in metrics["fio_iops"] if s.metadata["rw"] == "randread")
    assert rand.metadata == {"storage": "cow", "rw": "randread", "bs": "4k", "iodepth": 32, "direction": "read"}
    assert "fio-randwrite-volume.json" in raws and "/mnt/isolab-fio.dat" in raws["fio-randwrite-volume.json"]
    assert {s.metadata["storage"] for s in metrics["iozone_throughput"]} == {"cow"}
    assert rand.unit == "IOPS" and rand.value > 0
    for meta in (s.metadata for s in metrics["fio_clat_p50"]):
        p50, p99, p999 = (next(s.value for s in metrics[m] if s.metadata == meta)
                          for m in ("fio_clat_p50", "fio_clat_p99", "fio_clat_p99_9"))
        assert 0 < p50 <= p99 <= p999
    assert metrics["fio_clat_p99"][0].unit == "µs" and metrics["fio_bandwidth"][0].unit == "MB/s"
    assert {s.metadata["test"] for s in metrics["iozone_throughput"]} == {"write", "rewrite", "read", "reread"}
    assert '"direct" : "1"' in raws["fio-randread.json"]
    assert leftovers == []


def test_disk_volume_missing_is_a_scenario_error(image):
    """An instance without the volume: the scenario refuses to measure the root disk and call it volume."""
    params = {**disk.PROFILES["quick"], "storage": ["volume"]}
    with NativePlatform(image).create(base.spec_for(disk, {"storage": ["cow"]})) as instance, \
            pytest.raises(ScenarioError, match="no data volume is mounted at /mnt"):
        disk.prepare(instance, params)


def test_disk_failure_is_a_scenario_error(image):
    params = {**disk.PROFILES["quick"], "target_dir": "/etc/hostname/fio"}
    with NativePlatform(image).create(base.spec_for(disk, params)) as instance, \
            pytest.raises(ScenarioError, match="mkdir"):
        disk.prepare(instance, params)


@pytest.fixture
def peers(monkeypatch):
    """Every PeerNamespace the scenario creates, to check it is gone afterwards."""
    import runtime.network.peer as peer_module

    created = []

    class Recorded(peer_module.PeerNamespace):
        def __init__(self, *args, **kwargs):
            created.append(self)
            super().__init__(*args, **kwargs)

    monkeypatch.setattr(peer_module, "PeerNamespace", Recorded)
    return created


def assert_peers_gone(peers):
    assert peers
    for peer in peers:
        assert not (Path("/run/netns") / peer.netns).exists()
        assert not (Path("/sys/class/net") / peer.host_link).exists()
        assert not peer.state_dir.exists()


def test_network_quick_shrunk(image, peers):
    """Native declares only `host`: the bridge and nat variants are noted as not measured."""
    raws: dict[str, str] = {}
    params = {**network.PROFILES["quick"], "seconds": 2, "rr_seconds": 2}
    samples = network.run_platform(NativePlatform(image), params, raws.__setitem__)
    sanity.check_repetition(network, samples)
    metrics = by_metric(samples)
    assert {s.metadata["network"] for s in samples} == {"host"}
    variants = {(s.metadata["direction"], s.metadata["streams"]) for s in metrics["iperf3_throughput"]}
    assert variants == {("forward", 1), ("forward", 4), ("reverse", 1), ("reverse", 4)}
    assert all(s.unit == "Gbit/s" and s.value > 0 for s in metrics["iperf3_throughput"])
    assert {s.metadata["test"] for s in metrics["netperf_rr_latency_p99"]} == {"TCP_RR", "UDP_RR"}
    for test in ("TCP_RR", "UDP_RR"):
        p50, p99 = (next(s.value for s in metrics[m] if s.metadata["test"] == test)
                    for m in ("netperf_rr_latency_p50", "netperf_rr_latency_p99"))
        assert 0 < p50 <= p99
    assert metrics["netperf_rr_transactions"][0].unit == "trans/s"
    assert set(raws) >= {"iperf3-host-reverse-P4.json", "netperf-host-UDP_RR.txt", "network-modes.log"}
    assert "from 10.213.0.1 " in raws["netperf-host-TCP_RR.txt"]  # bound to the suite bridge's host address
    assert "bridge: not measured: native does not support it" in raws["network-modes.log"]
    assert_peers_gone(peers)


def test_network_client_failure_is_a_scenario_error(image, peers):
    """iperf3 to the peer on a port where nothing listens: iperf3's own reason, peer still cleaned up."""
    params = {**network.PROFILES["quick"], "iperf3_port": 5299, "seconds": 1, "streams": [1],
              "directions": ["forward"]}
    with NativePlatform(image).create(InstanceSpec(network="host")) as instance:
        with network._peer() as (peer, bridge), pytest.raises(ScenarioError, match="unable to connect to server"):
            ends = network._Ends("host", "native (host)", lambda argv, timeout: instance.exec(argv, timeout),
                                 peer.address, True, bridge.gateway)
            network._iperf3(ends, params, lambda name, text: None)
    assert_peers_gone(peers)
