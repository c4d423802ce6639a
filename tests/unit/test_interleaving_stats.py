"""The interleaved design as pure logic: on a host whose speed drifts linearly, the sequential order
reports a spurious platform difference and the paired, interleaved analysis recovers 1.00; block
orders are random but reproducible; a resume continues after the last finished block."""

import random

import pytest

from bench import stats
from bench.interleave import block_order
from bench.results import CellOutcome, RunStore, SampleRecord

BLOCKS = 10


def host_speed(t: float) -> float:
    """The host gets 1 % faster per time step (the drift), with a little noise."""
    return 100.0 * (1 + 0.01 * t) * (1 + random.Random(int(t * 1000)).uniform(-0.002, 0.002))


def test_sequential_order_turns_drift_into_a_platform_difference():
    native = [host_speed(t) for t in range(BLOCKS)]  # all of native first ...
    container = [host_speed(BLOCKS + t) for t in range(BLOCKS)]  # ... then all of the container
    spurious = stats.ratio(container, native)
    assert spurious.point > 1.05 and spurious.interval.excludes(1.0)


def test_interleaved_paired_analysis_recovers_one():
    native, container = {}, {}
    for block in range(1, BLOCKS + 1):
        order = block_order(["native", "container"], 7, "cpu", block)
        for position, platform in enumerate(order):
            t = 2 * (block - 1) + position  # each block measures both, one after the other
            (native if platform == "native" else container)[block] = host_speed(t)
    paired = stats.paired_ratio(container, native)
    assert paired.point == pytest.approx(1.0, abs=0.012)
    assert paired.interval.contains(1.0) and paired.interval.level >= 0.95
    assert stats.drift(native).significant and stats.drift(native).slope_per_block > 0


def test_paired_ratio_says_its_real_level_at_small_n():
    paired = stats.paired_ratio({1: 2.0, 2: 2.1, 3: 1.9}, {1: 1.0, 2: 1.0, 3: 1.0})
    assert paired.interval.level == pytest.approx(0.75) and "75 %" in paired.note
    assert stats.paired_ratio({1: 1.0}, {2: 1.0}).note == "no block measured both"


def test_no_drift_on_a_flat_series():
    flat = {b: 100.0 + (b % 2) * 0.1 for b in range(1, 11)}
    assert not stats.drift(flat).significant
    assert "too few blocks" in stats.drift({1: 1.0, 2: 1.0}).text


def test_block_orders_are_random_but_reproducible():
    platforms = ["native", "container", "vm"]
    orders = [tuple(block_order(platforms, 1, "cpu", b)) for b in range(1, 21)]
    assert len(set(orders)) > 1 and all(sorted(o) == sorted(platforms) for o in orders)
    assert orders == [tuple(block_order(platforms, 1, "cpu", b)) for b in range(1, 21)]
    assert orders != [tuple(block_order(platforms, 2, "cpu", b)) for b in range(1, 21)]


def test_resume_continues_after_the_last_finished_block(tmp_path):
    store = RunStore.create(tmp_path)
    (store.path / "run.json").write_text("{}")

    def sample(platform: str, block: int, attempt: str = "a1") -> SampleRecord:
        return SampleRecord(run_id=store.run_id, platform=platform, scenario="cpu", metric="m", value=1.0,
                            unit="u", repetition=block, metadata={"block": block, "position": 1}, attempt=attempt)

    for block in (1, 2):
        store.add_samples([sample("native", block), sample("container", block)])
        store.add_block({"scenario": "cpu", "attempt": "a1", "block": block, "order": ["native", "container"]})
    store.add_samples([sample("native", 3)])  # block 3 was cut short by a kill
    assert store.block_progress() == {"cpu": ("a1", 2)}
    dropped = store.drop_unfinished()
    assert dropped == 1
    kept = sorted((s.platform, s.metadata["block"]) for s in store._all_samples())
    assert kept == [("container", 1), ("container", 2), ("native", 1), ("native", 2)]
    for platform in ("native", "container"):  # the resumed attempt finishes under the same id
        store.add_samples([sample(platform, 3)])
        store.add_outcome(CellOutcome(platform, "cpu", "ok", "", 3, attempt="a1"))
    assert store.block_progress() == {}
    assert len(store.samples()) == 6


def test_default_run_keeps_scoped_platforms_to_their_scope():
    from bench.config import parse_selection

    default = parse_selection(None, None, "quick", None)
    assert "container-userns" in default.platforms
    assert "container-userns" not in default.platforms_for("cpu")
    assert "container-userns" in default.platforms_for("isolation_visibility")
    assert ("container-userns", "cpu") not in default.cells()
    named = parse_selection("native,container-userns", "cpu", "quick", None)
    assert named.platforms_for("cpu") == ["native", "container-userns"]
