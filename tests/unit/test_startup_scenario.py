"""The startup scenario measures start-to-exit through Platform.run_once and ready-for-exec the same way on
every platform (fake platforms: pure logic, nothing is started)."""

from __future__ import annotations

import pytest

from bench.sanity import check_repetition
from runtime.platform import DEFAULT_RUN_ONCE, Instance, Platform, PlatformInfo, RunOnce, StartPhases
from runtime.spec import ExecResult
from scenarios import startup
from scenarios.base import ScenarioError


class FakeInstance(Instance):
    platform = "fake"

    def __init__(self, log: list[str], code: int = 0) -> None:
        self.log, self.code = log, code
        self.instance_id = "fake-1"
        self.start_phases = StartPhases({"boot": 0.001})
        log.append("create")

    def exec(self, argv, timeout=600.0, env=None):
        self.log.append("exec " + " ".join(argv))
        return ExecResult(tuple(argv), self.code, "", "no such thing" if self.code else "", 0.001)

    def put_file(self, local, remote):
        raise NotImplementedError

    def get_file(self, remote, local):
        raise NotImplementedError

    def destroy(self):
        self.log.append("destroy")


class DefaultPlatform(Platform):
    """Only create: run_once is the base class's create + exec + destroy."""

    name = "fake"

    def __init__(self, code: int = 0) -> None:
        self.log: list[str] = []
        self.code = code

    def create(self, spec):
        return FakeInstance(self.log, self.code)

    def describe(self):
        return PlatformInfo("fake", "container", "fake", "#123456", "nothing", False, False)


class OneShotPlatform(DefaultPlatform):
    one_shot = "its own run"

    def run_once(self, argv, spec=None, timeout=120.0):
        self.log.append("run " + " ".join(argv))
        return RunOnce(0.002, 0, self.one_shot, {"spawn": 0.001})


def metrics(samples):
    return {(s.metric, tuple(sorted((k, v) for k, v in s.metadata.items() if k != "instance"))) for s in samples}


def test_default_run_once_is_create_exec_destroy_and_gives_ready_and_teardown():
    platform = DefaultPlatform()
    once = platform.run_once(["/bin/true"])
    assert platform.log == ["create", "exec /bin/true", "destroy"]
    assert once.path == DEFAULT_RUN_ONCE and once.returncode == 0 and once.phases == {"boot": 0.001}
    assert once.ready_s is not None and once.teardown_s is not None
    assert 0 < once.ready_s <= once.seconds and 0 < once.teardown_s <= once.seconds


def test_default_path_measures_both_from_the_same_instances():
    platform = DefaultPlatform()
    raws: dict[str, str] = {}
    samples = startup.run_platform(platform, {"serial": 2, "parallel": 2}, raws.__setitem__)
    assert platform.log.count("create") == 4  # 2 serial + 2 parallel: no extra instance for start-to-exit
    assert metrics(samples) == {
        ("start_to_exit_s", (("mode", "serial"),)), ("startup_ready_s", (("mode", "serial"),)),
        ("teardown_s", (("mode", "serial"),)), ("startup_phase_s", (("phase", "boot"),)),
        ("startup_all_ready_s", (("instances", 2), ("mode", "parallel"))),
        ("teardown_all_s", (("instances", 2), ("mode", "parallel"))),
        ("startup_all_exit_s", (("instances", 2), ("mode", "parallel")))}
    assert check_repetition(startup, samples) == samples  # every metric declared, every value plausible
    assert "one-shot path: create+exec+destroy" in raws["startup.log"]


def test_one_shot_path_is_used_and_its_phases_kept_apart():
    platform = OneShotPlatform()
    samples = startup.run_platform(platform, {"serial": 2, "parallel": 3}, lambda *_: None)
    assert platform.log.count("run /bin/true") == 2 + 3
    assert platform.log.count("create") == 2 + 3  # ready-for-exec still through create + exec
    found = metrics(samples)
    assert ("start_to_exit_phase_s", (("phase", "spawn"),)) in found
    assert ("startup_phase_s", (("phase", "boot"),)) in found
    exits = [s for s in samples if s.metric == "start_to_exit_s"]
    assert [s.value for s in exits] == [0.002, 0.002] and [s.metadata["instance"] for s in exits] == [0, 1]
    assert check_repetition(startup, samples) == samples


def test_a_failing_command_is_a_scenario_error_that_says_why():
    with pytest.raises(ScenarioError, match=r"exited 1 on fake .*no such thing"):
        startup.run_platform(DefaultPlatform(code=1), {"serial": 1, "parallel": 1}, lambda *_: None)


def test_every_declared_metric_has_a_range():
    assert set(startup.METRICS) == set(startup.RANGES)
    assert set(startup.PRECISION_METRICS) <= set(startup.METRICS)
