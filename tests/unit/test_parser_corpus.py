"""Every parser against every fixture of its tool: each output is either read or refused with its reason.

The table below classifies every file in tests/fixtures/<tool>/ (a new fixture without a row fails the
test): None = a complete run the parser must read; a regex = the ParseError it must raise. Each call
is the one the scenario makes (with the seconds it asked for), so a tool stopped early is caught even
when its figures look complete. Finally, whatever a parser does return passes the sanity layer or is
refused there: no nan, inf, negative or zero figure reaches the store.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

import pytest

from bench import sanity
from scenarios import cpu, disk, memory, network
from scenarios.base import Sample, ScenarioError
from scenarios.network import RR_SELECTORS
from scenarios.parsers import ParseError, fio, iozone, iperf3, netperf, series, stressng, sysbench

FIXTURES = Path(__file__).parents[1] / "fixtures"
TOOLS = ("fio", "iozone", "iperf3", "netperf", "stress-ng", "sysbench")  # the tool dirs: every file classified
OTHER_ORDER = ("THROUGHPUT", "THROUGHPUT_UNITS", "MEAN_LATENCY", "P50_LATENCY", "P90_LATENCY", "P99_LATENCY",
               "STDDEV_LATENCY", "MIN_LATENCY", "MAX_LATENCY", "TRANSACTION_RATE", "ELAPSED_TIME", "PROTOCOL")
CUT_SHORT = r"ran [0-9.]+ s of the [0-9.]+ s asked for: it was stopped early"

# name -> (how the scenario reads it, expected: None or a ParseError regex)
CORPUS = {
    # fio: the disk scenario reads stderr + stdout with the runtime it asked for (3 s here, 10 s for kills)
    "fio/randread-4k-qd32.json": (lambda t: fio.job(t, None, 3), None),
    "fio/randrw-70-30-4k-qd32.json": (lambda t: fio.job(t, "randrw", 3), None),
    "fio/read-1m-qd32.json": (lambda t: fio.job(t, None, 3), None),
    "fio/note-before-json-psync.txt": (lambda t: fio.job(t), None),
    "fio/handmade-warnings-before-json.txt": (lambda t: fio.job(t, None, 3), None),
    "fio/handmade-fio2-clat-usec.json": (lambda t: fio.job(t), None),
    "fio/bad-path-not-a-directory.txt": (fio.parse, r"failed with error 20: .*Not a directory"),
    "fio/bad-rw-option.txt": (fio.parse, r"printed no JSON"),
    "fio/handmade-only-warnings-no-json.txt": (fio.parse, r"printed no JSON"),
    "fio/truncated.json": (fio.parse, r"not readable .*truncated"),
    "fio/handmade-cut-mid-number.json": (fio.parse, r"not readable .*truncated"),
    "fio/bad-killed-sigint.json": (lambda t: fio.job(t, None, 10), r"terminating on signal 2"),
    "fio/bad-killed-sigterm.json": (lambda t: fio.job(t, None, 10), r"terminating on signal 15"),
    "fio/bad-killed-sigkill.txt": (lambda t: fio.job(t, None, 10), r"printed no JSON: \(no output\)"),
    "fio/bad-enospc-tmpfs.txt": (fio.parse, r"error 28: .*No space left on device"),
    "fio/handmade-issue1478-no-latency-samples.json": (fio.parse, r"no latency samples"),
    "fio/handmade-issue672-zero-io.json": (fio.parse, r"did no I/O"),
    "fio/handmade-duplicated-job.json": (fio.parse, r"more than once: duplicated"),
    "fio/handmade-two-documents.json": (fio.parse, r"second JSON document"),
    "fio/handmade-negative-latency.json": (fio.parse, r"p99: negative"),
    "fio/handmade-zero-iops-with-io.json": (fio.parse, r"IOPS: zero"),
    # iperf3: stdout + stderr
    "iperf3/tcp-1stream.json": (iperf3.parse, None),
    "iperf3/tcp-4streams-reverse.json": (iperf3.parse, None),
    "iperf3/warning-before-json.json": (iperf3.parse, None),  # an informational line is not an error
    "iperf3/handmade-nan-cpu.json": (iperf3.parse, None),  # CPU figures are not samples
    "iperf3/handmade-nan-throughput.json": (iperf3.parse, r"non-number \(nan\)"),
    "iperf3/bad-no-server.json": (iperf3.parse, r"unable to connect to server"),
    "iperf3/bad-no-server-plain.txt": (iperf3.parse, r"unable to connect to server"),
    "iperf3/bad-server-killed.json": (iperf3.parse, r"Connection reset by peer"),
    "iperf3/bad-server-killed-reverse.json": (iperf3.parse, r"control socket has closed unexpectedly"),
    "iperf3/bad-server-busy.json": (iperf3.parse, r"busy"),
    "iperf3/bad-client-killed-sigint.json": (iperf3.parse, r"interrupt - the client has terminated"),
    "iperf3/bad-client-killed-sigterm.json": (iperf3.parse, r"interrupt - the client has terminated"),
    "iperf3/handmade-error-text-after-json.txt": (iperf3.parse, r"after its report"),
    "iperf3/truncated.json": (iperf3.parse, r"not readable"),
    "iperf3/handmade-cut-mid-number.json": (iperf3.parse, r"not readable"),
    "iperf3/handmade-issue520-malformed-exponent.json": (iperf3.parse, r"not readable"),
    "iperf3/handmade-zero-received.json": (iperf3.parse, r"bits_per_second: zero"),
    "iperf3/handmade-negative-received.json": (iperf3.parse, r"bits_per_second: negative"),
    "iperf3/handmade-two-documents.json": (iperf3.parse, r"second JSON document"),
    # netperf: stdout + stderr, the scenario's selectors and its -l seconds (2 or 3 here, 10 for kills)
    "netperf/tcp-rr.txt": (lambda t: netperf.parse(t, RR_SELECTORS, 2), None),
    "netperf/tcp-rr-other-order.txt": (lambda t: netperf.parse(t, OTHER_ORDER, 3), None),
    "netperf/udp-rr-other-order.txt": (lambda t: netperf.parse(t, OTHER_ORDER, 3), None),
    "netperf/debug-informational-lines.txt": (lambda t: netperf.parse(t, RR_SELECTORS, 1), None),
    "netperf/bad-no-server.txt": (lambda t: netperf.parse(t, RR_SELECTORS, 3), r"no netserver answered"),
    "netperf/bad-server-killed.txt": (lambda t: netperf.parse(t, RR_SELECTORS, 3), r"control connection broke"),
    "netperf/bad-unknown-selector.txt": (lambda t: netperf.parse(t, RR_SELECTORS, 3), r"values and .* titles"),
    "netperf/bad-killed-sigint-tcp-rr.txt": (lambda t: netperf.parse(t, RR_SELECTORS, 10), CUT_SHORT),
    "netperf/bad-killed-sigterm-tcp-rr.txt": (lambda t: netperf.parse(t, RR_SELECTORS, 10), r"no omni result"),
    "netperf/handmade-issue83-negative-mean-nan-stddev.txt": (lambda t: netperf.parse(t, RR_SELECTORS, 2),
                                                               r"MEAN_LATENCY: negative"),
    "netperf/handmade-duplicated-table.txt": (lambda t: netperf.parse(t, RR_SELECTORS, 2), r"duplicated"),
    "netperf/handmade-cut-mid-number.txt": (lambda t: netperf.parse(t, RR_SELECTORS, 2), r"11 values"),
    "netperf/handmade-zero-transactions.txt": (lambda t: netperf.parse(t, RR_SELECTORS, 2), r"THROUGHPUT: zero"),
    # sysbench: cpu reads stdout; memory stdout + stderr; both with --time
    "sysbench/cpu-1thread.txt": (lambda t: sysbench.parse(t, 2), None),
    "sysbench/cpu-2threads.txt": (lambda t: sysbench.parse(t, 1), None),
    "sysbench/cpu-deprecated-option-warning.txt": (lambda t: sysbench.parse(t, 2), None),  # WARNING is info
    "sysbench/memory-rnd-read-256m.txt": (lambda t: sysbench.memory(t, 3), None),
    "sysbench/memory-rnd-write-4k.txt": (lambda t: sysbench.memory(t, 2), None),
    "sysbench/memory-seq-read-1m.txt": (lambda t: sysbench.memory(t, 2), None),
    "sysbench/memory-seq-write-1m-2threads.txt": (lambda t: sysbench.memory(t, 2), None),
    "sysbench/handmade-issue14-impossible-rate.txt": (lambda t: sysbench.parse(t, 2), None),  # sanity refuses it
    "sysbench/cpu-bad-threads.txt": (sysbench.parse, r"FATAL: Memory allocation failure"),
    "sysbench/memory-bad-access-mode.txt": (sysbench.memory, r"FATAL"),
    "sysbench/bad-cpu-killed-sigint.txt": (lambda t: sysbench.parse(t, 10), r"no report .*killed by a signal"),
    "sysbench/bad-cpu-killed-sigkill.txt": (lambda t: sysbench.parse(t, 10), r"no report"),
    "sysbench/bad-memory-killed-sigint.txt": (lambda t: sysbench.memory(t, 10), r"no report"),
    "sysbench/bad-memory-zero-events-block-over-total.txt": (lambda t: sysbench.memory(t, 2),
                                                              r"total time: zero|total events: zero"),
    "sysbench/handmade-nan-rate.txt": (lambda t: sysbench.parse(t, 2), r"-nan for events per second"),
    "sysbench/handmade-duplicated-report.txt": (lambda t: sysbench.parse(t, 2), r"2 reports: duplicated"),
    "sysbench/handmade-cut-mid-table.txt": (lambda t: sysbench.parse(t, 2), r"cut off"),
    # stress-ng: the YAML with -t seconds, and its log
    "stress-ng/matrix-prod.yaml": (lambda t: stressng.metric(t, "matrix", seconds=2), None),
    "stress-ng/matrix-prod-2s.yaml": (lambda t: stressng.metric(t, "matrix", seconds=2), None),
    "stress-ng/cpu-matrixprod.yaml": (lambda t: stressng.metric(t, "cpu", seconds=1), None),
    "stress-ng/memrate.yaml": (lambda t: stressng.metric(t, "memrate", "read64-mb-per-sec", seconds=3), None),
    "stress-ng/stream.yaml": (lambda t: stressng.stream_rates(t, 6), None),
    "stress-ng/stream-too-short.yaml": (lambda t: stressng.stream_rates(t, 3), r"too short"),
    "stress-ng/truncated.yaml": (lambda t: stressng.metric(t, "matrix", seconds=2), r"cut off"),
    "stress-ng/bad-matrix-killed-sigint.yaml": (lambda t: stressng.metric(t, "matrix", seconds=10), CUT_SHORT),
    "stress-ng/bad-matrix-killed-sigterm.yaml": (lambda t: stressng.metric(t, "matrix", seconds=10), CUT_SHORT),
    "stress-ng/handmade-lkp201-zero-bogo-ops.yaml": (lambda t: stressng.metric(t, "matrix", seconds=2),
                                                      r"bogo-ops: zero"),
    "stress-ng/handmade-duplicated-stressor.yaml": (lambda t: stressng.metric(t, "matrix", seconds=2),
                                                     r"twice: duplicated"),
    "stress-ng/handmade-nan-rate.yaml": (lambda t: stressng.metric(t, "matrix", seconds=2), r"nan .*not a measurement"),
    "stress-ng/matrix-prod-2s.log": (stressng.check_log, None),  # info/metrc lines are informational
    "stress-ng/bad-matrix-killed-sigint.log": (stressng.check_log, None),  # says "successful": the YAML tells
    "stress-ng/bad-matrix-killed-sigterm.log": (stressng.check_log, None),
    "stress-ng/bad-matrix-killed-sigkill.log": (stressng.check_log, None),  # no YAML at all: `cat` fails
    "stress-ng/handmade-issue125-metrics-corrupted.log": (stressng.check_log, r"fail: .*corrupted bogo-ops"),
    # iozone: stdout + stderr
    "iozone/write-read-random-1m-64m.txt": (iozone.parse, None),
    "iozone/bad-path-not-a-directory.txt": (iozone.parse, r"Can not open temp file"),
    "iozone/bad-enospc-tmpfs.txt": (iozone.parse, r"Error writing block 8|No space left"),
    "iozone/bad-killed-sigint.txt": (iozone.parse, r"iozone was interrupted"),
    "iozone/bad-killed-sigterm.txt": (iozone.parse, r"iozone was interrupted"),
    "iozone/handmade-cut-mid-table.txt": (iozone.parse, r"0 values for 1 record sizes"),
    "iozone/handmade-duplicated-report.txt": (iozone.parse, r"twice: duplicated"),
    # limit accuracy's time series (scenarios/parsers/series.py)
    "sysbench/cpu-report-interval-quota50.txt": (series.sysbench_intervals, None),
    "fio/bw-log-read-cap-10MiB.log": (series.fio_bw_log, None),
}


def test_every_fixture_is_classified():
    on_disk = {f"{p.parent.name}/{p.name}" for tool in TOOLS for p in (FIXTURES / tool).iterdir() if p.is_file()}
    assert on_disk - set(CORPUS) == set(), "fixtures without an expectation"
    assert set(CORPUS) - on_disk == set(), "expectations without a fixture"


@pytest.mark.parametrize("name", sorted(CORPUS))
def test_parser_reads_or_refuses_with_the_reason(name):
    read, expected = CORPUS[name]
    text = (FIXTURES / name).read_text()
    if expected is None:
        read(text)
        return
    with pytest.raises(ParseError, match=expected) as caught:
        read(text)
    assert "\n" not in str(caught.value), "one line"


def _samples(name: str, text: str | None = None) -> tuple[object, list[Sample]]:
    """(scenario module, samples) built from a readable fixture (or `text` in its place) the way its
    scenario builds them."""
    text = (FIXTURES / name).read_text() if text is None else text
    tool = name.split("/")[0]
    if tool == "fio":
        job = {"name": "j", "rw": "randread", "bs": "4k", "iodepth": 32}
        return disk, disk._fio_samples(fio.parse(text)[0], job)
    if tool == "iperf3":
        return network, [Sample("iperf3_throughput", iperf3.parse(text).received_bits_per_s / 1e9, "Gbit/s")]
    if tool == "netperf":
        values = netperf.parse(text, OTHER_ORDER if "other-order" in name else RR_SELECTORS)
        return network, [Sample(metric, float(values[sel]), unit) for sel, metric, unit in network._RR_METRICS
                         if sel in values]
    if tool == "sysbench":
        if "memory" in name:
            return memory, [Sample("sysbench_memory_bandwidth", sysbench.memory(text)["mib_per_second"], "MiB/s")]
        figures = sysbench.parse(text)
        if "events_per_second" not in figures:  # what the cpu scenario says then
            raise ScenarioError("sysbench cpu output has no 'events per second' line")
        return cpu, [Sample("sysbench_cpu_events_per_s", figures["events_per_second"], "events/s")]
    if tool == "stress-ng" and name.endswith(".yaml") and "matrix" in stressng.parse_yaml(text):
        return cpu, [Sample("stressng_matrix_bogo_ops_per_s", stressng.metric(text, "matrix"), "bogo-ops/s")]
    if tool == "stress-ng" and name.endswith(".yaml") and "stream" in stressng.parse_yaml(text):
        rates = stressng.stream_rates(text)
        return memory, [Sample("stressng_stream_read_bandwidth", rates["read_mb_per_s"], "MB/s"),
                        Sample("stressng_stream_write_bandwidth", rates["write_mb_per_s"], "MB/s")]
    if tool == "iozone":
        rows = iozone.parse(text)
        return disk, [Sample("iozone_throughput", v * 1024 / 1e6, "MB/s") for r in rows.values() for v in r.values()]
    return None, []


#: Readable fixtures that are a scenario's figure source (not logs, not stressors no scenario runs).
READABLE = [name for name, (_, expected) in sorted(CORPUS.items())
            if expected is None and not name.endswith(".log") and name not in ("stress-ng/cpu-matrixprod.yaml",
                                                                                 "stress-ng/memrate.yaml")]


@pytest.mark.parametrize("name", READABLE)
def test_what_a_parser_returns_is_plausible_or_refused_by_the_sanity_layer(name):
    module, samples = _samples(name)
    assert module is not None and samples
    for sample in samples:
        assert isinstance(sample.value, float) and math.isfinite(sample.value) and sample.value > 0, sample
    if "impossible-rate" in name:  # sysbench issue #14: a wrapped-around rate reads as a number...
        with pytest.raises(sanity.ImplausibleSample, match=r"more per second than the CPU has cycles"):
            sanity.check_repetition(module, samples)  # ...that no CPU could produce
    else:
        sanity.check_repetition(module, samples)


MUTANTS = ("nan", "-nan", "inf", "-1", "0", "0.0", "-0.5", "1e400", "")
NUMBER = re.compile(r"(?<![\w.])[-+]?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?(?![\w.])")


@pytest.mark.parametrize("name", ["fio/randrw-70-30-4k-qd32.json", "iperf3/tcp-1stream.json", "netperf/tcp-rr.txt",
                                  "sysbench/cpu-1thread.txt", "sysbench/memory-seq-read-1m.txt",
                                  "stress-ng/matrix-prod.yaml", "stress-ng/stream.yaml",
                                  "iozone/write-read-random-1m-64m.txt"])
def test_no_number_a_tool_prints_can_reach_the_store_as_nan_inf_negative_or_zero(name):
    """Replace each number in a good output, one at a time, by nan, inf, a negative, zero or nothing: the
    parser and the sanity layer together either refuse the result with an explained error or return
    figures that are all finite and in range. Nothing else (no crash, no bad figure) may happen."""
    module, _ = _samples(name)
    declared = sanity.declared_metrics(module)
    text = (FIXTURES / name).read_text()
    spots = list(NUMBER.finditer(text))
    step = max(1, len(spots) // 150)  # at most ~150 positions per output, spread over all of it
    tried = refused = 0
    for match in spots[::step]:
        for mutant in MUTANTS:
            broken = text[:match.start()] + mutant + text[match.end():]
            tried += 1
            try:
                _, samples = _samples(name, broken)
                sanity.check_repetition(module, samples)
            except (ParseError, ScenarioError):  # ImplausibleSample is a ScenarioError
                refused += 1
                continue
            for sample in samples:  # accepted: every figure must be a plausible measurement
                unit, plausible = declared[sample.metric]
                assert math.isfinite(sample.value) and plausible.violation(sample.value, unit) is None, (
                    match.group(0), mutant, sample)
    assert tried and refused  # the mutations did reach figures
