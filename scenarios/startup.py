"""Startup: time from asking for an instance to running a command in it, and teardown; serial and parallel.

Per repetition: `serial` instances one after another (each: create, first `true`, destroy), then
`parallel` instances started at once (wall time until all answer). The platforms' own start phases
(namespaces/mounts/cgroup for a container, define/QEMU/kernel/init/agent for a VM) are kept as
samples so the cost is visible. Serial samples carry `instance` (its index in the repetition): the
statistics reduce a repetition's instances to one value, because they share the host's state.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

from runtime.platform import Instance, Platform
from runtime.spec import InstanceSpec
from scenarios.base import DAY_S, Range, RawSink, Sample, ScenarioError, check

NAME = "startup"
DESCRIPTION = "time to a ready instance (first command answered) and teardown, serial and in parallel"
TOOLS = ()
PRECISION_METRICS = ("startup_ready_s",)  # CV of these decides extension
#: Minimum repetitions per profile (the harness's default otherwise): 6 gives the median's [min, max]
#: interval 96.9 % coverage instead of 75 % at 3; affordable in the quick budget (docs/benchmarks.md).
REPETITIONS = {"quick": 6}
#: What this scenario emits: metric -> (unit, metadata keys that make up its variant). Claims and reports
#: check against this; tests check it against the code below.
METRICS: dict[str, tuple[str, tuple[str, ...]]] = {
    "startup_ready_s": ("s", ("mode",)), "teardown_s": ("s", ("mode",)), "startup_phase_s": ("s", ("phase",)),
    "startup_all_ready_s": ("s", ("instances", "mode")), "teardown_all_s": ("s", ("instances", "mode")),
}

_SECONDS = Range("lower", DAY_S, "a day")
RANGES: dict[str, Range] = {
    "startup_ready_s": _SECONDS, "teardown_s": _SECONDS, "startup_all_ready_s": _SECONDS, "teardown_all_s": _SECONDS,
    # a phase with nothing to do (e.g. no volume to attach) may take no measurable time
    "startup_phase_s": Range("lower", DAY_S, "a day", zero_ok=True),
}

PROFILES: dict[str, dict[str, object]] = {
    "quick": {"serial": 1, "parallel": 2},
    "full": {"serial": 50, "parallel": 8},
}


def _ready(platform: Platform) -> tuple[Instance, float]:
    begin = time.perf_counter()
    instance = platform.create(InstanceSpec())
    try:
        check(instance.exec(["true"], timeout=120), instance)
    except BaseException:
        instance.destroy()
        raise
    return instance, time.perf_counter() - begin


def run_platform(platform: Platform, params: dict[str, object], raw: RawSink) -> list[Sample]:
    samples: list[Sample] = []
    log: list[str] = []
    for index in range(int(params["serial"])):  # type: ignore[call-overload]
        instance, ready = _ready(platform)
        phases = dict(instance.start_phases.phases)
        begin = time.perf_counter()
        instance.destroy()
        teardown = time.perf_counter() - begin
        samples.append(Sample("startup_ready_s", ready, "s", {"mode": "serial", "instance": index}))
        samples.append(Sample("teardown_s", teardown, "s", {"mode": "serial", "instance": index}))
        for phase, seconds in phases.items():
            samples.append(Sample("startup_phase_s", seconds, "s", {"phase": phase, "instance": index}))
        log.append(f"serial {index}: ready {ready:.4f} s, teardown {teardown:.4f} s, phases {phases}")

    count = int(params["parallel"])  # type: ignore[call-overload]
    begin = time.perf_counter()
    with ThreadPoolExecutor(max_workers=count) as pool:
        futures = [pool.submit(_ready, platform) for _ in range(count)]
        started: list[Instance] = []
        errors: list[BaseException] = []
        for future in futures:
            try:
                started.append(future.result()[0])
            except BaseException as exc:  # collect, destroy the rest, then report
                errors.append(exc)
    all_ready = time.perf_counter() - begin
    begin = time.perf_counter()
    for instance in started:
        instance.destroy()
    teardown = time.perf_counter() - begin
    if errors:
        raise ScenarioError(f"{len(errors)} of {count} parallel starts failed: {errors[0]}")
    samples.append(Sample("startup_all_ready_s", all_ready, "s", {"mode": "parallel", "instances": count}))
    samples.append(Sample("teardown_all_s", teardown, "s", {"mode": "parallel", "instances": count}))
    log.append(f"parallel {count}: all ready {all_ready:.4f} s, teardown {teardown:.4f} s")
    raw("startup.log", "\n".join(log) + "\n")
    return samples
