"""Footprint's density count: it starts from the idle instances already running and boots only what it lacks."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from scenarios import footprint

MIB = 2**20


@dataclass
class _Instance:
    pss: int
    destroyed: bool = False

    def destroy(self) -> None:
        self.destroyed = True


@dataclass
class _Platform:
    pss: int
    created: list[_Instance] = field(default_factory=list)

    def create(self, spec: object) -> _Instance:
        instance = _Instance(self.pss)
        self.created.append(instance)
        return instance


@pytest.fixture(autouse=True)
def _pss_is_attribute(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(footprint, "_instance_pss", lambda instance: instance.pss)


def _params(budget_mib: int, cap: int) -> dict[str, object]:
    return {"density_budget_mib": budget_mib, "density_cap": cap, "memory_mib": 512, "settle_s": 0.0}


@pytest.mark.parametrize(("pss", "budget", "expected"), [
    ([100, 100, 100], 250, 2), ([100, 100], 200, 2), ([300], 200, 0), ([], 100, 0),
])
def test_within_budget_counts_the_prefix_that_fits(pss: list[int], budget: int, expected: int) -> None:
    assert footprint._within_budget(pss, budget) == expected


def test_density_at_its_cap_boots_nothing() -> None:
    platform = _Platform(100 * MIB)
    running = [_Instance(100 * MIB), _Instance(100 * MIB)]
    samples = footprint._density(platform, _params(768, 2), running, [])  # type: ignore[arg-type]
    assert platform.created == [] and samples[0].value == 2


def test_density_boots_until_the_budget_is_passed() -> None:
    platform = _Platform(300 * MIB)
    running = [_Instance(300 * MIB)]
    samples = footprint._density(platform, _params(1000, 64), running, [])  # type: ignore[arg-type]
    assert samples[0].value == 3  # 900 MiB fit, the fourth passes 1000
    assert len(platform.created) == 3 and len(running) == 4  # the caller destroys what density appended


def test_density_when_the_running_ones_already_pass_the_budget() -> None:
    platform = _Platform(100 * MIB)
    running = [_Instance(600 * MIB), _Instance(600 * MIB)]
    samples = footprint._density(platform, _params(768, 8), running, [])  # type: ignore[arg-type]
    assert platform.created == [] and samples[0].value == 1
