"""Startup: time from asking for an instance to its command's exit (start-to-exit) and to running a first
command in it (ready-for-exec), and teardown; serial and parallel, with the same workload everywhere.

The workload is `/bin/true`. Start-to-exit goes through `Platform.run_once`: the platform's own one-shot
path where it has one (a container whose pid 1 is the command, `<runtime> run`), else create, exec,
destroy. Ready-for-exec is create plus the first `/bin/true` answered through `exec`; teardown is destroy.

Per repetition: `serial` instances one after another, each measured start-to-exit and ready-for-exec
(on the default path one instance gives both: its ready time, then its destroy), then `parallel`
instances at once: created together until all answer (`startup_all_ready_s`), destroyed together
(`teardown_all_s`), and `parallel` one-shots at once until all exited and were removed
(`startup_all_exit_s`; on the default path the same instances' creation plus destruction). The
platforms' own start phases are kept as samples (`startup_phase_s` for ready-for-exec,
`start_to_exit_phase_s` for a one-shot path that exposes them). Serial samples carry `instance` (its
index in the repetition): the statistics reduce a repetition's instances to one value, because they share
the host's state. How each platform ran its one-shots is in the raw log (`startup.log`).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from runtime.platform import DEFAULT_RUN_ONCE, Instance, Platform, RunOnce
from runtime.spec import InstanceSpec
from scenarios.base import DAY_S, Range, RawSink, Sample, ScenarioError, check, destroy_all

NAME = "startup"
DESCRIPTION = ("time to a command's exit in a fresh instance, to a ready instance (first command answered) and "
               "teardown, serial and in parallel")
TOOLS = ()
WORKLOAD = ("/bin/true",)
PRECISION_METRICS = ("startup_ready_s", "start_to_exit_s")  # CV of these decides extension
#: Minimum repetitions per profile (the harness's default otherwise): 6 gives the median's [min, max]
#: interval 96.9 % coverage instead of 75 % at 3; affordable in the quick budget (docs/benchmarks.md).
REPETITIONS = {"quick": 6}
#: What this scenario emits: metric -> (unit, metadata keys that make up its variant). Claims and reports
#: check against this; tests check it against the code below.
METRICS: dict[str, tuple[str, tuple[str, ...]]] = {
    "start_to_exit_s": ("s", ("mode",)), "startup_all_exit_s": ("s", ("instances", "mode")),
    "start_to_exit_phase_s": ("s", ("phase",)),
    "startup_ready_s": ("s", ("mode",)), "teardown_s": ("s", ("mode",)), "startup_phase_s": ("s", ("phase",)),
    "startup_all_ready_s": ("s", ("instances", "mode")), "teardown_all_s": ("s", ("instances", "mode")),
}

_SECONDS = Range("lower", DAY_S, "a day")
_PHASE = Range("lower", DAY_S, "a day", zero_ok=True)  # a phase with nothing to do may take no measurable time
RANGES: dict[str, Range] = {
    "start_to_exit_s": _SECONDS, "startup_all_exit_s": _SECONDS, "start_to_exit_phase_s": _PHASE,
    "startup_ready_s": _SECONDS, "teardown_s": _SECONDS, "startup_all_ready_s": _SECONDS, "teardown_all_s": _SECONDS,
    "startup_phase_s": _PHASE,
}

PROFILES: dict[str, dict[str, object]] = {
    "quick": {"serial": 1, "parallel": 2},
    "full": {"serial": 50, "parallel": 8},
}
TIMEOUT_S = 120.0

T = TypeVar("T")


def _ready(platform: Platform) -> tuple[Instance, float]:
    begin = time.perf_counter()
    instance = platform.create(InstanceSpec())
    try:
        check(instance.exec(list(WORKLOAD), timeout=TIMEOUT_S), instance)
    except BaseException:
        instance.destroy()
        raise
    return instance, time.perf_counter() - begin


def _once(platform: Platform) -> RunOnce:
    result = platform.run_once(list(WORKLOAD), InstanceSpec(), timeout=TIMEOUT_S)
    if result.returncode != 0:
        detail = f": {result.detail}" if result.detail else ""
        raise ScenarioError(f"{' '.join(WORKLOAD)} exited {result.returncode} on {platform.name} "
                            f"({result.path}){detail}")
    return result


def _all_at_once(count: int, work: Callable[[], T], what: str) -> tuple[list[T], float]:
    """Run `work` `count` times at once; (results, wall seconds until all finished). The first failure is
    raised once all finished (so the others' instances are not left behind)."""
    begin = time.perf_counter()
    results: list[T] = []
    errors: list[BaseException] = []
    with ThreadPoolExecutor(max_workers=count) as pool:
        for future in [pool.submit(work) for _ in range(count)]:
            try:
                results.append(future.result())
            except BaseException as exc:  # collect; the caller cleans up what succeeded
                errors.append(exc)
    wall = time.perf_counter() - begin
    if errors:
        raise _Partial(results, f"{len(errors)} of {count} parallel {what} failed: {errors[0]}")
    return results, wall


class _Partial(ScenarioError):
    def __init__(self, results: list, message: str) -> None:  # type: ignore[type-arg]
        super().__init__(message)
        self.results = results


def _serial(platform: Platform, index: int, samples: list[Sample], log: list[str]) -> None:
    once = _once(platform)
    samples.append(Sample("start_to_exit_s", once.seconds, "s", {"mode": "serial", "instance": index}))
    if once.ready_s is not None and once.teardown_s is not None:  # the default path: one instance, both figures
        ready, teardown, phases = once.ready_s, once.teardown_s, dict(once.phases)
    else:
        for phase, seconds in once.phases.items():
            samples.append(Sample("start_to_exit_phase_s", seconds, "s", {"phase": phase, "instance": index}))
        instance, ready = _ready(platform)
        phases = dict(instance.start_phases.phases)
        begin = time.perf_counter()
        instance.destroy()
        teardown = time.perf_counter() - begin
    samples.append(Sample("startup_ready_s", ready, "s", {"mode": "serial", "instance": index}))
    samples.append(Sample("teardown_s", teardown, "s", {"mode": "serial", "instance": index}))
    for phase, seconds in phases.items():
        samples.append(Sample("startup_phase_s", seconds, "s", {"phase": phase, "instance": index}))
    log.append(f"serial {index}: start-to-exit {once.seconds:.4f} s ({once.path}, phases {once.phases}), "
               f"ready {ready:.4f} s, teardown {teardown:.4f} s, phases {phases}")


def run_platform(platform: Platform, params: dict[str, object], raw: RawSink) -> list[Sample]:
    samples: list[Sample] = []
    log: list[str] = [f"one-shot path: {platform.one_shot}"]
    for index in range(int(params["serial"])):  # type: ignore[call-overload]
        _serial(platform, index, samples, log)

    count = int(params["parallel"])  # type: ignore[call-overload]
    try:
        started, all_ready = _all_at_once(count, lambda: _ready(platform)[0], "starts")
    except _Partial as exc:
        destroy_all(exc.results)
        raise
    teardown = destroy_all(started)
    if platform.one_shot == DEFAULT_RUN_ONCE:  # its one-shot is create+exec+destroy: these instances were that
        all_exit = all_ready + teardown
    else:
        _, all_exit = _all_at_once(count, lambda: _once(platform), "one-shots")
    parallel = {"mode": "parallel", "instances": count}
    samples.append(Sample("startup_all_ready_s", all_ready, "s", dict(parallel)))
    samples.append(Sample("teardown_all_s", teardown, "s", dict(parallel)))
    samples.append(Sample("startup_all_exit_s", all_exit, "s", dict(parallel)))
    log.append(f"parallel {count}: all ready {all_ready:.4f} s, teardown {teardown:.4f} s, "
               f"all exited {all_exit:.4f} s")
    raw("startup.log", "\n".join(log) + "\n")
    return samples
