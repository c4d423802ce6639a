"""The start-latency benchmark rewrites only its own section of docs/benchmarks.md."""

from __future__ import annotations

from runtime.container.startbench import render, summarize, update_docs


def test_container_startbench_updates_only_its_section(tmp_path):
    page = tmp_path / "benchmarks.md"
    page.write_text("# t\n\n## Container start latency (runtime vs crun vs runc)\n\n_pending_\n\n"
                    "## VM boot (libvirt vs raw QEMU)\n\n_pending_\n")
    results = {"ours": summarize([0.010, 0.012, 0.011]), "crun": summarize([0.013, 0.014, 0.015])}
    body = render(results, {"cgroup": 1.0, "exec": 2.0}, {"crun": "crun 1.8.1"}, "cmd", 3, ("1", "2"))
    update_docs(page, body)
    update_docs(page, body)  # idempotent
    text = page.read_text()
    assert text.count("## Container start latency") == 1
    assert "## VM boot (libvirt vs raw QEMU)\n\n_pending_\n" in text
    assert "| ours |  | 3 | 11.00 |" in text and "**met**" in text
    assert text.count("_pending_") == 1


def test_container_startbench_summary_statistics():
    stats = summarize([0.001 * i for i in range(1, 101)])
    assert stats["n"] == 100
    assert abs(stats["median_ms"] - 50.5) < 1e-9
    assert 99.0 <= stats["p99_ms"] <= 100.0


def test_container_startbench_seccomp_verdict():
    results = {"ours": summarize([0.0105, 0.0106, 0.0107]), "ours-unconfined": summarize([0.010, 0.010, 0.010])}
    rounds = [{"ours": 10.6, "ours-unconfined": 10.0}, {"ours": 10.5, "ours-unconfined": 10.1}]
    text = render(results, {"exec": 1.0}, {}, "cmd", 3, ("1", "2"), rounds, (1.06, 1.04, 1.08, 0.95))
    assert "seccomp on within 10 % of off" in text and "**met**" in text and "+6.0 %" in text
    assert "95 % interval [1.040, 1.080]" in text and "is inside the 10 % target" in text
    slow = {"ours": summarize([0.012] * 3), "ours-unconfined": summarize([0.010] * 3)}
    assert "**NOT met**" in render(slow, {"exec": 1.0}, {}, "cmd", 3)
