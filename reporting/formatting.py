"""How numbers read in the report: per-unit formatting, the em dash for a missing value, each metric's
direction-normalised cost, and when a ratio to the baseline is worth colouring at all.

Pure functions; the HTML template, the exports and the plots all format through here so that a
figure reads the same everywhere.
"""

from __future__ import annotations

import math

from bench import stats

MISSING = "—"  # an em dash; the reason travels next to it (title attribute or a note)

#: Units whose ratio to the baseline says nothing useful: event counts (0 retransmits ÷ 0) and fractions
#: (a page-cache fraction near 0 divided by another near 0). Their values are shown, their ratios not coloured.
UNCOLOURED_RATIO_UNITS = frozenset({"segments", "fraction of bytes read"})
#: A ratio further than this from 1 (either way) compares mechanisms of different kinds (a VM boot against a
#: chroot), not an overhead: it is shown, on a log axis in plots, but not coloured as good or bad.
COLOUR_RATIO_SPAN = 100.0


def is_missing(value: object) -> bool:
    if value is None:
        return True
    try:
        return math.isnan(float(value))  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return True


def number(value: object, digits: int = 3) -> str:
    """A value with `digits` significant digits, thousands separators, and never an exponent."""
    if is_missing(value):
        return MISSING
    x = float(value)  # type: ignore[arg-type]
    if math.isinf(x):
        return "∞" if x > 0 else "−∞"
    if x == 0:
        return "0"
    magnitude = math.floor(math.log10(abs(x)))
    decimals = max(0, digits - 1 - magnitude)
    if decimals > 9:  # below a billionth of the unit: a rounding residue, not a figure
        return "≈ 0"
    text = f"{x:,.{decimals}f}"
    return text.replace("-", "−")


def value(value: object, unit: str) -> str:
    """A measured value in its unit's customary precision (counts whole, everything else 3 significant digits)."""
    if is_missing(value):
        return MISSING
    if unit in ("instances", "segments", "IOPS") and abs(float(value)) >= 10:  # type: ignore[arg-type]
        return f"{float(value):,.0f}".replace("-", "−")  # type: ignore[arg-type]
    return number(value)


def scale_for(reference: object, unit: str) -> tuple[float, str]:
    """The factor and unit a headline figure reads best in: 0.0117 s -> (1000, 'ms'), 2048 MiB -> (1/1024, 'GiB')."""
    if is_missing(reference):
        return 1.0, unit
    x = abs(float(reference))  # type: ignore[arg-type]
    if unit == "s" and x < 1:
        return 1000.0, "ms"
    if unit == "MiB" and x >= 1024:
        return 1 / 1024, "GiB"
    return 1.0, unit


def scaled(amount: object, unit: str, reference: object = None) -> tuple[str, str]:
    """`amount` in the unit `scale_for(reference or amount)` picks, formatted."""
    factor, shown = scale_for(amount if reference is None else reference, unit)
    if is_missing(amount):
        return MISSING, shown
    return value(float(amount) * factor, shown), shown  # type: ignore[arg-type]


def interval(low: object, high: object, unit: str) -> str:
    if is_missing(low) or is_missing(high):
        return MISSING
    return f"{value(low, unit)}–{value(high, unit)}"


def percent(fraction: object) -> str:
    """A coefficient of variation or another fraction as a percentage: `0.8 %`, `< 0.01 %`, never `1.7e-14%`."""
    if is_missing(fraction):
        return MISSING
    p = 100 * float(fraction)  # type: ignore[arg-type]
    if p == 0:
        return "0 %"
    if abs(p) < 0.01:
        return "< 0.01 %"
    return f"{number(p, 2 if abs(p) < 10 else 3)} %"


def ratio(value: object) -> str:
    """A ratio: 3 significant digits, `×` suffix left to the caller."""
    return number(value)


def level(confidence: object) -> str:
    """A confidence level as the report writes it (bench.stats, rounded down): `75 %`, `96.8 %`."""
    if is_missing(confidence):
        return MISSING
    return stats.format_level(float(confidence))  # type: ignore[arg-type]


def ratio_is_colourable(unit: str, ratio_value: object, low: object, high: object,
                        baseline_median: object = None) -> tuple[bool, str]:
    """Whether a ratio to the baseline deserves a good/bad colour, and if not, why.

    The rule: colour only a finite, positive ratio of a unit with a direction that is not a count or a
    fraction, whose baseline median is not 0, that lies within two decades of 1, and whose interval excludes 1
    (a detectable difference at the interval's level). Everything else is shown uncoloured.
    """
    if is_missing(ratio_value) or float(ratio_value) <= 0:  # type: ignore[arg-type]
        return False, "no ratio: the baseline was not measured or its median is 0"
    if unit in UNCOLOURED_RATIO_UNITS:
        return False, f"ratios of {unit} are not costs; compare the values"
    if baseline_median is not None and not is_missing(baseline_median) and float(baseline_median) == 0:  # type: ignore[arg-type]
        return False, "the baseline's median is 0"
    r = float(ratio_value)  # type: ignore[arg-type]
    if not 1 / COLOUR_RATIO_SPAN <= r <= COLOUR_RATIO_SPAN:
        return False, "more than 100× from the baseline: different mechanisms, compare absolute values"
    if not is_missing(low) and not is_missing(high) and float(low) <= 1 <= float(high):  # type: ignore[arg-type]
        return False, "the interval includes 1: no detectable difference"
    return True, ""


def cost_ratio(ratio_to_baseline: float, better: str) -> float:
    """Direction-normalised ratio: > 1 always means the platform costs more (is worse) than the baseline.
    `better` is reporting.summary.direction's answer: "lower", "higher", or "" (no direction: nan)."""
    if is_missing(ratio_to_baseline) or ratio_to_baseline <= 0 or better not in ("lower", "higher"):
        return math.nan
    return ratio_to_baseline if better == "lower" else 1 / ratio_to_baseline
