"""Statistics against values worked out by hand, and interval coverage checked by simulation."""

import math

import numpy as np
import pytest

from bench import stats

DRAWS = 2000  # simulated experiments per coverage check: binomial SE at 95 % is 0.5 points


def test_summary_known_values():
    s = stats.summarize([1.0, 2.0, 3.0, 4.0])
    assert s.n == 4
    assert s.median == 2.5
    assert s.mean == 2.5
    assert s.stdev == pytest.approx(1.2909944, rel=1e-6)
    assert s.cv == pytest.approx(1.2909944 / 2.5, rel=1e-6)
    assert (s.ci_low, s.ci_high) == (1.0, 4.0)
    assert s.interval.level == 0.875 and s.interval.method == stats.ORDER_STATISTIC


@pytest.mark.parametrize(("n", "level"), [(2, 0.5), (3, 0.75), (4, 0.875), (5, 0.9375), (6, 0.96875),
                                          (7, 1 - 2 / 128)])
def test_min_max_levels_at_small_n(n, level):
    iv = stats.median_interval([float(i) for i in range(n)])
    assert (iv.low, iv.high) == (0.0, float(n - 1))
    assert iv.level == pytest.approx(level)
    assert iv.reaches() == (level >= 0.95)


def test_narrowest_symmetric_pair_reaching_95():
    j, k, level = stats.order_statistic_ranks(10)
    assert (j, k) == (2, 9)  # [x(3), x(8)] would cover only 89 %
    assert level == pytest.approx(1 - 2 * (1 + 10) / 1024)
    assert stats.order_statistic_coverage(10, 3, 8) < 0.95
    j, k, level = stats.order_statistic_ranks(30)
    assert level >= 0.95 and stats.order_statistic_coverage(30, j + 1, k - 1) < 0.95


def test_labels_never_claim_more_than_the_level():
    assert stats.format_level(0.75) == "75 %"
    assert stats.format_level(0.96875) == "96.8 %"  # rounded down, never up
    assert stats.format_level(0.9499) == "94.9 %"
    assert "95 %" not in stats.median_interval([1.0, 2.0, 3.0]).label
    assert stats.median_interval([1.0, 2.0, 3.0]).label == "75 % interval (order statistic)"
    assert stats.median_interval([4.0]).label == "no interval"


def test_constant_values_have_a_point_interval():
    s = stats.summarize([5.0, 5.0, 5.0])
    assert (s.ci_low, s.ci_high, s.stdev, s.cv) == (5.0, 5.0, 0.0, 0.0)


def test_single_value():
    s = stats.summarize([7.0])
    assert (s.n, s.median, s.stdev, s.ci_low, s.ci_high, s.interval.level) == (1, 7.0, 0.0, 7.0, 7.0, 0.0)


def test_large_n_uses_bca_and_is_deterministic():
    values = list(np.random.default_rng(3).lognormal(0, 1, stats.BCA_MIN_N))
    iv = stats.median_interval(values)
    assert iv.method == stats.BCA and iv.level == 0.95
    assert iv.low < float(np.median(values)) < iv.high
    assert stats.median_interval(values) == iv


def test_ratio_of_identical_groups_includes_one():
    a = [100.0, 101.0, 99.0, 100.5, 99.5]
    r = stats.ratio(a, a)
    assert r.point == 1.0 and r.interval.contains(1.0)
    assert r.interval.level == pytest.approx(1 - 2 * 4 / 252)  # c = 2: P(U <= 2) = (1 + 1 + 2) / C(10, 5)


def test_ratio_at_three_vs_three_says_its_level():
    r = stats.ratio([50.0, 50.5, 49.5], [100.0, 101.0, 99.0])
    assert r.point == pytest.approx(0.5)
    assert r.interval.level == pytest.approx(0.9)  # 1 - 2 / C(6, 3)
    assert r.interval.high < 1.0 and not r.interval.reaches()
    assert "90 %" in r.note


def test_ratio_with_zero_or_negative_values_is_undefined():
    r = stats.ratio([1.0], [0.0])
    assert math.isnan(r.point) and not r.interval.defined and "zero" in r.note
    assert math.isnan(stats.ratio([0.0, 1.0], [1.0, 2.0]).point)


