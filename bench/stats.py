"""Statistics over repeated measurements: summaries, bootstrap intervals, ratios, significance.

Pure functions on sequences of floats; deterministic (seeded resampling) so a report rebuilt from
the same samples shows the same intervals.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats as sstats

BOOTSTRAP_RESAMPLES = 10_000
CONFIDENCE = 0.95
SEED = 20261128


@dataclass(frozen=True)
class Summary:
    n: int
    median: float
    mean: float
    stdev: float  # sample standard deviation (ddof=1); 0 for n == 1
    cv: float  # stdev / mean; nan when the mean is 0
    ci_low: float  # bootstrap CI of the median
    ci_high: float


def _rng() -> np.random.Generator:
    return np.random.default_rng(SEED)


def bootstrap_median_ci(values: Sequence[float], confidence: float = CONFIDENCE,
                        resamples: int = BOOTSTRAP_RESAMPLES) -> tuple[float, float]:
    data = np.asarray(values, dtype=float)
    if data.size == 0:
        return (math.nan, math.nan)
    if data.size == 1:
        return (float(data[0]), float(data[0]))
    picks = _rng().integers(0, data.size, size=(resamples, data.size))
    medians = np.median(data[picks], axis=1)
    alpha = (1 - confidence) / 2
    return (float(np.quantile(medians, alpha)), float(np.quantile(medians, 1 - alpha)))


def summarize(values: Sequence[float]) -> Summary:
    data = np.asarray(values, dtype=float)
    if data.size == 0:
        raise ValueError("cannot summarize an empty set of values")
    mean = float(data.mean())
    stdev = float(data.std(ddof=1)) if data.size > 1 else 0.0
    low, high = bootstrap_median_ci(data)
    return Summary(n=int(data.size), median=float(np.median(data)), mean=mean, stdev=stdev,
                   cv=stdev / mean if mean else math.nan, ci_low=low, ci_high=high)


def ratio_ci(values: Sequence[float], baseline: Sequence[float], confidence: float = CONFIDENCE,
             resamples: int = BOOTSTRAP_RESAMPLES) -> tuple[float, float, float]:
    """Ratio of medians (values / baseline) with a bootstrap CI, resampling both groups independently."""
    a = np.asarray(values, dtype=float)
    b = np.asarray(baseline, dtype=float)
    if a.size == 0 or b.size == 0 or np.median(b) == 0:
        return (math.nan, math.nan, math.nan)
    point = float(np.median(a) / np.median(b))
    rng = _rng()
    ma = np.median(a[rng.integers(0, a.size, size=(resamples, a.size))], axis=1)
    mb = np.median(b[rng.integers(0, b.size, size=(resamples, b.size))], axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratios = ma / mb
    ratios = ratios[np.isfinite(ratios)]
    alpha = (1 - confidence) / 2
    return (point, float(np.quantile(ratios, alpha)), float(np.quantile(ratios, 1 - alpha)))


def mann_whitney_p(a: Sequence[float], b: Sequence[float]) -> float:
    """Two-sided Mann-Whitney U p-value; nan when either side has fewer than 2 values."""
    if len(a) < 2 or len(b) < 2:
        return math.nan
    if len(set(a) | set(b)) == 1:
        return 1.0
    return float(sstats.mannwhitneyu(a, b, alternative="two-sided").pvalue)
