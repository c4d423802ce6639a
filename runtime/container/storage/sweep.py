"""Storage leftovers of dead runs: every driver's roots of instances that are gone, and a driver's own
objects nobody uses any more (the btrfs driver's loop-mounted pool). Called by runtime.sweep."""

from __future__ import annotations

from collections.abc import Callable

from runtime import state
from runtime.container.storage import DRIVERS, get_driver
from runtime.naming import STATE_ROOT


def instance_dead(instance_id: str) -> bool:
    """No live or kept instance owns this id (its state dir is gone, or its owner is dead and it was not
    kept on purpose)."""
    directory = STATE_ROOT / instance_id
    if not directory.exists():
        return True
    return not (state.is_live(directory) or state.is_kept(directory))


def sweep_storage(everything: bool = False, dead: Callable[[str], bool] | None = None) -> list[str]:
    """A line per removed object; `everything` removes live instances' roots too."""
    removed: list[str] = []
    for name in DRIVERS:
        try:
            driver = get_driver(name)
        except ImportError:
            continue
        removed += driver.sweep((lambda _id: True) if everything else (dead or instance_dead), everything)
    return removed
