"""What the report knows about each platform of a run: its `PlatformInfo`, read from env.json.

A run records `env.json["platforms"][name]["info"]` (see `runtime.platform.PlatformInfo`) for every
platform that was available. Everything in the report that depends on a platform (order, colour,
label, which one is the baseline, which ones were emulated or ran with weaker confinement) comes from
here, so the report never names a platform.

Runs recorded before platforms described themselves have no "info". For them, and for platforms
absent from env.json, a neutral info is made up: label = the name, kind KIND_CONTAINER (a neutral
choice that no banner reacts to), a colour from a fixed palette by position (so bars stay
distinguishable), emulated only when the old facts record a non-KVM `accelerator`, and, when no
platform of the run is known to be the baseline, the first platform in the run's order is taken as
the baseline (the old default order put the native baseline first).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from runtime.errors import SpecError
from runtime.platform import KIND_CONTAINER, PlatformInfo

# Colours for platforms of old runs, by position (matplotlib's tab10, minus red and green's neighbours).
FALLBACK_COLOURS = ("#7f7f7f", "#1f77b4", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#bcbd22", "#17becf")


def _facts(env: Mapping[str, object]) -> Mapping[str, Mapping[str, object]]:
    platforms = env.get("platforms") or {}
    return platforms if isinstance(platforms, Mapping) else {}


def _fallback(name: str, facts: Mapping[str, object], position: int) -> PlatformInfo:
    accelerator = facts.get("accelerator")
    emulated = accelerator is not None and str(accelerator).lower() != "kvm"
    return PlatformInfo(name=name, kind=KIND_CONTAINER, display_name=name,
                        colour=FALLBACK_COLOURS[position % len(FALLBACK_COLOURS)],
                        mechanism=str(accelerator).upper() + " (emulated)" if emulated else "",
                        emulated=emulated, baseline=False)


def platform_infos(env: Mapping[str, object], names: Iterable[str] = ()) -> dict[str, PlatformInfo]:
    """PlatformInfo per platform, in the run's order: `names` first (e.g. the run's --platform list,
    then the platforms that have samples), then any other platform env.json mentions."""
    facts = _facts(env)
    order = list(dict.fromkeys([*names, *facts]))
    infos: dict[str, PlatformInfo] = {}
    described = False
    for position, name in enumerate(order):
        entry = facts.get(name) or {}
        recorded = entry.get("info") if isinstance(entry, Mapping) else None
        if isinstance(recorded, Mapping):
            try:
                infos[name] = PlatformInfo.from_dict(recorded)
                described = True
                continue
            except SpecError:
                pass
        infos[name] = _fallback(name, entry if isinstance(entry, Mapping) else {}, position)
    if order and not described and not any(i.baseline for i in infos.values()):
        first = infos[order[0]]
        infos[order[0]] = PlatformInfo(**{**first.to_dict(), "baseline": True})  # type: ignore[arg-type]
    return infos


def baseline(infos: Mapping[str, PlatformInfo]) -> str | None:
    """The platform every ratio is taken against, or None when the run has none."""
    return next((name for name, info in infos.items() if info.baseline), None)


def ordered(infos: Mapping[str, PlatformInfo], present: Iterable[str]) -> list[str]:
    """The platforms in `present`, baseline first, then in the run's order, unknown ones last."""
    present = set(present)
    known = [name for name in infos if name in present]
    known.sort(key=lambda name: not infos[name].baseline)  # stable: keeps the run's order otherwise
    return known + sorted(present - set(known))


def colour(infos: Mapping[str, PlatformInfo], name: str) -> str:
    info = infos.get(name)
    return info.colour if info else FALLBACK_COLOURS[0]


def emulated(infos: Mapping[str, PlatformInfo]) -> list[PlatformInfo]:
    """Platforms whose figures are not hardware-virtualisation figures (e.g. a VM under TCG)."""
    return [info for info in infos.values() if info.emulated]


def contrasting_pairs(infos: Mapping[str, PlatformInfo]) -> list[tuple[str, str]]:
    """Pairs of non-baseline platforms of different kinds (e.g. a container and a VM), in run order."""
    others = [info for info in infos.values() if not info.baseline]
    return [(a.name, b.name) for i, a in enumerate(others) for b in others[i + 1:] if a.kind != b.kind]


def platform_facts(env: Mapping[str, object], name: str) -> Mapping[str, object]:
    """The free-form facts a platform recorded about itself in env.json (empty if none)."""
    entry = _facts(env).get(name) or {}
    return entry if isinstance(entry, Mapping) else {}


def confinement_warnings(env: Mapping[str, object]) -> dict[str, str]:
    """Platforms that ran with weaker confinement than their production default, and why (one line)."""
    warnings = {}
    for name, entry in _facts(env).items():
        if isinstance(entry, Mapping) and entry.get("confinement_warning"):
            warnings[name] = str(entry["confinement_warning"])
    return warnings
