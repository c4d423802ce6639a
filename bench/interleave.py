"""The interleaved (blocked) design: one scenario on every platform, repetition by repetition.

A block holds one repetition on every platform still running, in a new random order (seeded by the
run's seed and the scenario, so run.json reproduces it). A scenario that runs on one instance
(`run`) gets one instance per platform for the whole scenario; while one platform is measured the
others are quiesced (cgroup freezer, paused domain; native runs nothing between commands) and the
host CPU time their processes used meanwhile is recorded, so "quiet" is checked, not assumed. A
platform whose instances cannot be quiesced, and scenarios that make their own instances
(`run_platform`: startup, footprint, network, isolation), start and destroy instances within the
block instead. Every sample carries `block` and `position` (its wall-clock time is its timestamp);
each finished block is a line in blocks.jsonl, where a resume continues.
"""

from __future__ import annotations

import random
import statistics
import time
import zlib
from collections import defaultdict
from contextlib import suppress
from dataclasses import dataclass, field
from types import ModuleType

from bench import stats, studies
from bench.results import CellOutcome, SampleRecord, variant_of
from bench.sanity import check_repetition
from runtime.errors import IsolabError, PlatformUnavailable
from runtime.linux.process import tree_cpu_seconds
from runtime.platform import Instance, Platform
from scenarios import base as scenario_base
from scenarios.base import RawSink, Sample


def block_order(platforms: list[str], seed: int, scenario: str, block: int) -> list[str]:
    """The platforms of one block in their random order (deterministic in seed, scenario and block)."""
    order = list(platforms)
    random.Random(f"{seed}:{zlib.crc32(scenario.encode())}:{block}").shuffle(order)
    return order


@dataclass
class Lane:
    """One platform's part of an interleaved scenario."""

    name: str
    platform: Platform
    instance: Instance | None = None
    quiet: str | None = None  # how its instance is quieted between turns (None: made per block)
    done: int = 0
    failure: str = ""
    by_rep: dict[str, dict[int, list[float]]] = field(default_factory=lambda: defaultdict(dict))

    @property
    def running(self) -> bool:
        return not self.failure


