"""Statistics over repeated measurements, used by the harness (repetition policy) and the report alike.

Every interval is an `Interval` that carries its *real* confidence level (a float) and its method;
nothing here or downstream may call an interval "95 %" unless `level >= 0.95`.

- Median: the distribution-free order-statistic interval [x(j), x(n+1-j)], whose exact coverage is
  sum_{i=j}^{n-j} C(n, i) / 2^n (binomial with p = 1/2). The narrowest symmetric pair reaching 95 %
  is chosen; when none does (n <= 5) it is [min, max] with its real level: n = 2: 50 %, 3: 75 %,
  4: 87.5 %, 5: 93.75 %; n = 6 reaches 96.9 %. From BCA_MIN_N values on, a BCa bootstrap interval
  (scipy.stats.bootstrap, method='BCa') at the nominal 95 %. Why 50: simulated coverage of the nominal
  95 % BCa interval of the median of lognormal(0, 1) samples (1,999 resamples) was 93.8 % at n = 10,
  92.2 % at n = 20, 93.3 % at n = 30 (1,000 draws each), 94.0 % at n = 40 and 95.7 % at n = 50
  (2,000 draws each), so below ~50 its nominal level overstates; the order-statistic interval is
  exact at every n.
- Ratio of two groups (a platform to its baseline, run B to run A): the point is the ratio of medians;
  the interval inverts the exact two-sided Mann-Whitney test on the logarithms (Hodges-Lehmann /
  Moses): [D(c+1), D(mn-c)] of the sorted pairwise log differences covers the log ratio with
  probability 1 - 2 P(U <= c), exact for continuous data when the platform scales the distribution
  by a factor. The largest c reaching 95 % is chosen; at tiny n the widest interval with its real
  level (3 vs 3: 90 %; 2 vs 2: 66.7 %). Values must be positive.
- Significance: two-sided Mann-Whitney U. When the smallest p the sample sizes can produce is above
  alpha (3 vs 3: 2 / C(6, 3) = 0.1) the result says "n too small for p < 0.05" and has no p value.
- CV (stdev / mean) for the harness's "extend while noisy" rule.

Pure functions on sequences of floats; bootstrap resampling is seeded so a report rebuilt from the
same samples shows the same intervals.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from scipy import stats as sstats

CONFIDENCE = 0.95
ALPHA = 0.05
BCA_MIN_N = 50
BOOTSTRAP_RESAMPLES = 9_999
SEED = 20261128

ORDER_STATISTIC = "order statistic"
BCA = "BCa bootstrap"
MANN_WHITNEY_INVERSION = "Mann-Whitney inversion on logs (Hodges-Lehmann)"
SINGLE = "single value"
NONE = "none"


def format_level(level: float) -> str:
    """'96.8 %': the level in percent, rounded *down* to 0.1 so a label never claims more than it has."""
    if not math.isfinite(level) or level <= 0:
        return "no"
    tenths = math.floor(level * 1000 + 1e-9) / 10
    return f"{tenths:g} %"


@dataclass(frozen=True)
class Interval:
    """[low, high] with the probability `level` (0..1) of covering the quantity, and how it was made."""

    low: float
    high: float
    level: float
    method: str

    @property
    def defined(self) -> bool:
        return math.isfinite(self.low) and math.isfinite(self.high)

    def reaches(self, confidence: float = CONFIDENCE) -> bool:
        return self.level >= confidence - 1e-12

    def contains(self, value: float) -> bool:
        return self.defined and self.low <= value <= self.high

    def excludes(self, value: float) -> bool:
        return self.defined and not self.low <= value <= self.high

    @property
    def label(self) -> str:
        """E.g. '75 % interval (order statistic)'; 'no interval' for one value."""
        if not self.defined or self.level <= 0:
            return "no interval"
        return f"{format_level(self.level)} interval ({self.method})"

    @staticmethod
    def undefined(method: str = NONE) -> Interval:
        return Interval(math.nan, math.nan, 0.0, method)


# -- medians ------------------------------------------------------------------------------------------

def order_statistic_coverage(n: int, j: int, k: int) -> float:
    """P(x(j) <= median < x(k)) for n continuous i.i.d. values, 1 <= j < k <= n (1-indexed)."""
    if not 1 <= j < k <= n:
        raise ValueError(f"need 1 <= j < k <= n, got j={j}, k={k}, n={n}")
    return sum(math.comb(n, i) for i in range(j, k)) / 2**n


def order_statistic_ranks(n: int, confidence: float = CONFIDENCE) -> tuple[int, int, float]:
    """(j, k, level): the narrowest symmetric pair (j, n+1-j) with coverage >= confidence, or (1, n)."""
    if n < 2:
        raise ValueError("an order-statistic interval needs at least 2 values")
    best = (1, n, order_statistic_coverage(n, 1, n))
    for j in range(2, (n + 1) // 2 + 1):
        k = n + 1 - j
        if k <= j:
            break
        level = order_statistic_coverage(n, j, k)
        if level < confidence:
            break
        best = (j, k, level)
    return best[0], best[1], float(best[2])


def _rng() -> np.random.Generator:
    return np.random.default_rng(SEED)


def median_interval(values: Sequence[float], confidence: float = CONFIDENCE,
                    resamples: int = BOOTSTRAP_RESAMPLES) -> Interval:
    data = np.sort(np.asarray(values, dtype=float))
    if data.size == 0:
        return Interval.undefined()
    if data.size == 1:
        return Interval(float(data[0]), float(data[0]), 0.0, SINGLE)
    if data.size >= BCA_MIN_N and data[0] != data[-1]:
        result = sstats.bootstrap((data,), np.median, confidence_level=confidence, method="BCa",
                                  n_resamples=resamples, random_state=_rng(), vectorized=True, axis=-1)
        low, high = result.confidence_interval
        if math.isfinite(low) and math.isfinite(high):
            return Interval(float(low), float(high), confidence, BCA)
    j, k, level = order_statistic_ranks(int(data.size), confidence)
    return Interval(float(data[j - 1]), float(data[k - 1]), level, ORDER_STATISTIC)


def cv(values: Sequence[float]) -> float:
    """Coefficient of variation, sample stdev / mean; 0 for fewer than 2 values, nan when the mean is 0."""
    data = np.asarray(values, dtype=float)
    if data.size < 2:
        return 0.0
    mean = float(data.mean())
    return float(data.std(ddof=1)) / mean if mean else math.nan


@dataclass(frozen=True)
class Summary:
    n: int
    median: float
    mean: float
    stdev: float  # sample standard deviation (ddof=1); 0 for n == 1
    cv: float  # stdev / mean; nan when the mean is 0
    interval: Interval  # of the median, with its real level

    @property
    def ci_low(self) -> float:
        return self.interval.low

    @property
    def ci_high(self) -> float:
        return self.interval.high


def summarize(values: Sequence[float], confidence: float = CONFIDENCE) -> Summary:
    data = np.asarray(values, dtype=float)
    if data.size == 0:
        raise ValueError("cannot summarize an empty set of values")
    stdev = float(data.std(ddof=1)) if data.size > 1 else 0.0
    mean = float(data.mean())
    return Summary(n=int(data.size), median=float(np.median(data)), mean=mean, stdev=stdev,
                   cv=stdev / mean if mean else math.nan, interval=median_interval(data, confidence))


# -- two groups ---------------------------------------------------------------------------------------

@lru_cache(maxsize=256)
def _u_null_cdf(m: int, n: int) -> tuple[float, ...]:
    """P(U <= u), u = 0..mn, for the Mann-Whitney U of samples of m and n without ties (exact)."""
    # The counts of U are the coefficients of the Gaussian binomial [m+n choose m]_q
    # = prod_{i=1..m} (1 - q^(n+i)) / (1 - q^i).
    size = m * n + 1
    poly = np.zeros(size)
    poly[0] = 1.0
    for i in range(1, m + 1):
        shifted = np.zeros(size)
        shifted[n + i:] = poly[: size - n - i]
        poly = poly - shifted  # times (1 - q^(n+i))
        for u in range(i, size):  # divided by (1 - q^i)
            poly[u] += poly[u - i]
    counts = np.rint(poly)
    return tuple(np.cumsum(counts) / math.comb(m + n, m))


def smallest_p(m: int, n: int) -> float:
    """The smallest two-sided exact Mann-Whitney p that samples of m and n can produce."""
    return min(1.0, 2 / math.comb(m + n, m)) if m and n else 1.0


@dataclass(frozen=True)
class Ratio:
    """values / baseline: the ratio of medians and an interval of the ratio with its real level."""

    point: float
    interval: Interval
    note: str = ""


def ratio(values: Sequence[float], baseline: Sequence[float], confidence: float = CONFIDENCE) -> Ratio:
    a = np.asarray(values, dtype=float)
    b = np.asarray(baseline, dtype=float)
    if a.size == 0 or b.size == 0:
        return Ratio(math.nan, Interval.undefined(), "no values")
    med_a, med_b = float(np.median(a)), float(np.median(b))
    if (a <= 0).any() or (b <= 0).any() or med_b == 0:
        return Ratio(math.nan, Interval.undefined(), "ratio undefined: a value is zero or negative")
    point = med_a / med_b
    m, n = int(a.size), int(b.size)
    if m * n < 2:
        return Ratio(point, Interval.undefined(SINGLE), "one value on each side: no interval")
    diffs = np.sort((np.log(a)[:, None] - np.log(b)[None, :]).ravel())
    cdf = _u_null_cdf(m, n) if m * n <= 10_000 else None
    c, level = 0, 0.0
    if cdf is not None:
        level = 1 - 2 * cdf[0]
        for candidate in range(1, (m * n) // 2):
            candidate_level = 1 - 2 * cdf[candidate]
            if candidate_level < confidence:
                break
            c, level = candidate, candidate_level
    else:  # large samples: normal approximation of U
        sd = math.sqrt(m * n * (m + n + 1) / 12)
        c = max(0, math.floor(m * n / 2 - float(sstats.norm.ppf(1 - (1 - confidence) / 2)) * sd) - 1)
        level = confidence
    low, high = math.exp(diffs[c]), math.exp(diffs[m * n - 1 - c])
    note = "" if level >= confidence - 1e-12 else (
        f"n = {m} vs {n}: the widest interval reaches only {format_level(level)}")
    return Ratio(point, Interval(float(low), float(high), float(max(level, 0.0)), MANN_WHITNEY_INVERSION), note)


@dataclass(frozen=True)
class Significance:
    """A two-sided Mann-Whitney U test; `p` is None when n cannot reach significance at `alpha`."""

    p: float | None
    smallest_p: float
    note: str

    @property
    def text(self) -> str:
        return f"p = {self.p:.3g}" if self.p is not None else self.note


def mann_whitney(a: Sequence[float], b: Sequence[float], alpha: float = ALPHA) -> Significance:
    m, n = len(a), len(b)
    floor_p = smallest_p(m, n)
    if m < 1 or n < 1:
        return Significance(None, 1.0, "no values on one side")
    if floor_p > alpha:
        return Significance(None, floor_p, f"n too small for p < {alpha:g} ({m} vs {n}: smallest possible p = "
                                           f"{floor_p:.2g})")
    if len(set(a) | set(b)) == 1:
        return Significance(1.0, floor_p, "all values equal")
    p = float(sstats.mannwhitneyu(a, b, alternative="two-sided").pvalue)
    return Significance(p, floor_p, "")


def mann_whitney_p(a: Sequence[float], b: Sequence[float]) -> float:
    """The p value, or nan when n cannot reach p < 0.05 (see `mann_whitney` for the reason)."""
    result = mann_whitney(a, b)
    return math.nan if result.p is None else result.p


# -- verdicts -----------------------------------------------------------------------------------------

def change_verdict(change: Ratio, higher_is_better: bool | None, confidence: float = CONFIDENCE) -> str:
    """'better' / 'worse' / 'no detectable change' for B ÷ A; below `confidence` the level is named."""
    iv = change.interval
    if not math.isfinite(change.point) or not iv.defined:
        return "not comparable" + (f" ({change.note})" if change.note else "")
    qualifier = "" if iv.reaches(confidence) else (
        f" (at {format_level(iv.level)}; n too small for {format_level(confidence)})")
    if not iv.excludes(1.0):
        return "no detectable change" + qualifier
    if higher_is_better is None:
        return ("higher" if iv.low > 1.0 else "lower") + qualifier
    improved = (iv.low > 1.0) == higher_is_better
    return ("better" if improved else "worse") + qualifier


# -- the interleaved (blocked) design ------------------------------------------------------------------

PAIRED_PREFIX = "paired within blocks, "


def paired_ratio(values: dict[int, float], baseline: dict[int, float], confidence: float = CONFIDENCE) -> Ratio:
    """values ÷ baseline from an interleaved run: one ratio per block that measured both (the pair shares
    the block's moment, so drift between blocks cancels), summarised by its median with the
    order-statistic interval at its real level."""
    blocks = sorted(set(values) & set(baseline))
    ratios = [values[b] / baseline[b] for b in blocks if values[b] > 0 and baseline[b] > 0]
    if not ratios:
        return Ratio(math.nan, Interval.undefined(), "no block measured both")
    interval = median_interval(ratios, confidence)
    note = "" if interval.reaches(confidence) else f"{len(ratios)} blocks: {interval.label}"
    return Ratio(float(np.median(ratios)),
                 Interval(interval.low, interval.high, interval.level, f"{PAIRED_PREFIX}{interval.method}"), note)


@dataclass(frozen=True)
class Drift:
    """Theil-Sen slope of values over blocks, relative to their median (per block), with its interval."""

    slope_per_block: float  # relative: 0.01 = +1 % of the median per block
    interval: Interval
    n: int

    @property
    def significant(self) -> bool:
        return self.interval.defined and self.interval.excludes(0.0)

    @property
    def text(self) -> str:
        if not self.interval.defined:
            return f"n = {self.n}: too few blocks to estimate drift"
        return (f"{100 * self.slope_per_block:+.2f} % per block [{100 * self.interval.low:+.2f} to "
                f"{100 * self.interval.high:+.2f} %, {self.interval.label}]"
                + (": significant drift" if self.significant else ""))


def drift(values: dict[int, float], confidence: float = CONFIDENCE) -> Drift:
    """How a platform's values move over the blocks of a run (the host's drift when it is the baseline)."""
    blocks = sorted(values)
    if len(blocks) < 3:
        return Drift(math.nan, Interval.undefined(), len(blocks))
    y = np.array([values[b] for b in blocks], dtype=float)
    centre = float(np.median(y))
    if centre == 0:
        return Drift(math.nan, Interval.undefined(), len(blocks))
    slope, _, low, high = sstats.theilslopes(y / centre, np.array(blocks, dtype=float), alpha=confidence)
    return Drift(float(slope), Interval(float(low), float(high), confidence, "Theil-Sen"), len(blocks))
