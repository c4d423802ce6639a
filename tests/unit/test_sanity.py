"""The sanity layer: every scenario declares its metrics, and no nan/inf/negative/zero/undeclared value is stored."""

import ast
import inspect
import math
from typing import ClassVar

import pytest

from bench import sanity
from bench.config import RunConfig
from bench.harness import Harness
from bench.results import RunStore
from scenarios import base, cpu, disk, network
from scenarios.base import Range, Sample

MODULES = tuple(base.load(name) for name in base.SCENARIOS + base.EXTRA_SCENARIOS)  # a new scenario needs RANGES
DECLARED = [(m, name, m.METRICS[name][0], spec) for m in MODULES for name, spec in m.RANGES.items()]


def _emitted(module):
    """(metric, unit) of every Sample(...) the module builds from literals, plus table-driven ones."""
    found = set()
    for node in ast.walk(ast.parse(inspect.getsource(module))):
        if isinstance(node, ast.Call) and getattr(node.func, "id", "") == "Sample":
            metric, _value, unit = (node.args + [None] * 3)[:3]
            if isinstance(metric, ast.Constant) and isinstance(unit, ast.Constant):
                found.add((metric.value, unit.value))
    return found


@pytest.mark.parametrize("module", MODULES, ids=lambda m: m.NAME)
def test_every_declared_metric_has_a_plausible_range(module):
    assert set(module.RANGES) == set(module.METRICS)
    assert all(isinstance(r, Range) and r.better in ("higher", "lower", "none") for r in module.RANGES.values())


@pytest.mark.parametrize("module", MODULES, ids=lambda m: m.NAME)
def test_every_emitted_metric_is_declared_with_its_unit(module):
    declared = {(name, entry[0]) for name, entry in module.METRICS.items()}
    emitted = _emitted(module)
    if module is network:
        emitted |= {(metric, unit) for _, metric, unit in network._RR_METRICS}
    if module is disk:
        emitted |= {(metric, "µs") for _, metric in disk._LATENCIES}
    assert emitted, "no Sample(...) found"
    assert emitted <= declared, emitted - declared


BAD = [math.nan, -math.nan, math.inf, -math.inf, -1.0, -1e-9, "12", None, True]


@pytest.mark.parametrize("module,name,unit,spec", DECLARED, ids=[f"{m.NAME}:{n}" for m, n, _, _ in DECLARED])
def test_nan_inf_negative_zero_and_wrong_units_are_rejected(module, name, unit, spec):
    declared = sanity.declared_metrics(module)
    for value in BAD:
        assert sanity.problems(declared, [Sample(name, value, unit)]), value
    zero = sanity.problems(declared, [Sample(name, 0.0, unit)])
    assert bool(zero) != spec.zero_ok
    assert sanity.problems(declared, [Sample(name, 1.0, unit + "x")])
    if math.isfinite(spec.maximum):
        assert sanity.problems(declared, [Sample(name, spec.maximum * 1.01, unit)])
        assert not sanity.problems(declared, [Sample(name, spec.maximum * 0.5, unit)])
    assert not sanity.problems(declared, [Sample(name, 1e-3, unit)])


def test_undeclared_metric_or_one_without_a_range_is_rejected_and_named():
    found = sanity.problems(sanity.declared_metrics(cpu), [Sample("mystery", 1.0, "events/s", {"threads": 1})])
    assert found and "mystery [threads=1] = 1.0 events/s: metric not declared" in found[0]
    found = sanity.problems({"m": ("s", None)}, [Sample("m", 1.0, "s")])
    assert found == ["m = 1.0 s: the scenario declares no plausible range (RANGES) for it"]


def test_the_message_names_metric_value_and_rule():
    with pytest.raises(sanity.ImplausibleSample) as caught:
        sanity.check_repetition(network, [Sample("iperf3_throughput", 9.1, "Gbit/s"),
                                          Sample("iperf3_throughput", 0.0, "Gbit/s", {"streams": 4}),
                                          Sample("iperf3_retransmits", 0.0, "segments")])
    text = str(caught.value)
    assert "repetition discarded (3 samples, none stored)" in text
    assert "iperf3_throughput [streams=4] = 0.0 Gbit/s: must be > 0 (zero means nothing was measured)" in text
    assert "retransmits" not in text  # zero retransmits is a real result
    with pytest.raises(sanity.ImplausibleSample, match=r"memory bus"):
        sanity.check_repetition(network, [Sample("iperf3_throughput", 1e5, "Gbit/s")])
    with pytest.raises(sanity.ImplausibleSample, match="no samples"):
        sanity.check_repetition(network, [])


def test_range_violation_rules():
    count = Range("lower", zero_ok=True)
    assert count.violation(0) is None and count.violation(-1) == "must be >= 0"
    assert Range("lower").violation(0.0).startswith("must be > 0")
    assert Range("higher", 10, "ten").violation(11, "s") == "must be <= 10 s (ten)"


# The harness: a repetition with one bad value stores nothing of that repetition, and the cell fails. ----------

class _Benchmark:
    """pytest-benchmark's pedantic(): setup before each round, rounds until a BaseException ends it."""

    def __init__(self):
        self.extra_info = {}

    def pedantic(self, target, setup, rounds, iterations, warmup_rounds):
        for _ in range(rounds):
            setup()
            target()


class _Scenario:
    NAME = "cpu"
    METRICS: ClassVar = {"events": ("events/s", ("t",))}
    RANGES: ClassVar = {"events": Range("higher")}
    PROFILES: ClassVar = {"quick": {}}

    def __init__(self, values):
        self.values = list(values)

    def run_platform(self, platform, params, raw):
        return [Sample("events", self.values.pop(0), "events/s"), Sample("events", 5.0, "events/s", {"t": 2})]


@pytest.mark.parametrize("bad", [math.nan, math.inf, -3.0, 0.0])
def test_harness_discards_the_whole_repetition_and_fails_the_cell(tmp_path, monkeypatch, bad):
    store = RunStore.create(tmp_path, "run")
    config = RunConfig(platforms=("native",), scenarios=("cpu",), repetitions=3, max_repetitions=3)
    harness = Harness(config, store, image=None, say=lambda _m: None)
    harness._platforms["native"] = object()
    monkeypatch.setattr(base, "load", lambda _name: _Scenario([10.0, bad, 11.0]))
    with pytest.raises(pytest.fail.Exception, match=r"events = .* events/s: "):
        harness.run_cell("native", "cpu", _Benchmark())
    (outcome,) = store.outcomes()
    assert outcome.status == "failed" and outcome.repetitions == 1
    assert "implausible result, repetition discarded" in outcome.reason
    assert [(s.repetition, s.value) for s in store.samples()] == [(1, 10.0), (1, 5.0)]  # rep 2 left nothing
    assert {s.attempt for s in store.samples()} == {outcome.attempt} and outcome.attempt
