"""Parsers for the workload tools' machine-readable output. Pure functions, tested on captured outputs.

Each parser turns output that cannot be a complete, plausible measurement into a ParseError naming
the tool and why: an error or "interrupted" marker (even when a table follows), output cut off,
duplicated result records, nan/inf/negative figures, zero rates where work was asked for, and a run
shorter than the one requested (a tool stopped by a signal often prints figures that look complete).
"""

from __future__ import annotations

import math

#: A time-based run that covered less than this fraction of the time asked for was cut short.
MIN_RUN_FRACTION = 0.9


class ParseError(ValueError):
    """A tool's output could not be read; the message says which tool and why."""


def positive(tool: str, what: str, value: float | None, zero_ok: bool = False) -> float:
    """`value` if it is a finite number above zero (or zero, when `zero_ok`); else ParseError."""
    if value is None:
        raise ParseError(f"{tool} reported no number for {what}")
    if math.isnan(value) or math.isinf(value):
        raise ParseError(f"{tool} reported {value} for {what}: not a measurement")
    if value < 0 or (value == 0 and not zero_ok):
        raise ParseError(f"{tool} reported {value:g} for {what}: "
                         + ("negative" if value < 0 else "zero, although work was asked for"))
    return value


def ran_long_enough(tool: str, ran_s: float | None, asked_s: float | None) -> None:
    """ParseError when a time-based run covered less than MIN_RUN_FRACTION of the time asked for."""
    if asked_s is None or asked_s <= 0 or ran_s is None:
        return
    if ran_s < MIN_RUN_FRACTION * asked_s:
        raise ParseError(f"{tool} ran {ran_s:g} s of the {asked_s:g} s asked for: it was stopped early "
                         f"(killed by a signal?), so its figures cover a partial run")
