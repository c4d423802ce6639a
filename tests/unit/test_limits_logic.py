"""Limit accuracy as pure logic: interval series from captured outputs, the settled rate and settle time,
the plan of instances, and one clear error for limits that cannot be asked of this host."""

import math

import pytest

from runtime.errors import SpecError
from scenarios import isolation_limits as limits
from scenarios.parsers import ParseError, series


def test_sysbench_intervals_from_a_real_capture(fixtures_dir):
    text = (fixtures_dir / "sysbench" / "cpu-report-interval-quota50.txt").read_text()
    rates = series.sysbench_intervals(text)
    assert [t for t, _ in rates] == [1.0, 2.0, 3.0]  # (the 4th report did not come on a loaded host)
    assert all(r > 0 for _, r in rates)


def test_fio_bandwidth_log_from_a_real_capture(fixtures_dir):
    rates = series.fio_bw_log((fixtures_dir / "fio" / "bw-log-read-cap-10MiB.log").read_text())
    assert len(rates) == 8 and rates[0][0] == pytest.approx(0.503)
    assert series.steady_rate(rates) / 2**20 == pytest.approx(10, rel=0.25)


def test_iperf3_intervals_from_a_real_capture(fixtures_dir):
    rates = series.iperf3_intervals((fixtures_dir / "iperf3" / "tcp-1stream.json").read_text())
    assert rates and all(r > 0 for _, r in rates)


@pytest.mark.parametrize("text", ["", "[ 1s ] thds: 1 eps: nan lat (ms,95%): 1.0\n",
                                  "[ 1s ] thds: 1 eps: -5.0 lat (ms,95%): 1.0\n",
                                  "[ 2s ] thds: 1 eps: 5.0 lat\n[ 1s ] thds: 1 eps: 5.0 lat\n"])
def test_implausible_sysbench_series_are_errors(text):
    with pytest.raises(ParseError):
        series.sysbench_intervals(text)


def test_truncated_fio_log_line_is_an_error():
    with pytest.raises(ParseError, match="line 2"):
        series.fio_bw_log("500, 10240, 0, 0, 0\n1000, 10\n")


def test_settle_time():
    flat = [(float(t), 10.0) for t in range(1, 7)]
    assert series.settle_time(flat) == 1.0  # held from the first interval
    ramp = [(1.0, 40.0), (2.0, 25.0), (3.0, 10.5), (4.0, 10.0), (5.0, 9.8), (6.0, 10.1)]
    assert series.settle_time(ramp) == 3.0
    noisy = [*ramp, (7.0, 16.0), (8.0, 10.0), (9.0, 10.0), (10.0, 10.0), (11.0, 10.0)]  # one blip
    assert series.settle_time(noisy) == 3.0
    never = [(1.0, 1.0), (2.0, 10.0), (3.0, 1.0), (4.0, 10.0)]
    assert series.settle_time(never) is None


def test_plan_rounds_hold_the_kth_value_of_every_list():
    plans = limits._round_specs(limits.PROFILES["full"])
    quotas = [c.requested for _, cases in plans for c in cases if c.limit == "cpu_quota"]
    assert quotas == [0.25, 0.5, 0.75]
    first_spec, _ = plans[0]
    assert first_spec.cpus == 0.25 and first_spec.io_read_bps == 10 * 2**20 and first_spec.bandwidth == 50_000_000
    assert first_spec.network == "bridge" and first_spec.memory == 256 * 2**20
    assert sum(c.limit == "memory" for _, cases in plans for c in cases) == 1
    assert plans[-1][0].cpuset == "0"


def test_case_samples_and_ratio():
    case = limits.Case("disk_read_bps", 10.0, "MiB/s", "io_read_bps", achieved=9.5, settle_s=1.5)
    by_metric = {s.metric: s.value for s in case.samples()}
    assert by_metric == {"limit_enforced": 1.0, "limit_achieved_ratio": 0.95, "limit_achieved_mib_s": 9.5,
                         "limit_settle_s": 1.5}
    ignored = limits.Case("memory", 256.0, "MiB", "memory", enforced=False, note="not enforced")
    assert [(s.metric, s.value) for s in ignored.samples()] == [("limit_enforced", 0.0)]


@pytest.mark.parametrize(("change", "message"), [
    ({"cpu_quota": [0]}, "cpu quota 0"),
    ({"cpu_quota": [1000]}, "at most the host"),
    ({"memory_mib": 10**9}, "below the host"),
    ({"disk_read_mib_s": [-1]}, "greater than zero"),
    ({"seconds": 1}, "at least 2"),
])
def test_bad_parameters_give_one_clear_error(change, message):
    with pytest.raises(SpecError, match=message):
        limits.validate({**limits.PROFILES["quick"], **change})


def test_profiles_are_valid_here():
    for params in limits.PROFILES.values():
        limits.validate(params)
    assert not math.isnan(limits.MIB)


def test_disk_quota_is_its_own_round_in_the_full_profile_only():
    assert not limits.PROFILES["quick"].get("disk_quota_mib")  # the quick profile's time is unchanged
    plans = limits._round_specs(limits.PROFILES["full"])
    rounds = [spec for spec, cases in plans if any(c.limit == "disk_quota" for c in cases)]
    assert len(rounds) == 1 and rounds[0].disk_quota == 64 * 2**20
    assert rounds[0].limits() == {"disk_quota": 64 * 2**20}  # alone: no io cap on the same instance
