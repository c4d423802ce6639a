"""The device-filter benchmark rewrites only its own section of docs/benchmarks.md."""

from __future__ import annotations

from bench.devicefilter import render, update_docs
from bench.stats import summarize


def test_devicefilter_bench_updates_only_its_section(tmp_path):
    page = tmp_path / "benchmarks.md"
    page.write_text("# t\n\n## Container start latency\n\n_pending_\n")
    summaries = {"cgroup": summarize([0.10, 0.12, 0.11]), "cgroup+filter": summarize([0.13, 0.12, 0.14]),
                 "filter load": summarize([0.3, 0.4, 0.35]), "container start": summarize([10.0, 11.0, 12.0])}
    body = render(summaries, tmp_path, "cmd", ("1.0", "2.0"))
    update_docs(page, body)
    update_docs(page, body)  # idempotent
    text = page.read_text()
    assert text.count("## cgroup v2 device filter cost") == 1
    assert "## Container start latency\n\n_pending_\n" in text
    assert "| cgroup+filter | 3 | 0.130 |" in text
    assert "The filter adds 0.020 ms" in text and "0.18 % of the container start median" in text
