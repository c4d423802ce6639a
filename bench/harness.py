"""The pytest plugin that runs cells: provision an instance, run a scenario N times, store every sample.

pytest parametrises `bench/cells.py::test_cell` over the run's platform × scenario cells;
pytest-benchmark times every repetition (round) and carries the tool metrics in `extra_info`.
Each cell ends as one outcome line: ok, failed (one readable reason) or skipped (why).
Every repetition's samples pass the sanity layer (bench.sanity) before any is stored; one implausible
value discards the whole repetition and fails the cell. Each cell run is one attempt (a fresh id on its
samples and outcome), so samples of an attempt that never finished are never read (bench.results).
Instances are context managers, so they are destroyed on success, failure and Ctrl-C alike.
"""

from __future__ import annotations

import dataclasses
import statistics
import time
from collections import defaultdict
from collections.abc import Callable

import pytest

from bench import stats, studies
from bench.config import RunConfig
from bench.interleave import Interleaved
from bench.results import CellOutcome, RunStore, SampleRecord, new_attempt_id, variant_of
from bench.sanity import check_repetition
from runtime.errors import IsolabError, PlatformUnavailable
from runtime.image.store import Image
from runtime.platform import Platform, load_platform, platform_class
from scenarios import base as scenario_base
from scenarios.base import RawSink, Sample

Say = Callable[[str], None]
ALL_PLATFORMS = "*"  # the platform part of an interleaved item: every platform of the run


class _EnoughRepetitions(BaseException):
    """Ends pytest-benchmark's rounds early once every metric is precise enough.

    A BaseException, so pytest-benchmark keeps the rounds already timed (it discards a benchmark
    only on an Exception)."""


def noisiest(per_metric: dict[str, list[float]], only: tuple[str, ...] | None = None) -> tuple[str, float]:
    """The metric with the largest coefficient of variation, and that CV (0 with < 2 values).

    Keys look like 'metric[variant] (unit)'; `only` restricts the search to those metric names."""
    worst, worst_cv = "", 0.0
    for key, values in per_metric.items():
        if only is not None and key.split("[", 1)[0] not in only:
            continue
        cv = stats.cv(values)
        if cv > worst_cv:  # nan (mean 0) never extends
            worst, worst_cv = key, cv
    return worst, worst_cv


