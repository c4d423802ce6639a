"""CPU throughput: sysbench cpu (primes) and stress-ng's matrix product, 1 thread and all cpus."""

from __future__ import annotations

from runtime.platform import Instance
from scenarios.base import Range, RawSink, Sample, ScenarioError, check, require_tools
from scenarios.parsers import ParseError, stressng, sysbench

NAME = "cpu"
DESCRIPTION = "sysbench cpu events/s and stress-ng matrix bogo-ops/s, single thread and all cpus"
TOOLS = ("sysbench", "stress-ng", "nproc")
#: What this scenario emits: metric -> (unit, metadata keys that make up its variant). Claims and reports
#: check against this; tests check it against the code below.
METRICS: dict[str, tuple[str, tuple[str, ...]]] = {
    "sysbench_cpu_events_per_s": ("events/s", ("threads",)),
    "stressng_matrix_bogo_ops_per_s": ("bogo-ops/s", ("method", "threads")),
}

_CYCLES_WHY = "more per second than the CPU has cycles (10^10/s)"
RANGES: dict[str, Range] = {
    "sysbench_cpu_events_per_s": Range("higher", 1e10, _CYCLES_WHY),
    "stressng_matrix_bogo_ops_per_s": Range("higher", 1e10, _CYCLES_WHY),
}

PROFILES: dict[str, dict[str, object]] = {
    "quick": {"seconds": 2, "threads": ["1", "all"], "sysbench_max_prime": 10000, "matrix_method": "prod"},
    "full": {"seconds": 20, "threads": ["1", "all"], "sysbench_max_prime": 20000, "matrix_method": "prod"},
}


def prepare(instance: Instance, params: dict[str, object]) -> None:
    require_tools(instance, TOOLS)


def _thread_counts(instance: Instance, params: dict[str, object]) -> list[int]:
    cpus = int(check(instance.exec(["nproc"], timeout=30), instance).stdout.strip())
    counts = [cpus if t == "all" else int(t) for t in params["threads"]]  # type: ignore[union-attr]
    return sorted(set(counts))


def run(instance: Instance, params: dict[str, object], raw: RawSink) -> list[Sample]:
    seconds = int(params["seconds"])  # type: ignore[arg-type]
    samples: list[Sample] = []
    for threads in _thread_counts(instance, params):
        meta = {"threads": threads}
        result = check(instance.exec(
            ["sysbench", "cpu", f"--threads={threads}", f"--time={seconds}",
             f"--cpu-max-prime={params['sysbench_max_prime']}", "run"], timeout=seconds * 4 + 60), instance)
        raw(f"sysbench-cpu-t{threads}.txt", result.stdout)
        try:
            figures = sysbench.parse(result.stdout, seconds)
        except ParseError as exc:
            raise ScenarioError(str(exc)) from exc
        if "events_per_second" not in figures:
            raise ScenarioError("sysbench cpu output has no 'events per second' line")
        samples.append(Sample("sysbench_cpu_events_per_s", figures["events_per_second"], "events/s", meta))

        out = f"{instance.scratch_dir}/stress-ng-matrix.yaml"
        method = str(params["matrix_method"])
        result = check(instance.exec(
            ["stress-ng", "--matrix", str(threads), "--matrix-method", method, "-t", str(seconds), "--metrics-brief",
             "--temp-path", instance.scratch_dir, "--yaml", out], timeout=seconds * 4 + 60), instance)
        text = check(instance.exec(["cat", out], timeout=30), instance).stdout
        raw(f"stress-ng-matrix-t{threads}.yaml", text)
        try:
            value = stressng.metric(text, "matrix", seconds=seconds, log=result.stdout + result.stderr)
        except ParseError as exc:
            raise ScenarioError(str(exc)) from exc
        samples.append(Sample("stressng_matrix_bogo_ops_per_s", value, "bogo-ops/s", {**meta, "method": method}))
    return samples


def cleanup(instance: Instance, params: dict[str, object]) -> None:
    instance.exec(["rm", "-f", f"{instance.scratch_dir}/stress-ng-matrix.yaml"], timeout=30)
