"""Statistics against values worked out by hand."""

import math

import pytest

from bench import stats


def test_summary_known_values():
    s = stats.summarize([1.0, 2.0, 3.0, 4.0])
    assert s.n == 4
    assert s.median == 2.5
    assert s.mean == 2.5
    assert s.stdev == pytest.approx(1.2909944, rel=1e-6)
    assert s.cv == pytest.approx(1.2909944 / 2.5, rel=1e-6)
    assert 1.0 <= s.ci_low <= s.median <= s.ci_high <= 4.0


def test_constant_values_have_a_point_interval():
    s = stats.summarize([5.0, 5.0, 5.0])
    assert (s.ci_low, s.ci_high, s.stdev, s.cv) == (5.0, 5.0, 0.0, 0.0)


def test_single_value():
    s = stats.summarize([7.0])
    assert (s.n, s.median, s.stdev, s.ci_low, s.ci_high) == (1, 7.0, 0.0, 7.0, 7.0)


def test_bootstrap_is_deterministic():
    values = [10.0, 11.0, 9.5, 10.2, 10.8]
    assert stats.bootstrap_median_ci(values) == stats.bootstrap_median_ci(values)


def test_ratio_of_identical_groups_includes_one():
    a = [100.0, 101.0, 99.0, 100.5, 99.5]
    point, low, high = stats.ratio_ci(a, a)
    assert point == 1.0
    assert low <= 1.0 <= high


def test_ratio_of_halved_group():
    point, _low, high = stats.ratio_ci([50.0, 50.5, 49.5], [100.0, 101.0, 99.0])
    assert point == pytest.approx(0.5)
    assert high < 1.0


def test_ratio_with_zero_baseline_is_nan():
    assert all(math.isnan(x) for x in stats.ratio_ci([1.0], [0.0]))


def test_mann_whitney_separated_groups():
    # fully separated samples of 5 and 5: exact two-sided p = 2 / C(10, 5) = 2/252
    assert stats.mann_whitney_p([1, 2, 3, 4, 5], [6, 7, 8, 9, 10]) == pytest.approx(2 / 252)
    assert math.isnan(stats.mann_whitney_p([1.0], [2.0, 3.0]))
    assert stats.mann_whitney_p([1.0, 1.0], [1.0, 1.0]) == 1.0


def test_empty_summary_is_an_error():
    with pytest.raises(ValueError):
        stats.summarize([])


def test_noisiest_respects_precision_metrics():
    from bench.harness import noisiest

    per_metric = {"fio_iops[rw=read] (IOPS)": [100.0, 101.0], "fio_clat_p99[rw=read] (µs)": [10.0, 30.0]}
    assert noisiest(per_metric)[0].startswith("fio_clat_p99")
    name, cv = noisiest(per_metric, ("fio_iops",))
    assert name.startswith("fio_iops") and cv < 0.01