class Harness:
    def __init__(self, config: RunConfig, store: RunStore, image: Image, say: Say,
                 skip_cells: set[tuple[str, str]] | None = None) -> None:
        self.config = config
        self.store = store
        self.image = image
        self.say = say
        self.skip_cells = skip_cells or set()
        self._platforms: dict[str, Platform | IsolabError] = {}
        self.started = time.monotonic()
        self.cells_done = 0
        self.attempt = ""  # the running cell's attempt id

    # pytest hooks -----------------------------------------------------------------------------
    def pytest_generate_tests(self, metafunc: pytest.Metafunc) -> None:
        if "cell" in metafunc.fixturenames:
            if self.config.order == "interleaved":  # one item per scenario: all its platforms, block by block
                cells = [(ALL_PLATFORMS, s) for s in self.config.scenarios
                         if any((p, s) not in self.skip_cells for p in self.config.platforms_for(s))]
                metafunc.parametrize("cell", cells, ids=[f"interleaved-{s}" for _, s in cells])
                return
            cells = [c for c in self.config.cells() if c not in self.skip_cells]
            metafunc.parametrize("cell", cells, ids=[f"{p}-{s}" for p, s in cells])

    @pytest.fixture
    def harness(self) -> Harness:
        return self

    # platforms --------------------------------------------------------------------------------
    def platform(self, name: str) -> Platform:
        """The platform object, checked once per run; raises PlatformUnavailable with the reason."""
        if name not in self._platforms:
            try:
                cls = platform_class(name)
                options = {option: getattr(self.config, option) for option in cls.options}
                platform = load_platform(name, image=self.image, **options)  # a variant too: name[variant]
                platform.check_available()
                self._platforms[name] = platform
            except PlatformUnavailable as exc:
                self._platforms[name] = exc
            except IsolabError as exc:
                self._platforms[name] = exc
        found = self._platforms[name]
        if isinstance(found, IsolabError):
            raise found
        return found

    def study_skip(self, platform: Platform, scenario: str) -> str | None:
        """Why this run's study profile does not run `scenario` on `platform` (emulated), or None."""
        if not studies.is_study(self.config.profile):  # a built-in profile runs everything everywhere
            return None
        info = platform.describe()
        return studies.emulated_skip_reason(self.config.profile, scenario, info.emulated, info.label)

    # one cell ---------------------------------------------------------------------------------
    def run_cell(self, platform_name: str, scenario_name: str, benchmark: object) -> None:
        if platform_name == ALL_PLATFORMS:
            self.run_interleaved(scenario_name, benchmark)
            return
        index = self.cells_done + 1
        total = len(self.config.cells()) - len(self.skip_cells)
        label = f"[{index}/{total}] {platform_name} × {scenario_name}"
        started = time.monotonic()
        self.attempt = new_attempt_id()
        reps, max_reps = self.config.reps_for(scenario_name), self.config.max_reps_for(scenario_name)
        try:
            platform = self.platform(platform_name)
        except PlatformUnavailable as exc:
            self._finish(CellOutcome(platform_name, scenario_name, "skipped", str(exc)))
            self.say(f"{label}: skipped: {exc}")
            pytest.skip(str(exc))
        except IsolabError as exc:  # e.g. an accelerator forced where it cannot work
            self._finish(CellOutcome(platform_name, scenario_name, "failed", str(exc)))
            self.say(f"{label}: FAILED: {exc}")
            pytest.fail(str(exc), pytrace=False)
        skip = self.study_skip(platform, scenario_name)
        if skip:
            self._finish(CellOutcome(platform_name, scenario_name, "skipped", skip))
            self.say(f"{label}: skipped: {skip}")
            pytest.skip(skip)
        module = scenario_base.load(scenario_name)
        params = studies.params_for(module, self.config.profile)
        done = 0
        failure = ""
        try:
            by_rep: dict[str, dict[int, list[float]]] = defaultdict(dict)
            extend_note = ""

            def unit_values() -> dict[str, list[float]]:
                """One value per repetition (median of its instances' samples): repetitions are the units."""
                return {key: [statistics.median(v) for v in reps_.values()] for key, reps_ in by_rep.items()}

            def enough_yet() -> None:
                """Before each round: stop at the minimum if every CV is on target, else extend."""
                nonlocal extend_note
                if done < reps:
                    return
                metric, cv = noisiest(unit_values(), getattr(module, "PRECISION_METRICS", None))
                if cv <= self.config.cv_target or done >= max_reps:
                    raise _EnoughRepetitions
                extend_note = (f" (extending: CV {100 * cv:.1f}% > {100 * self.config.cv_target:.0f}% "
                               f"on {metric}; at most {max_reps})")

            def measure(run_once: Callable[[RawSink], list[Sample]], metadata: Callable[[], dict]) -> None:
                def one_round() -> None:
                    nonlocal done
                    rep = done + 1
                    eta = ""
                    if done:
                        per_rep = (time.monotonic() - started) / done
                        eta = f", cell ETA {per_rep * (max(reps, rep) - done):.0f} s"
                    self.say(f"{label}: repetition {rep}/{reps}{eta}{extend_note}")
                    raw = self.store.raw_writer(platform_name, scenario_name, rep)
                    samples = check_repetition(module, run_once(raw))  # nothing stored unless all pass
                    extra = metadata()
                    records = [SampleRecord(
                        run_id=self.store.run_id, platform=platform_name, scenario=scenario_name,
                        metric=sample.metric, value=float(sample.value), unit=sample.unit, repetition=rep,
                        metadata={**sample.metadata, **extra}, variant=variant_of(sample.metadata),
                        attempt=self.attempt) for sample in samples]
                    self.store.add_samples(records)
                    for record in records:
                        key = f"{record.metric}[{record.variant}] ({record.unit})"
                        by_rep[key].setdefault(rep, []).append(record.value)
                    done += 1

                try:
                    benchmark.pedantic(one_round, setup=enough_yet, rounds=max_reps,  # type: ignore[attr-defined]
                                       iterations=1, warmup_rounds=0)
                except _EnoughRepetitions:
                    pass
                benchmark.extra_info.update(  # type: ignore[attr-defined]
                    {key: statistics.median(values) for key, values in unit_values().items()})

            if hasattr(module, "run_platform"):
                measure(lambda raw: module.run_platform(platform, params, raw), dict)
            else:
                self.say(f"{label}: starting instance")
                with platform.create(scenario_base.spec_for(module, params)) as instance:
                    self.say(f"{label}: instance {instance.instance_id} up in {instance.start_phases.total:.2f} s")
                    try:
                        if hasattr(module, "prepare"):
                            module.prepare(instance, params)
                        measure(lambda raw: module.run(instance, params, raw), instance.metadata)
                    finally:
                        self._scenario_cleanup(module, instance, params, label)
        except IsolabError as exc:
            failure = str(exc)
        except Exception as exc:
            reason = f"internal error: {type(exc).__name__}: {exc}"
            self._finish(CellOutcome(platform_name, scenario_name, "failed", reason, done,
                                     time.monotonic() - started))
            self.say(f"{label}: FAILED: {reason}")
            raise
        wall = time.monotonic() - started
        if failure and done >= reps:  # the minimum was measured; only an extra (extension) round failed
            note = f"stopped extending after {done} repetitions: {failure}"
            self._finish(CellOutcome(platform_name, scenario_name, "ok", note, done, wall))
            self.say(f"{label}: done, {done} repetitions in {wall:.1f} s ({note})")
            return
        if failure:
            self._finish(CellOutcome(platform_name, scenario_name, "failed", failure, done, wall))
            self.say(f"{label}: FAILED after {done} of {reps} repetitions: {failure}")
            pytest.fail(failure, pytrace=False)
        self._finish(CellOutcome(platform_name, scenario_name, "ok", "", done, wall))
        self.say(f"{label}: done, {done} repetitions in {wall:.1f} s")

    def run_interleaved(self, scenario: str, benchmark: object) -> None:
        """One scenario on every platform in blocks (bench.interleave); a resume continues after the last
        finished block of the scenario's unfinished attempt."""
        started = time.monotonic()
        names = [p for p in self.config.platforms_for(scenario) if (p, scenario) not in self.skip_cells]
        progress = self.store.block_progress().get(scenario)
        self.attempt, first = (progress[0], progress[1] + 1) if progress else (new_attempt_id(), 1)
        reps, max_reps = self.config.reps_for(scenario), self.config.max_reps_for(scenario)
        runner = Interleaved(self, scenario)
        self.say(f"[interleaved {scenario}] {', '.join(names)}: {reps} block(s)"
                 + (f", resuming at block {first}" if progress else ""))
        block = first
        note = ""

        def enough_yet() -> None:
            nonlocal note
            if not any(lane.running for lane in runner.lanes):
                raise _EnoughRepetitions
            if block - 1 < reps:
                return
            metric, cv = runner.noisiest_cv()
            if cv <= self.config.cv_target or block - 1 >= max_reps:
                raise _EnoughRepetitions
            note = f"extended: CV {100 * cv:.1f}% on {metric}"

        def one_block() -> None:
            nonlocal block
            runner.run_block(block, self.attempt, reps)
            block += 1

        try:
            runner.open_lanes(names)
            if not runner.lanes:  # nothing to measure (no benchmark rounds: pytest-benchmark needs one)
                why = "; ".join(f"{name}: {text}" for name, text in runner.unopened.items())
                self.say(f"[interleaved {scenario}] no platform to run: {why}")
                if any(text.startswith("FAILED") for text in runner.unopened.values()):
                    pytest.fail(why, pytrace=False)
                pytest.skip(why)
            for lane in runner.lanes:
                lane.done = first - 1
            try:
                benchmark.pedantic(one_block, setup=enough_yet, rounds=max(1, max_reps - first + 1),  # type: ignore[attr-defined]
                                   iterations=1, warmup_rounds=0)
            except _EnoughRepetitions:
                pass
        finally:
            runner.close()
        failures = runner.finish(reps, started, note)
        self.say(f"[interleaved {scenario}] done, {block - 1} block(s) in {time.monotonic() - started:.1f} s"
                 + (f"; FAILED: {'; '.join(failures)}" if failures else ""))
        if failures:
            pytest.fail("; ".join(failures), pytrace=False)

    def _scenario_cleanup(self, module: object, instance: object, params: dict[str, object], label: str) -> None:
        """Run the scenario's cleanup also after a failure; its own failure is reported, not raised."""
        if not hasattr(module, "cleanup"):
            return
        try:
            module.cleanup(instance, params)
        except Exception as exc:
            self.say(f"{label}: scenario cleanup failed (the instance is destroyed anyway): {exc}")

    def _finish(self, outcome: CellOutcome) -> None:
        self.cells_done += 1
        self.store.add_outcome(dataclasses.replace(outcome, attempt=self.attempt))
