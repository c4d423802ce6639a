"""bench.storagebench's table and its docs section (pure formatting; the figures come from a real run)."""

from __future__ import annotations

from bench.storagebench import SECTION, section, table, write_docs


def test_table_has_every_driver_and_the_unavailable_reason():
    figures = {"create_first_ms": [1.0, 2.0, 3.0], "create_last_ms": [1.0, 1.0, 2.0], "first_write_ms": [80, 90, 100],
               "second_write_ms": [10, 11, 12], "usage_fresh_mib": [0, 0, 0], "usage_after_write_mib": [29.8] * 3,
               "commit_s": [0.1, 0.2, 0.3]}
    text = table({"overlay": figures}, {"devicemapper": "no device-mapper"}, 10)
    assert "root made, #10 (ms)" in text.splitlines()[0]
    assert "| overlay | 2.000 [1.000–3.000, 75 %]" in text
    assert "| devicemapper | unavailable: no device-mapper |" in text


def test_docs_section_is_replaced_not_duplicated(tmp_path):
    page = tmp_path / "benchmarks.md"
    page.write_text(f"# Benchmarks\n\n{SECTION}\n\nold figures\n\n## Later section\n\nkept\n")
    write_docs(page, section("| new |", "python -m bench.storagebench", 3))
    text = page.read_text()
    assert text.count(SECTION) == 1 and "old figures" not in text and "| new |" in text
    assert text.index("| new |") < text.index("## Later section") and "kept" in text
