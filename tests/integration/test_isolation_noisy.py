"""The noisy-neighbour scenario for real, quick profile, on native and in our container: the victim is
measured alone and beside each stressor, the host heartbeat keeps its 10 ms beat (p99 < 100 ms) during the
container's fork bomb and memory bomb, native skips the bombs with the reason, and nothing the run created
remains on the host afterwards."""

import json
import os
import re
from pathlib import Path

import pytest

from runtime.container.platform import ContainerPlatform
from runtime.naming import STATE_ROOT
from runtime.native import NativePlatform
from scenarios import isolation_noisy as noisy
from scenarios.base import ScenarioError

PARAMS = noisy.PROFILES["quick"]


def run(platform) -> tuple[list, dict[str, str]]:
    raws: dict[str, str] = {}
    samples = noisy.run_platform(platform, PARAMS, lambda name, text: raws.__setitem__(name, text))
    return samples, raws


def instance_ids(raws: dict[str, str]) -> list[str]:
    ids = re.findall(r"victim (\S+), aggressor (\S+) ", raws["noisy.log"])
    assert ids, raws["noisy.log"]
    return [i for pair in ids for i in pair]


def assert_nothing_left(ids: list[str]) -> None:
    mounts = Path("/proc/self/mounts").read_text()
    for instance_id in ids:
        assert instance_id not in mounts, f"{instance_id}: a mount remains"
        assert not list(Path("/sys/fs/cgroup").glob(f"*/isolab/{instance_id}")), f"{instance_id}: a cgroup remains"
        assert not list(Path("/sys/fs/cgroup").glob(f"*/isolab/*/{instance_id}")), f"{instance_id}: a cgroup remains"
        if STATE_ROOT.is_dir():
            assert not list(STATE_ROOT.glob(f"*{instance_id}*")), f"{instance_id}: state remains"
    # no heartbeat child of this process outlives the run
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            text = cmdline.read_bytes().decode(errors="replace")
            stat = (cmdline.parent / "stat").read_text()
        except OSError:
            continue
        parent = int(stat.rsplit(")", 1)[1].split()[1])
        assert not (parent == os.getpid() and "select.select" in text), "a heartbeat child remains"


def by(samples, metric, stressor):
    return [s.value for s in samples if s.metric == metric and s.metadata["stressor"] == stressor]


def test_container_victim_beside_bombs_and_the_host_keeps_its_beat(image, require_root):
    samples, raws = run(ContainerPlatform(image))
    evidence = {r["stressor"]: r for r in json.loads(raws[noisy.EVIDENCE_FILE])}
    for stressor in ("none", *noisy.plan(PARAMS).stressors):
        assert evidence[stressor]["outcome"] == "ok", evidence[stressor]
        assert len(by(samples, "victim_cpu_events_per_s", stressor)) == 1
        assert not evidence[stressor]["watchdog_fired"]
    assert "Cannot fork" in raws.get("aggressor-limited-forkbomb.txt", "Cannot fork")  # it reached pids.max
    for bomb in ("forkbomb", "memory"):
        (p99,) = by(samples, "heartbeat_lateness_p99", bomb)
        assert 0 <= p99 < noisy.HEARTBEAT_P99_LIMIT_MS, f"host heartbeat p99 {p99:.1f} ms during the {bomb}"
        assert by(samples, "heartbeat_lateness_max", bomb)[0] >= p99
    assert all(s.value > 0 for s in samples)
    assert_nothing_left(instance_ids(raws))


def test_native_skips_the_bombs_and_says_why(image, require_root):
    samples, raws = run(NativePlatform(image))
    evidence = {r["stressor"]: r for r in json.loads(raws[noisy.EVIDENCE_FILE])}
    assert evidence["forkbomb"]["outcome"] == "skipped" and "pids limit" in evidence["forkbomb"]["why"]
    assert evidence["memory"]["outcome"] == "skipped" and "memory limit is ignored" in evidence["memory"]["why"]
    assert not by(samples, "victim_cpu_events_per_s", "forkbomb")
    for stressor in ("none", "cpu"):
        if stressor == "none" or stressor in PARAMS["stressors"]:
            assert evidence[stressor]["outcome"] == "ok"
            assert by(samples, "victim_cpu_events_per_s", stressor)
    assert_nothing_left(instance_ids(raws))


def test_bad_parameters_one_clear_error_before_anything_starts(image, require_root):
    raws: dict[str, str] = {}
    bad = {**PARAMS, "stressors": ["forkbomb", "tsunami"], "limits": {**PARAMS["limits"], "pids_max": -1}}
    with pytest.raises(ScenarioError, match=r"bad parameters: unknown stressors tsunami.*pids_max -1") as err:
        noisy.run_platform(ContainerPlatform(image), bad, lambda name, text: raws.__setitem__(name, text))
    assert str(err.value).count(noisy.NAME) == 1
    assert raws == {}  # nothing ran, nothing was created
