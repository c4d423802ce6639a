"""The calibration section's logic on made-up samples: roles pick ours and the references, blocks pair ratios,
and "differs from every reference" needs every interval beyond 1 on the same side."""

from bench.results import SampleRecord
from reporting import calibration
from runtime.platform import KIND_CONTAINER, KIND_NATIVE, ROLE_OURS, ROLE_REFERENCE, PlatformInfo


def info(name: str, role: str, kind: str = KIND_CONTAINER, baseline: bool = False) -> PlatformInfo:
    return PlatformInfo(name, kind, name.upper(), "#123456", "namespaces", emulated=False, baseline=baseline,
                        role=role)


INFOS = {"base": info("base", "", KIND_NATIVE, True), "mine": info("mine", ROLE_OURS),
         "ref1": info("ref1", ROLE_REFERENCE), "ref2": info("ref2", ROLE_REFERENCE)}


def samples(values: dict[str, list[float]], metric: str = "x_per_s", scenario: str = "cpu") -> list[SampleRecord]:
    return [SampleRecord("r", platform, scenario, metric, v, "ops/s", rep, metadata={"block": rep})
            for platform, vs in values.items() for rep, v in enumerate(vs, start=1)]


def test_ours_beyond_every_reference_is_flagged_with_its_level():
    data = samples({"base": [10, 10, 10], "mine": [8, 8.1, 7.9], "ref1": [10, 10.2, 9.9], "ref2": [10.1, 9.8, 10]})
    (row,) = calibration.comparisons(data, INFOS)
    assert row.ours.name == "mine" and [c.reference.name for c in row.comparisons] == ["ref1", "ref2"]
    assert all(c.paired and c.n == 3 and c.ratio.interval.level == 0.75 for c in row.comparisons)
    assert row.differs_from_every_reference
    assert row.verdict.startswith("MINE is lower (worse) than every reference") and "75 %" in row.verdict
    table = calibration.frame([row])
    assert len(table) == 2 and table.differs_from_every_reference.all() and (table.interval_level == 0.75).all()


def test_ours_between_references_or_within_an_interval_is_not_flagged():
    between = samples({"mine": [10, 10, 10], "ref1": [8, 8.1, 7.9], "ref2": [12, 12.1, 11.9]})
    within = samples({"mine": [10, 10, 10], "ref1": [9, 11, 10], "ref2": [12, 12.1, 11.9]}, "y_per_s")
    rows = calibration.comparisons(between + within, INFOS)
    assert len(rows) == 2 and not any(r.differs_from_every_reference for r in rows)


def test_no_section_without_roles_or_outside_the_calibrated_areas():
    data = samples({"mine": [1, 2, 3], "ref1": [1, 2, 3]})
    assert calibration.comparisons(data, {n: info(n, "") for n in INFOS}) == []
    assert calibration.comparisons(samples({"mine": [1, 2], "ref1": [1, 2]}, scenario="startup"), INFOS) == []
    assert calibration.view([]) is None


def test_unpaired_without_blocks():
    data = [SampleRecord("r", p, "memory", "m_mib_s", v, "MiB/s", rep)
            for p, vs in {"mine": [5, 5.1, 4.9], "ref1": [5, 5.2, 5.1]}.items() for rep, v in enumerate(vs)]
    (row,) = calibration.comparisons(data, INFOS)
    (c,) = row.comparisons
    assert not c.paired and round(c.ratio.interval.level, 3) == 0.9  # Mann-Whitney inversion, 3 vs 3