class Interleaved:
    """Runs one scenario across platforms in blocks; the harness gives it the store and the say()."""

    def __init__(self, harness: object, scenario: str) -> None:
        self.h = harness
        self.scenario = scenario
        self.module: ModuleType = scenario_base.load(scenario)
        self.params = studies.params_for(self.module, self.h.config.profile)  # type: ignore[attr-defined]
        self.per_instance = not hasattr(self.module, "run_platform")
        self.lanes: list[Lane] = []
        self.unopened: dict[str, str] = {}  # platform -> why it has no lane ("skipped: ..." / "FAILED: ...")

    # -- setup -----------------------------------------------------------------------------------
    def _say(self, text: str) -> None:
        self.h.say(f"[interleaved {self.scenario}] {text}")  # type: ignore[attr-defined]

    def _outcome(self, platform: str, status: str, reason: str = "", reps: int = 0, wall: float = 0.0) -> None:
        self.h._finish(CellOutcome(platform, self.scenario, status, reason, reps, wall))  # type: ignore[attr-defined]

    def _no_lane(self, name: str, status: str, reason: str) -> None:
        self._outcome(name, status, reason)
        shown = "FAILED" if status == "failed" else status
        self._say(f"{name}: {shown}: {reason}")
        self.unopened[name] = f"{shown}: {reason}"

    def open_lanes(self, names: list[str]) -> None:
        for name in names:
            try:
                platform = self.h.platform(name)  # type: ignore[attr-defined]
            except PlatformUnavailable as exc:
                self._no_lane(name, "skipped", str(exc))
                continue
            except IsolabError as exc:
                self._no_lane(name, "failed", str(exc))
                continue
            skip = self.h.study_skip(platform, self.scenario)  # type: ignore[attr-defined]
            if skip:
                self._no_lane(name, "skipped", skip)
                continue
            lane = Lane(name, platform)
            self.lanes.append(lane)
            if self.per_instance:
                try:
                    self._start(lane)
                    lane.quiet = lane.instance.quiesce() if lane.instance else None  # type: ignore[union-attr]
                    if lane.quiet is None:  # cannot be quieted: made and destroyed per block instead
                        self._stop(lane)
                except IsolabError as exc:
                    lane.failure = str(exc)
                    self._stop(lane)

    def _start(self, lane: Lane) -> None:
        lane.instance = lane.platform.create(scenario_base.spec_for(self.module, self.params))
        if hasattr(self.module, "prepare"):
            self.module.prepare(lane.instance, self.params)

    def _stop(self, lane: Lane) -> None:
        instance, lane.instance = lane.instance, None
        if instance is None:
            return
        try:
            with suppress(IsolabError):
                instance.wake()  # a frozen cgroup's tasks cannot die until thawed
            if hasattr(self.module, "cleanup"):
                with suppress(Exception):
                    self.module.cleanup(instance, self.params)
        finally:
            instance.destroy()

    def close(self) -> None:
        for lane in self.lanes:
            self._stop(lane)

    # -- one turn ----------------------------------------------------------------------------------
    def _quiet_pids(self, active: Lane) -> list[int]:
        return [pid for lane in self.lanes if lane is not active and lane.instance is not None
                for pid in lane.instance.host_pids()]

    def turn(self, lane: Lane, block: int, position: int, attempt: str) -> dict[str, object]:
        """One repetition of `lane` in `block`; returns what the block record keeps of it."""
        store = self.h.store  # type: ignore[attr-defined]
        raw: RawSink = store.raw_writer(lane.name, self.scenario, block)
        others = self._quiet_pids(lane)
        quiet_before = tree_cpu_seconds(others)
        started = time.monotonic()
        made_here = False
        try:
            if self.per_instance and lane.instance is None:
                self._start(lane)
                made_here = True
            elif lane.instance is not None:
                lane.instance.wake()
            samples: list[Sample]
            if self.per_instance:
                assert lane.instance is not None
                samples = self.module.run(lane.instance, self.params, raw)
                extra = lane.instance.metadata()
            else:
                samples = self.module.run_platform(lane.platform, self.params, raw)
                extra = {}
            samples = check_repetition(self.module, samples)
            records = [SampleRecord(
                run_id=store.run_id, platform=lane.name, scenario=self.scenario, metric=s.metric,
                value=float(s.value), unit=s.unit, repetition=block,
                metadata={**s.metadata, **extra, "block": block, "position": position},
                variant=variant_of(s.metadata), attempt=attempt) for s in samples]
            store.add_samples(records)
            for record in records:
                key = f"{record.metric}[{record.variant}] ({record.unit})"
                lane.by_rep[key].setdefault(block, []).append(record.value)
            lane.done += 1
        finally:
            if made_here:
                self._stop(lane)
            elif lane.instance is not None and lane.quiet is not None:
                lane.instance.quiesce()
        return {"platform": lane.name, "position": position, "seconds": round(time.monotonic() - started, 3),
                "quiet_cpu_s": round(tree_cpu_seconds(others) - quiet_before, 4) if others else 0.0}

    # -- the blocks ----------------------------------------------------------------------------------
    def noisiest_cv(self) -> tuple[str, float]:
        wanted = getattr(self.module, "PRECISION_METRICS", None)
        worst, worst_cv = "", 0.0
        for lane in self.lanes:
            if not lane.running:
                continue
            for key, reps in lane.by_rep.items():
                if wanted is not None and key.split("[", 1)[0] not in wanted:
                    continue
                values = [statistics.median(v) for v in reps.values()]
                cv = stats.cv(values)
                if cv > worst_cv:
                    worst, worst_cv = f"{lane.name} {key}", cv
        return worst, worst_cv

    def run_block(self, block: int, attempt: str, reps: int) -> None:
        running = [lane for lane in self.lanes if lane.running]
        order = block_order([lane.name for lane in running], self.h.config.seed, self.scenario, block)  # type: ignore[attr-defined]
        lanes = {lane.name: lane for lane in running}
        turns = []
        for position, name in enumerate(order, start=1):
            lane = lanes[name]
            self._say(f"{name}: repetition {block}/{reps} (block {block}, position {position}/{len(order)})")
            try:
                turns.append(self.turn(lane, block, position, attempt))
            except Exception as exc:  # one platform's failure ends its lane, not the others'
                internal = not isinstance(exc, IsolabError)
                lane.failure = f"internal error: {type(exc).__name__}: {exc}" if internal else str(exc)
                self._say(f"{name}: FAILED in block {block}: {lane.failure}")
                self._stop(lane)
        self.h.store.add_block({  # type: ignore[attr-defined]
            "scenario": self.scenario, "attempt": attempt, "block": block, "order": order, "turns": turns,
            "quiet": {lane.name: lane.quiet or "made and destroyed per block" for lane in running}})

    def finish(self, reps: int, started: float, note: str = "") -> list[str]:
        """Outcome lines for every lane; returns the failures (for pytest)."""
        failures = []
        wall = time.monotonic() - started
        for lane in self.lanes:
            if lane.failure and lane.done < reps:
                self._outcome(lane.name, "failed", lane.failure, lane.done, wall)
                failures.append(f"{lane.name}: {lane.failure}")
            else:
                extra = f"stopped extending after {lane.done} repetitions: {lane.failure}" if lane.failure else note
                self._outcome(lane.name, "ok", extra, lane.done, wall)
        return failures
