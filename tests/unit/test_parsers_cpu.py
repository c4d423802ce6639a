"""sysbench and stress-ng parsers against captured real outputs, including broken ones."""

import pytest

from scenarios.parsers import ParseError, stressng, sysbench


def read(fixtures_dir, name):
    return (fixtures_dir / name).read_text()


def test_sysbench_cpu_single_thread(fixtures_dir):
    figures = sysbench.parse(read(fixtures_dir, "sysbench/cpu-1thread.txt"))
    assert figures["events_per_second"] == pytest.approx(4466.45)
    assert figures["threads"] == 1
    assert figures["total_events"] == 8937
    assert figures["latency_p95_ms"] == pytest.approx(0.25)


def test_sysbench_cpu_two_threads(fixtures_dir):
    figures = sysbench.parse(read(fixtures_dir, "sysbench/cpu-2threads.txt"))
    assert figures["threads"] == 2
    assert figures["events_per_second"] > 0


def test_sysbench_fatal_is_a_parse_error(fixtures_dir):
    with pytest.raises(ParseError, match="Memory allocation failure"):
        sysbench.parse(read(fixtures_dir, "sysbench/cpu-bad-threads.txt"))


def test_sysbench_incomplete_output():
    with pytest.raises(ParseError, match="did not complete"):
        sysbench.parse("sysbench 1.0.20\n\nThreads started!\n")


def test_stressng_yaml_metrics(fixtures_dir):
    metrics = stressng.parse_yaml(read(fixtures_dir, "stress-ng/matrix-prod.yaml"))
    assert metrics["matrix"]["bogo-ops"] == 1450
    assert stressng.metric(read(fixtures_dir, "stress-ng/matrix-prod.yaml"), "matrix") == pytest.approx(724.547061)


def test_stressng_cpu_stressor(fixtures_dir):
    assert stressng.metric(read(fixtures_dir, "stress-ng/cpu-matrixprod.yaml"), "cpu") > 0


def test_stressng_truncated_lacks_the_metric(fixtures_dir):
    with pytest.raises(ParseError, match="cut off"):
        stressng.metric(read(fixtures_dir, "stress-ng/truncated.yaml"), "matrix")


@pytest.mark.parametrize("text", ["", "---\nsystem-info:\n  cpus: 2\n", "metrics: [\n", "just text"])
def test_stressng_unreadable(text):
    with pytest.raises(ParseError):
        stressng.metric(text, "matrix")


def test_stressng_wrong_stressor(fixtures_dir):
    with pytest.raises(ParseError, match="no metrics for stressor 'cpu'"):
        stressng.metric(read(fixtures_dir, "stress-ng/matrix-prod.yaml"), "cpu")
