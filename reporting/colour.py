"""Colours of the report: a ratio's good/bad shade, and text that stays readable on it.

Contrast follows WCAG 2.1 (relative luminance of sRGB, ratio (L1 + 0.05) / (L2 + 0.05)); every shaded
cell gets the text colour (near-black or white) with the higher contrast, which is never below 4.5:1.
Platform colours come from each platform's own description (reporting.platforms), not from here.
"""

from __future__ import annotations

import math

MIN_CONTRAST = 4.5
DARK_TEXT = "#000000"  # with white, the better of the two always reaches 4.58:1
LIGHT_TEXT = "#ffffff"
# Diverging shades, light enough for dark text: worse (red) ... neutral ... better (green).
WORSE = (0xF4, 0xA5, 0x82)
NEUTRAL = (0xF7, 0xF7, 0xF7)
BETTER = (0x92, 0xC5, 0x8C)


def _channel(c: float) -> float:
    c = c / 255
    return c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4


def parse_hex(colour: str) -> tuple[int, int, int]:
    text = colour.lstrip("#")
    if len(text) == 3:
        text = "".join(ch * 2 for ch in text)
    if len(text) != 6:
        raise ValueError(f"not a #rrggbb colour: {colour!r}")
    return int(text[0:2], 16), int(text[2:4], 16), int(text[4:6], 16)


def to_hex(rgb: tuple[int, int, int]) -> str:
    return "#{:02x}{:02x}{:02x}".format(*rgb)


def luminance(colour: str) -> float:
    r, g, b = (_channel(c) for c in parse_hex(colour))
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def contrast(a: str, b: str) -> float:
    la, lb = sorted((luminance(a), luminance(b)), reverse=True)
    return (la + 0.05) / (lb + 0.05)


def text_on(background: str) -> str:
    """The text colour (dark or light) with the higher contrast on `background`."""
    return DARK_TEXT if contrast(DARK_TEXT, background) >= contrast(LIGHT_TEXT, background) else LIGHT_TEXT


def _mix(a: tuple[int, int, int], b: tuple[int, int, int], t: float) -> tuple[int, int, int]:
    return tuple(round(x + (y - x) * t) for x, y in zip(a, b, strict=True))  # type: ignore[return-value]


def cost_shade(cost: float) -> str:
    """Background for a direction-normalised cost ratio (> 1 worse): log scale, saturating at 2× either way."""
    if not math.isfinite(cost) or cost <= 0:
        return to_hex(NEUTRAL)
    score = max(-1.0, min(1.0, math.log2(cost)))
    return to_hex(_mix(NEUTRAL, WORSE, score) if score > 0 else _mix(NEUTRAL, BETTER, -score))


def cell_style(cost: float) -> str:
    """Inline CSS for a shaded ratio cell: background plus the readable text colour."""
    background = cost_shade(cost)
    return f"background-color:{background};color:{text_on(background)}"
