"""Noisy neighbour, pure logic: degradation math, heartbeat statistics, parameter checks, the safety rule,
and the report section built from hand-made samples and evidence."""

import json
import math

import pytest

from bench.results import SampleRecord
from reporting import noisy as report
from runtime.platform import PlatformInfo
from runtime.spec import InstanceSpec
from scenarios import heartbeat
from scenarios import isolation_noisy as noisy
from scenarios.base import ScenarioError

# -- degradation ---------------------------------------------------------------------------------------

def test_throughput_degradation_is_one_minus_the_ratio_of_medians():
    d = report.degradation([100.0, 102.0, 98.0], [80.0, 79.0, 81.0], higher_is_better=True)
    assert d.point_pct == pytest.approx(20.0)  # 80 / 100
    # 3 vs 3: the widest Mann-Whitney interval reaches 90 %: pairwise ratios 79/102 .. 81/98
    assert d.interval.level == pytest.approx(0.9)
    assert d.interval.low == pytest.approx(100 * (1 - 81 / 98))
    assert d.interval.high == pytest.approx(100 * (1 - 79 / 102))
    assert (d.n_alone, d.n_contended) == (3, 3)
    assert "+20.0 %" in d.text and "90 % interval" in d.text and "n = 3 vs 3" in d.text


def test_latency_degradation_is_the_ratio_minus_one():
    d = report.degradation([50.0, 51.0, 49.0], [75.0, 76.0, 74.0], higher_is_better=False)
    assert d.point_pct == pytest.approx(50.0)
    assert d.interval.low == pytest.approx(100 * (74 / 51 - 1))
    assert d.interval.high == pytest.approx(100 * (76 / 49 - 1))


def test_no_degradation_interval_straddles_zero_and_improvement_is_negative():
    d = report.degradation([100.0, 110.0, 90.0], [105.0, 95.0, 100.0], higher_is_better=True)
    assert d.interval.low < 0 < d.interval.high
    assert report.degradation([100.0] * 2, [110.0] * 2, True).point_pct == pytest.approx(-10.0)


def test_degradation_of_bad_values_is_not_comparable():
    d = report.degradation([100.0, 0.0], [50.0, 60.0], True)
    assert math.isnan(d.point_pct) and d.text.startswith("not comparable")
    assert report.degradation([1.0], [2.0], True).text.endswith("(no interval), n = 1 vs 1")


# -- heartbeat -----------------------------------------------------------------------------------------

def test_heartbeat_p99_is_a_nearest_rank_value_and_max_the_largest():
    late = [0.1] * 98 + [5.0, 120.0]
    s = heartbeat.lateness_stats(late)
    assert (s.n, s.p99_ms, s.max_ms) == (100, 5.0, 120.0)
    assert s.mean_ms == pytest.approx((0.1 * 98 + 125) / 100)
    assert heartbeat.lateness_stats([0.1] * 99 + [80.0]).p99_ms == 0.1
    assert heartbeat.percentile_nearest_rank([3.0], 99) == 3.0
    assert heartbeat.percentile_nearest_rank([1.0, 2.0, 3.0, 4.0], 50) == 2.0


@pytest.mark.parametrize("bad", [[], [float("nan")], [1.0, -0.5], [math.inf]])
def test_heartbeat_refuses_impossible_records(bad):
    with pytest.raises(ValueError):
        heartbeat.lateness_stats(bad)


def test_heartbeat_child_beats_and_stops():
    with heartbeat.Heartbeat() as beat:
        import time

        time.sleep(0.3)
        late = beat.stop()
    assert 5 <= len(late) <= 31 and all(v >= 0 for v in late)


# -- parameters ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("profile", ["quick", "full"])
def test_profiles_are_valid_and_the_fork_bomb_runs_last(profile):
    p = noisy.plan(noisy.PROFILES[profile])
    assert p.stressors[-1] == "forkbomb"
    assert p.limited.pids_max and p.limited.memory and p.safety.pids_max and p.safety.memory


def test_full_profile_is_complete():
    p = noisy.plan(noisy.PROFILES["full"])
    assert set(p.workloads) == set(noisy.WORKLOADS)
    assert set(p.stressors) == set(noisy.STRESSORS)
    assert set(p.settings) == set(noisy.SETTINGS)


def test_bad_parameters_give_one_clear_error_naming_each_problem():
    params = {**noisy.PROFILES["quick"], "stressors": ["cpu", "volcano"], "seconds": 0,
              "limits": {**noisy.PROFILES["quick"]["limits"], "cpus": 0}}
    with pytest.raises(ScenarioError) as err:
        noisy.plan(params)
    text = str(err.value)
    assert text.count("bad parameters") == 1
    assert "unknown stressors volcano" in text and "seconds must be" in text and "invalid cpus 0" in text


def test_a_memory_stress_below_the_limit_or_a_short_watchdog_is_refused():
    with pytest.raises(ScenarioError, match=r"memory_stress_mib .* must exceed"):
        noisy.plan({**noisy.PROFILES["quick"], "memory_stress_mib": 100})
    with pytest.raises(ScenarioError, match="watchdog_s"):
        noisy.plan({**noisy.PROFILES["quick"], "watchdog_s": 1})
    with pytest.raises(ScenarioError, match="unknown limits swap"):
        noisy.plan({**noisy.PROFILES["quick"], "limits": {"swap": 1}})


