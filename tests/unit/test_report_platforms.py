"""The report learns everything about a platform from its recorded PlatformInfo (or a documented fallback)."""

from dataclasses import replace

import pytest

from bench.results import RunStore, SampleRecord
from reporting import platforms
from reporting.html import build
from runtime.errors import SpecError
from runtime.platform import (
    KIND_CONTAINER,
    KIND_NATIVE,
    KIND_SANDBOXED_CONTAINER,
    KIND_VM,
    ROLE_NONE,
    ROLE_OURS,
    PlatformInfo,
)

BASE = PlatformInfo("alpha", KIND_NATIVE, "alpha (chroot)", "#111111", "chroot", emulated=False, baseline=True)
BOX = PlatformInfo("beta", KIND_CONTAINER, "beta box", "#222222", "namespaces", emulated=False, baseline=False)
EMU = PlatformInfo("gamma", KIND_VM, "gamma machine", "#333333", "TCG (emulated)", emulated=True, baseline=False)


def test_info_round_trips_and_validates():
    assert PlatformInfo.from_dict(EMU.to_dict()) == EMU
    assert PlatformInfo.from_dict({**EMU.to_dict(), "added_later": 1}) == EMU
    assert EMU.label == "gamma: TCG (emulated)"
    with pytest.raises(SpecError, match="lacks colour"):
        PlatformInfo.from_dict({k: v for k, v in EMU.to_dict().items() if k != "colour"})
    with pytest.raises(SpecError, match="unknown kind"):
        replace(EMU, kind="unikernel")
    with pytest.raises(SpecError, match="#rrggbb"):
        replace(EMU, colour="red")
    with pytest.raises(SpecError, match="unknown role"):
        replace(EMU, role="hero")
    # runs recorded before platforms declared a role read as ROLE_NONE
    assert PlatformInfo.from_dict({k: v for k, v in BOX.to_dict().items() if k != "role"}).role == ROLE_NONE
    assert PlatformInfo.from_dict(replace(BOX, role=ROLE_OURS).to_dict()).role == ROLE_OURS


def test_infos_from_env_order_baseline_and_pairs():
    env = {"platforms": {p.name: {"available": True, "info": p.to_dict()} for p in (EMU, BOX, BASE)}}
    infos = platforms.platform_infos(env, ["beta", "gamma", "alpha"])
    assert list(infos) == ["beta", "gamma", "alpha"]
    assert platforms.baseline(infos) == "alpha"
    assert platforms.ordered(infos, {"gamma", "alpha", "delta"}) == ["alpha", "gamma", "delta"]
    assert platforms.emulated(infos) == [EMU]
    assert platforms.contrasting_pairs(infos) == [("beta", "gamma")]
    sandbox = replace(BOX, name="epsilon", kind=KIND_SANDBOXED_CONTAINER)
    assert platforms.contrasting_pairs({**infos, "epsilon": sandbox}) == [
        ("beta", "gamma"), ("beta", "epsilon"), ("gamma", "epsilon")]


def test_old_runs_without_info_fall_back():
    env = {"platforms": {"gamma": {"available": True, "accelerator": "tcg"}, "beta": {"available": True}}}
    infos = platforms.platform_infos(env, ["alpha", "beta", "gamma"])
    assert platforms.baseline(infos) == "alpha"  # the first in the run's order
    assert [i.label for i in infos.values()] == ["alpha", "beta", "gamma: TCG (emulated)"]
    assert platforms.emulated(infos) == [infos["gamma"]]
    assert len({i.colour for i in infos.values()}) == 3
    # A run that recorded infos but had no baseline gets none (no ratios), not a made-up one.
    assert platforms.baseline(platforms.platform_infos({"platforms": {"beta": {"info": BOX.to_dict()}}})) is None


def test_report_uses_infos_for_banners_colours_and_ratios(tmp_path):
    store = RunStore.create(tmp_path / "results", "r3")
    store.write_run_info({"run_id": "r3", "status": "complete",
                          "config": {"profile": "quick", "reps": 3, "platforms": ["beta", "alpha", "gamma"],
                                     "scenarios": ["cpu"]}})
    env = {"platforms": {p.name: {"available": True, "info": p.to_dict()} for p in (BASE, BOX, EMU)},
           "host": {}, "cpu": {}, "memory_bytes": 2**30, "command_line": ["x"]}
    env["platforms"]["gamma"]["confinement_warning"] = "ran as root: no unprivileged user on this host"
    store.write_env(env)
    for platform, base in (("alpha", 100.0), ("beta", 50.0), ("gamma", 25.0)):
        for rep, delta in enumerate((0.0, 1.0, -1.0), start=1):
            store.add_sample(SampleRecord("r3", platform, "cpu", "sysbench_cpu_events_per_s", base + delta,
                                          "events/s", rep, {"threads": 1}))
    text = build(store, tmp_path / "reports").read_text()
    assert "gamma machine (gamma: TCG (emulated))" in text and "were <em>emulated</em>" in text
    assert "ran as root: no unprivileged user on this host" in text
    assert "beta ÷ alpha" in text and "gamma ÷ alpha" in text and "alpha ÷" not in text
    assert "beta ÷ alpha = 0.500" in text  # the container-kind claim, checked on the container-kind platform
    figure = (tmp_path / "reports" / "r3" / "figures" / "cpu-sysbench_cpu_events_per_s.svg").read_text()
    assert "#222222" in figure  # the platform's own colour in the plot
    assert "beta box (beta: namespaces)" in text
