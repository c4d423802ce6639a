"""sysbench memory and stress-ng stream parsers against captured real outputs, including broken ones."""

import pytest

from scenarios.parsers import ParseError, stressng, sysbench


def read(fixtures_dir, name):
    return (fixtures_dir / name).read_text()


def test_sysbench_memory_seq_read(fixtures_dir):
    figures = sysbench.memory(read(fixtures_dir, "sysbench/memory-seq-read-1m.txt"))
    assert figures["mib_per_second"] == pytest.approx(39899.18)
    assert figures["block_bytes"] == 1024 * 1024
    assert figures["ops_per_second"] == pytest.approx(39899.18)
    assert figures["threads"] == 1


def test_sysbench_memory_two_threads(fixtures_dir):
    figures = sysbench.memory(read(fixtures_dir, "sysbench/memory-seq-write-1m-2threads.txt"))
    assert figures["threads"] == 2 and figures["mib_per_second"] == pytest.approx(21400.86)


def test_sysbench_memory_random_large_block(fixtures_dir):
    figures = sysbench.memory(read(fixtures_dir, "sysbench/memory-rnd-read-256m.txt"))
    assert figures["block_bytes"] == 256 * 2**20
    assert figures["mib_per_second"] == pytest.approx(247.24)
    assert figures["total_events"] == 3


def test_sysbench_memory_random_small_block(fixtures_dir):
    figures = sysbench.memory(read(fixtures_dir, "sysbench/memory-rnd-write-4k.txt"))
    assert figures["block_bytes"] == 4096 and figures["ops_per_second"] == pytest.approx(632250.62)


def test_sysbench_memory_fatal(fixtures_dir):
    with pytest.raises(ParseError, match="Invalid value for memory-access-mode: bogus"):
        sysbench.memory(read(fixtures_dir, "sysbench/memory-bad-access-mode.txt"))


def test_sysbench_cpu_report_is_not_a_memory_report(fixtures_dir):
    with pytest.raises(ParseError, match="MiB transferred"):
        sysbench.memory(read(fixtures_dir, "sysbench/cpu-1thread.txt"))


def test_sysbench_memory_cut_short(fixtures_dir):
    text = read(fixtures_dir, "sysbench/memory-seq-read-1m.txt")
    with pytest.raises(ParseError, match="did not complete"):
        sysbench.memory(text[: text.index("General statistics")])


def test_stream_rates(fixtures_dir):
    rates = stressng.stream_rates(read(fixtures_dir, "stress-ng/stream.yaml"))
    assert rates == {"read_mb_per_s": pytest.approx(7872.988093), "write_mb_per_s": pytest.approx(5248.658728),
                     "mflop_per_s": pytest.approx(687.952197)}


def test_stream_too_short_is_explained(fixtures_dir):
    with pytest.raises(ParseError, match="too short"):
        stressng.stream_rates(read(fixtures_dir, "stress-ng/stream-too-short.yaml"))


def test_stream_wrong_stressor(fixtures_dir):
    with pytest.raises(ParseError, match="no metrics for stressor 'stream'"):
        stressng.stream_rates(read(fixtures_dir, "stress-ng/memrate.yaml"))


def test_memrate_misc_metrics_are_read(fixtures_dir):
    text = read(fixtures_dir, "stress-ng/memrate.yaml")
    assert stressng.metric(text, "memrate", "read64-mb-per-sec") == pytest.approx(8548.557368)


def test_stream_truncated_yaml(fixtures_dir):
    text = read(fixtures_dir, "stress-ng/stream.yaml")
    with pytest.raises(ParseError):
        stressng.stream_rates(text[: text.index("metrics:")])