# -- safety --------------------------------------------------------------------------------------------

SPEC = InstanceSpec(memory=512 * 2**20, pids_max=128, cpus=0.5)


def test_bombs_run_where_their_bound_is_enforced():
    assert noisy.unbounded_reason("forkbomb", SPEC, {}, own_kernel=False) == ""  # a container
    assert noisy.unbounded_reason("memory", SPEC, {}, own_kernel=False) == ""
    assert noisy.unbounded_reason("forkbomb", SPEC, {"pids_max": 128}, own_kernel=True) == ""  # a guest


def test_bombs_are_skipped_where_limits_are_ignored_on_the_host_kernel():
    everything = SPEC.limits()
    why = noisy.unbounded_reason("forkbomb", SPEC, everything, own_kernel=False)
    assert "pids limit" in why and "shares the host kernel" in why
    assert "memory limit is ignored" in noisy.unbounded_reason("memory", SPEC, everything, own_kernel=False)
    # a guest whose memory is not enforced is no bound either
    assert noisy.unbounded_reason("forkbomb", SPEC, {"pids_max": 1, "memory": 1}, own_kernel=True)
    for stressor in ("cpu", "disk", "net_send", "net_recv"):
        assert noisy.unbounded_reason(stressor, SPEC, everything, own_kernel=False) == ""


def test_every_stressor_is_bounded_in_time():
    p = noisy.plan(noisy.PROFILES["full"])
    net = noisy._Net(None, "10.0.0.2", None)
    for stressor in noisy.STRESSORS:
        command = noisy.stressor_command(stressor, p, "/tmp", net)
        assert noisy.PIDFILE in command
        if stressor != "forkbomb":  # the fork bomb ends with the aggressor's destruction
            assert f"timeout -s KILL {int(p.watchdog_s) + 5}" in command


class _FakeInstance:
    def __init__(self, spec):
        self.spec, self.destroyed = spec, False

    def destroy(self):
        self.destroyed = True


class _FakePlatform:
    """create() fails for the spec with pids_max 13; remembers every instance it made."""

    def __init__(self):
        self.made = []

    def create(self, spec):
        if spec.pids_max == 13:
            raise RuntimeError("no room for the aggressor")
        self.made.append(_FakeInstance(spec))
        return self.made[-1]


def test_a_failed_creation_destroys_the_other_instance():
    platform = _FakePlatform()
    with pytest.raises(RuntimeError, match="no room"):
        noisy._create_pair(platform, InstanceSpec(), InstanceSpec(pids_max=13))
    assert len(platform.made) == 1 and platform.made[0].destroyed
    victim, aggressor = noisy._create_pair(platform, InstanceSpec(), InstanceSpec(pids_max=5))
    assert aggressor.spec.pids_max == 5 and not victim.destroyed and not aggressor.destroyed


# -- report --------------------------------------------------------------------------------------------

def _info(name, kind, emulated=False):
    return PlatformInfo(name=name, kind=kind, display_name=name, colour="#123456",
                        mechanism="TCG (emulated)" if emulated else "", emulated=emulated, baseline=kind == "native")


def test_report_section_shows_degradation_skips_reference_and_heartbeat(tmp_path):
    samples = []
    for platform, alone, contended in (("box", [100.0, 101.0, 99.0], [80.0, 81.0, 79.0]),
                                       ("base", [100.0, 101.0, 99.0], [50.0, 51.0, 49.0])):
        for stressor, values in (("none", alone), ("cpu", contended)):
            for rep, value in enumerate(values, 1):
                meta = {"setting": "limited", "stressor": stressor}
                samples.append(SampleRecord("r", platform, noisy.NAME, "victim_cpu_events_per_s", value, "events/s",
                                            rep, meta))
                samples.append(SampleRecord("r", platform, noisy.NAME, "heartbeat_lateness_p99",
                                            150.0 if platform == "base" else 2.0, "ms", rep, meta))
                samples.append(SampleRecord("r", platform, noisy.NAME, "heartbeat_lateness_max", 3.0, "ms", rep, meta))
    rep_dir = tmp_path / "raw" / "base" / noisy.NAME / "rep1"
    rep_dir.mkdir(parents=True)
    (rep_dir / noisy.EVIDENCE_FILE).write_text(json.dumps([
        {"setting": "limited", "stressor": "forkbomb", "outcome": "skipped", "why": "pids limit ignored here",
         "ignored_limits": ["cpus", "pids_max"]}]))
    infos = {"base": _info("base", "native"), "box": _info("box", "container")}
    page = report.section(samples, tmp_path, infos)
    assert "+20.0 %" in page and "+50.0 %" in page and "90 % interval" in page
    assert "pids limit ignored here" in page and "fork bomb" in page
    assert "limits ignored here: cpus, pids_max" in page
    assert "OpenVZ 21.3 %" not in page  # no network stressor was run: its reference row is not shown
    assert "OpenVZ 0 %" in page  # the cpu row carries its reference
    assert "background:#b71c1c" in page  # base's 150 ms heartbeat p99 is flagged
    assert report.section([], tmp_path, infos) == ""


def test_reference_figures_match_the_literature_notes():
    assert report.IBS_REFERENCE["net_send"]["OpenVZ"] == 21.3
    assert report.IBS_REFERENCE["net_recv"]["OpenVZ"] is None
    assert set(report.IBS_REFERENCE) == set(noisy.STRESSORS)
