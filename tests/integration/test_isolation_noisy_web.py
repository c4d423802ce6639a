"""The noisy-neighbour scenario's web workload for real (the Isolation Benchmark Suite's way, kept short):
in our container three instances serve the web (two well-behaved, one misbehaving) alone and while the
misbehaving one runs a CPU stressor, and both roles get a fraction of good responses; on native (the host's
network stack) the servers listen on the suite bridge's host address and the bombs are skipped. No server,
instance or state remains afterwards."""

import json
import re
import subprocess
from pathlib import Path

from runtime.container.platform import ContainerPlatform
from runtime.naming import STATE_ROOT
from runtime.native import NativePlatform
from scenarios import isolation_noisy as noisy

BASE = {**noisy.PROFILES["quick"], "workloads": ["web"], "seconds": 2, "settle_s": 0.5, "web_rate": 10}


def run(platform, params):
    raws: dict[str, str] = {}
    samples = noisy.run_platform(platform, params, lambda name, text: raws.__setitem__(name, text))
    return samples, raws


def fractions(samples, stressor, role):
    return [s.value for s in samples if s.metric == "web_good_fraction" and s.metadata["stressor"] == stressor
            and s.metadata["role"] == role]


def assert_nothing_left(raws, params):
    ids = [i for line in re.findall(r"instances: well-behaved ([^,]+), misbehaving (\S+)", raws["noisy.log"])
           for part in line for i in part.split()]
    assert len(ids) == params["instances"], raws["noisy.log"]
    mounts = Path("/proc/self/mounts").read_text()
    for instance_id in ids:
        assert instance_id not in mounts, f"{instance_id}: a mount remains"
        assert not list(Path("/sys/fs/cgroup").glob(f"*/isolab/{instance_id}")), f"{instance_id}: a cgroup remains"
        if STATE_ROOT.is_dir():
            assert not list(STATE_ROOT.glob(f"*{instance_id}*")), f"{instance_id}: state remains"
    ports = range(params["web_port"], params["web_port"] + params["instances"])
    listening = subprocess.run(["ss", "-Hltn"], capture_output=True, text=True, check=True).stdout
    assert not [p for p in ports if re.search(rf":{p}\s", listening)], f"a web server still listens:\n{listening}"


def test_container_three_instances_serve_both_roles_alone_and_beside_a_cpu_stressor(image, require_root):
    params = {**BASE, "instances": 3, "stressors": ["cpu"]}
    samples, raws = run(ContainerPlatform(image), params)
    evidence = {r["stressor"]: r for r in json.loads(raws[noisy.EVIDENCE_FILE])}
    for stressor in ("none", "cpu"):
        assert evidence[stressor]["outcome"] == "ok", evidence[stressor]
        web = evidence[stressor]["web"]
        assert sorted(web) == ["misbehaving", "well-behaved-1", "well-behaved-2"]
        assert all(t["sent"] == 20 for t in web.values()), web  # 10/s for 2 s each
        for role in noisy.ROLES:
            (value,) = fractions(samples, stressor, role)
            assert 0 < value <= 1
    (alone,) = fractions(samples, "none", "well-behaved")
    assert alone >= 0.9, evidence["none"]["web"]  # a 16 KiB static page within 1 s, no neighbour misbehaving
    assert not [s for s in samples if s.metric == "victim_cpu_events_per_s"]  # web only
    assert_nothing_left(raws, params)


def test_native_serves_on_the_bridge_host_address_and_skips_the_bombs(image, require_root):
    params = {**BASE, "instances": 2, "stressors": ["memory"]}
    samples, raws = run(NativePlatform(image), params)
    evidence = {r["stressor"]: r for r in json.loads(raws[noisy.EVIDENCE_FILE])}
    assert evidence["memory"]["outcome"] == "skipped" and "memory limit is ignored" in evidence["memory"]["why"]
    assert evidence["none"]["outcome"] == "ok" and fractions(samples, "none", "misbehaving")
    (alone,) = fractions(samples, "none", "well-behaved")
    assert alone >= 0.9, evidence["none"]["web"]
    assert_nothing_left(raws, params)
