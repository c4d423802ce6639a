"""Report rendering: number formatting, colour contrast, the ratio-colouring rule, LaTeX escaping, the summary's
cost per area and its order-statistic interval, platform labels, and a page with no raw `nan`."""

import math
import re
from pathlib import Path

import pandas as pd
import pytest

from bench.results import CellOutcome, RunStore, SampleRecord
from reporting import colour, export, formatting, overview
from reporting.html import build
from reporting.platforms import platform_infos

REPORTING = Path(__file__).resolve().parents[2] / "reporting"
MINE = ("html.py", "plots.py", "tables.py", "overview.py", "formatting.py", "colour.py", "export.py",
        "templates/report.html.j2")


def test_contrast_matches_wcag_reference_values():
    assert colour.contrast("#000000", "#ffffff") == pytest.approx(21.0)
    assert colour.contrast("#ffffff", "#ffffff") == pytest.approx(1.0)
    assert colour.contrast("#777777", "#ffffff") == pytest.approx(4.48, abs=0.01)  # the classic just-fails grey
    assert colour.contrast("#767676", "#ffffff") == pytest.approx(4.54, abs=0.01)  # the classic just-passes grey
    assert colour.luminance("#ff0000") == pytest.approx(0.2126)


def test_every_shaded_cell_keeps_text_contrast_above_4_5():
    for cost in [2 ** (k / 20) for k in range(-60, 61)] + [math.nan, 0.0, 1e6]:
        background = colour.cost_shade(cost)
        assert colour.contrast(colour.text_on(background), background) >= colour.MIN_CONTRAST, (cost, background)
    # and for any grey at all, the better of dark/light text passes
    for level in range(256):
        grey = colour.to_hex((level, level, level))
        assert colour.contrast(colour.text_on(grey), grey) >= colour.MIN_CONTRAST


def test_shades_follow_direction():
    worse, better = colour.parse_hex(colour.cost_shade(2.0)), colour.parse_hex(colour.cost_shade(0.5))
    assert worse[0] > worse[1] and better[1] > better[0]  # red-ish for costs, green-ish for gains


def test_numbers_never_use_exponents_or_nan():
    assert formatting.number(1.7e-14) == "≈ 0"
    assert formatting.percent(1.7e-16) == "< 0.01 %"
    assert formatting.percent(0.0123) == "1.2 %"
    assert formatting.number(4479.3) == "4,479"
    assert formatting.number(0.004123) == "0.00412"
    assert formatting.value(19946.0, "IOPS") == "19,946"
    assert formatting.value(math.nan, "s") == formatting.MISSING == "—"
    assert formatting.interval(None, 3, "s") == "—"
    assert formatting.scaled(0.0117, "s") == ("11.7", "ms")
    assert formatting.scaled(1.2, "s", reference=0.5) == ("1,200", "ms")
    assert formatting.level(0.75) == "75 %" and formatting.level(0.96875) == "96.8 %"  # rounded down
    for x in (1e-9, 3.3e-7, 12345678.9, -0.5, 1e12):
        assert "e" not in formatting.number(x).lower()


def test_ratio_colour_rule():
    ok, _ = formatting.ratio_is_colourable("events/s", 0.3, 0.29, 0.31)
    assert ok
    assert not formatting.ratio_is_colourable("segments", 2.0, 1.5, 2.5)[0]  # counts: retransmits
    assert not formatting.ratio_is_colourable("fraction of bytes read", 0.004, 0.003, 0.005)[0]
    no, why = formatting.ratio_is_colourable("s", 721.6, 700, 740)  # a VM boot against a chroot
    assert not no and "100×" in why
    assert not formatting.ratio_is_colourable("events/s", 0.99, 0.97, 1.01)[0]  # interval includes 1
    assert not formatting.ratio_is_colourable("s", math.nan, math.nan, math.nan)[0]


def test_cost_ratio_is_direction_normalised():
    assert formatting.cost_ratio(0.5, "higher") == 2.0  # half the throughput costs 2x
    assert formatting.cost_ratio(2.0, "lower") == 2.0  # twice the latency costs 2x
    assert math.isnan(formatting.cost_ratio(0.0, "lower"))
    assert math.isnan(formatting.cost_ratio(0.5, ""))  # no better side: not a cost


def test_latex_escape_is_ascii_and_escapes_specials():
    text = export.latex_escape("fio_clat_p99_9 50% of $x & {y} #1 ~ ^ \\ 1.02× [0.9–1.1] µs — −3")
    assert text.isascii()
    assert r"fio\_clat\_p99\_9" in text and r"50\%" in text and r"\$x \&" in text and r"\{y\}" in text
    assert r"$\times$" in text and "0.9--1.1" in text and r"\textmu{}" in text
    assert "_" not in re.sub(r"\\_", "", text)  # no bare underscore left
    fragment = export.latex_table(["metric", "interval"], [["a_b", "1–2"]], "cap_tion", "x_y")
    assert r"a\_b" in fragment and "1--2" in fragment and r"\begin{longtable}" in fragment


@pytest.mark.parametrize(("n", "level"), [(3, 0.75), (4, 0.875), (5, 0.9375), (6, 0.96875)])
def test_median_interval_real_level(n, level):
    interval = overview.median_interval([float(v) for v in range(1, n + 1)])
    assert interval.level == pytest.approx(level)
    assert (interval.low, interval.high) == (1.0, float(n))
    assert interval.label == f"{formatting.level(level)} interval (n = {n})"


