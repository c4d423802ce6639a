"""bench.v2guest's pure parts: subsets, the JUnit report and pytest's summary, the bundle's contents."""

from __future__ import annotations

import tarfile
from pathlib import Path

import pytest

from bench import v2guest

ROOT = Path(__file__).resolve().parents[2]


def test_subsets_name_existing_container_tests():
    full = v2guest.resolve_tests(v2guest.FULL)
    assert "tests/integration/test_container_limits.py" in full
    assert "tests/integration/test_device_policy.py" in full
    for node in v2guest.SMOKE:
        path, _, name = node.partition("::")
        assert path in full
        assert f"def {name.split('[')[0]}(" in (ROOT / path).read_text(), node


def test_resolve_tests_keeps_node_ids_and_expands_globs():
    node = "tests/integration/test_container_limits.py::test_pids_max_stops_fork_bomb"
    assert v2guest.resolve_tests([node]) == [node]
    assert v2guest.resolve_tests(["tests/unit/test_v2g*.py"]) == ["tests/unit/test_v2guest.py"]


def test_junit_outcomes_from_a_real_guest_report(fixtures_dir):
    text = (fixtures_dir / "v2guest" / "junit-guest.xml").read_text()
    outcomes = {o.node_id: o for o in v2guest.parse_junit(text)}
    assert len(outcomes) == 7 and all(n.startswith("tests/integration/test_container_") for n in outcomes)
    failed = outcomes["tests/integration/test_container_isolation.py::test_capabilities_dropped_to_docker_default"]
    assert failed.outcome == "failed" and failed.message.startswith("AssertionError: mknod of a block device")
    assert outcomes["tests/integration/test_container_lifecycle.py::test_cleanup_after_sigkilled_runtime[started]"
                    ].seconds == 94.441
    assert sum(o.outcome == "passed" for o in outcomes.values()) == 6


def test_junit_that_is_not_xml_is_one_clear_error():
    with pytest.raises(v2guest.V2GuestError, match="not XML"):
        v2guest.parse_junit("<testsuites><testsuite")


def test_junit_class_based_test_ids():
    xml = ('<testsuites><testsuite><testcase classname="tests.integration.test_x.TestY" name="test_z[a]" '
           'time="1.5"><skipped message="no nft" /></testcase></testsuite></testsuites>')
    [o] = v2guest.parse_junit(xml)
    assert (o.node_id, o.outcome, o.seconds, o.message) == ("tests/integration/test_x.py::TestY::test_z[a]",
                                                            "skipped", 1.5, "no nft")


def test_summary_line_is_pytests_last_word():
    out = "....F\n=== short test summary info ===\nFAILED t.py::x\n==== 1 failed, 4 passed in 81.20s (0:01:21) ====\n"
    assert v2guest.summary_line(out) == "1 failed, 4 passed in 81.20s (0:01:21)"
    assert v2guest.summary_line("no summary here") == ""


def test_bundle_holds_the_project_and_the_test_distributions(tmp_path):
    out = tmp_path / "bundle.tgz"
    counts = v2guest.build_bundle(out)
    with tarfile.open(out) as tar:
        names = set(tar.getnames())
    assert "src/runtime/container/cgroups/v2.py" in names and "src/pyproject.toml" in names
    assert "src/tests/integration/test_container_limits.py" in names
    assert not any(n.startswith(("src/results/", "src/reports/", "src/.nox/", "src/.git/")) for n in names)
    for package in ("pytest", "_pytest", "pluggy", "pyroute2", "iniconfig", "packaging"):
        assert f"site/{package}" in names, package
    assert any(n.startswith("site/pytest-") and n.endswith(".dist-info/METADATA") for n in names)
    assert any(n.startswith("src/runtime/container/cgroups/__pycache__/v2.cpython-") for n in names)
    assert any(n.startswith("cache/init/") and n.endswith("/isolab-init") for n in names)  # static: runs there
    assert counts["bytes"] == out.stat().st_size


def test_a_missing_distribution_is_named():
    with pytest.raises(v2guest.V2GuestError, match="isl-no-such-dist"):
        v2guest.distribution_closure(["isl-no-such-dist"])