def test_mann_whitney_separated_groups():
    # fully separated samples of 5 and 5: exact two-sided p = 2 / C(10, 5) = 2/252
    assert stats.mann_whitney_p([1, 2, 3, 4, 5], [6, 7, 8, 9, 10]) == pytest.approx(2 / 252)
    assert stats.mann_whitney_p([1.0, 1.0, 1.0, 1.0], [1.0, 1.0, 1.0, 1.0]) == 1.0


def test_mann_whitney_says_when_n_cannot_reach_significance():
    result = stats.mann_whitney([4479.0, 4480.0, 4481.0], [614.0, 615.0, 616.0])
    assert result.p is None and result.smallest_p == pytest.approx(0.1)
    assert result.text == "n too small for p < 0.05 (3 vs 3: smallest possible p = 0.1)"
    assert math.isnan(stats.mann_whitney_p([1.0], [2.0, 3.0]))
    assert stats.mann_whitney([1, 2, 3, 4], [5, 6, 7, 8]).p == pytest.approx(2 / 70)


def test_change_verdicts_use_direction_and_level():
    faster = stats.ratio([200.0, 201, 202, 203, 204, 205], [100.0, 101, 102, 103, 104, 105])
    assert stats.change_verdict(faster, higher_is_better=True) == "better"
    assert stats.change_verdict(faster, higher_is_better=False) == "worse"
    same = stats.ratio([100.0, 102, 104, 101, 103, 105], [101.0, 103, 100, 104, 102, 105])
    assert stats.change_verdict(same, higher_is_better=True) == "no detectable change"
    tiny = stats.ratio([200.0, 201, 202], [100.0, 101, 102])
    assert stats.change_verdict(tiny, True) == "better (at 90 %; n too small for 95 %)"


def test_empty_summary_is_an_error():
    with pytest.raises(ValueError):
        stats.summarize([])


def test_cv():
    assert stats.cv([1.0]) == 0.0
    assert stats.cv([1.0, 3.0]) == pytest.approx(math.sqrt(2) / 2)
    assert math.isnan(stats.cv([-1.0, 1.0]))


def test_noisiest_respects_precision_metrics():
    from bench.harness import noisiest

    per_metric = {"fio_iops[rw=read] (IOPS)": [100.0, 101.0], "fio_clat_p99[rw=read] (µs)": [10.0, 30.0]}
    assert noisiest(per_metric)[0].startswith("fio_clat_p99")
    name, cv = noisiest(per_metric, ("fio_iops",))
    assert name.startswith("fio_iops") and cv < 0.01


# -- coverage by simulation (skewed data: lognormal(0, 1), whose median is 1) ----------------------------

def _median_coverage(n: int, seed: int) -> tuple[float, float]:
    rng = np.random.default_rng(seed)
    hits, level = 0, 0.0
    for _ in range(DRAWS):
        iv = stats.median_interval(rng.lognormal(0.0, 1.0, n))
        hits += iv.contains(1.0)
        level = iv.level
    return hits / DRAWS, level


def test_three_values_cover_the_median_75_percent_of_the_time():
    coverage, level = _median_coverage(3, seed=11)
    assert level == 0.75
    assert 0.72 <= coverage <= 0.78


def test_nominal_95_interval_covers_93_to_97_percent():
    coverage, level = _median_coverage(12, seed=12)  # [x(3), x(10)]: exact level 96.1 %
    assert level == pytest.approx(1 - 2 * (1 + 12 + 66) / 4096)
    assert 0.93 <= coverage <= 0.97
    assert abs(coverage - level) < 0.015


def test_ratio_interval_covers_at_its_stated_level():
    rng = np.random.default_rng(13)
    for m, expected in ((3, 0.9), (6, 0.9589)):
        hits, level = 0, 0.0
        for _ in range(DRAWS):
            change = stats.ratio(2.0 * rng.lognormal(0.0, 1.0, m), rng.lognormal(0.0, 1.0, m))
            hits += change.interval.contains(2.0)
            level = change.interval.level
        assert level == pytest.approx(expected, abs=1e-4)
        assert abs(hits / DRAWS - level) < 0.02