def test_median_interval_narrows_when_n_allows():
    interval = overview.median_interval([float(v) for v in range(1, 21)])
    assert interval.level >= 0.95 and interval.low > 1 and interval.high < 20


def _frame(rows):
    return pd.DataFrame(rows, columns=["platform", "scenario", "metric", "variant", "unit", "repetition", "value"])


def test_area_costs_geometric_mean_and_interval():
    rows = []
    for rep in (1, 2, 3):
        rows += [("base", "cpu", "rate", "-", "events/s", rep, 100.0),
                 ("other", "cpu", "rate", "-", "events/s", rep, 50.0),
                 ("base", "cpu", "lat", "-", "µs", rep, 10.0), ("other", "cpu", "lat", "-", "µs", rep, 80.0),
                 ("base", "cpu", "retr", "-", "segments", rep, 0.0),
                 ("other", "cpu", "retr", "-", "segments", rep, 3.0)]
    views = list(platform_infos({}, ["base", "other"]).values())
    [row] = overview.area_costs(_frame(rows), views)
    assert row.area == "cpu" and row.metrics_used == 2
    assert row.cost.point == pytest.approx(4.0)  # sqrt(2 * 8): throughput halved, latency x8
    assert row.cost.level == pytest.approx(0.75) and row.cost.n == 3
    assert any("retr" in m for m in row.metrics_left_out)


def test_no_platform_name_literals_in_the_rendering_code():
    for name in MINE:
        text = (REPORTING / name).read_text()
        for platform in ("native", "container", "vm", "kvm", "tcg"):
            assert not re.search(rf"""["']{platform}["']""", text, re.IGNORECASE), (name, platform)


def test_page_has_no_raw_nan_and_explains_gaps(tmp_path):
    store = RunStore.create(tmp_path / "results", "r3")
    store.write_run_info({"run_id": "r3", "status": "complete",
                          "config": {"profile": "quick", "reps": 3, "platforms": ["p0", "p1", "p2"],
                                     "scenarios": ["net", "startup"]}})
    store.write_env({"platforms": {"p2": {"available": True, "accelerator": "tcg",
                                          "accelerator_reason": "TCG software emulation: no vmx"}}})
    for platform, factor in (("p0", 1.0), ("p1", 1.1)):
        for rep in (1, 2, 3):
            store.add_sample(SampleRecord("r3", platform, "net", "retransmits", 0.0, "segments", rep, {"m": 1}))
            store.add_sample(SampleRecord("r3", platform, "startup", "startup_ready_s", 0.01 * factor * rep, "s", rep))
    store.add_outcome(CellOutcome("p2", "net", "failed", "guest agent went away", repetitions=0))
    store.add_outcome(CellOutcome("p2", "startup", "skipped", "no image for this platform"))
    reports = tmp_path / "reports"
    text = build(store, reports).read_text()
    visible = re.sub(r"data:image/svg\+xml;base64,[A-Za-z0-9+/=]+", "", text)
    assert not re.search(r"\bnan\b", visible, re.IGNORECASE)
    assert "failed: guest agent went away" in visible and "skipped: no image for this platform" in visible
    assert "p2: TCG (emulated)" in visible  # the mechanism travels with the name (old run: fallback info)
    for path in (reports / "r3" / "tables").glob("*.tex"):
        assert path.read_text().isascii()
    figures = {p.name for p in (reports / "r3" / "figures").iterdir()}
    assert "overview-cost-per-area.svg" in figures and "overview-cost-per-area.png" in figures
    assert "startup-start-cdf.svg" in figures  # the start times of every platform in one CDF (reporting.startup)


def test_latex_exports_keep_intervals_and_compile_when_tex_exists(tmp_path):
    """Every table's .tex is ASCII, escaped, and carries the interval and its level; with Debian's pdflatex
    present (texlive-latex-base; not installed by isolab) the document of all tables compiles."""
    import shutil
    import subprocess

    from test_report import make_run  # same folder (pytest prepends it to sys.path)

    build(make_run(tmp_path), tmp_path / "reports")
    tables = tmp_path / "reports" / "r1" / "tables"
    cpu = (tables / "cpu.tex").read_text()
    assert cpu.isascii() and r"sysbench\_cpu\_events\_per\_s" in cpu
    assert "99.0--101" in cpu and "75 \\%" in cpu  # the interval and its real level
    assert r"\begin{longtable}" in cpu and "_" not in cpu.replace(r"\_", "")
    document = (tables / "report-tables.tex").read_text()
    assert all(rf"\input{{{p.name}}}" in document for p in tables.glob("*.tex") if p.name != "report-tables.tex")
    if shutil.which("pdflatex") is None:
        print("pdflatex not installed: escaping and intervals checked, compilation not tried")
        return
    result = subprocess.run(["pdflatex", "-interaction=nonstopmode", "-halt-on-error", "report-tables.tex"],
                            cwd=tables, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:]
    assert (tables / "report-tables.pdf").stat().st_size > 1000


def test_area_costs_pair_repetitions_across_runs_of_a_merged_dataset():
    rows = [("base", "cpu", "rate", "-", "events/s", rep, 100.0 + rep, "run-a") for rep in (1, 2, 3)]
    rows += [("other", "cpu", "rate", "-", "events/s", rep, 50.0 + rep / 2, "run-b") for rep in (1, 2, 3)]
    frame = pd.DataFrame(rows, columns=["platform", "scenario", "metric", "variant", "unit", "repetition", "value",
                                        "run_id"])
    [row] = overview.area_costs(frame, list(platform_infos({}, ["base", "other"]).values()))
    assert row.cost.point == pytest.approx(2.0) and row.cost.n == 3
