"""The storage section of the report: one table per storage operation, storage drivers × platforms.

Operations are the storage scenario's metrics (instance root create, copy-up write, commit, disk per
instance) and the disk scenario's fio jobs on the copy-on-write root and on the volume, each variant of a
metric (its METRICS variant keys) a table of its own. A run's platform names may carry a variant in
brackets (`name[variant]`, runtime.platform.split_variant): the column is the name before it, the row is
the storage driver the platform recorded in env.json (`storage_driver`, with `storage` as its mechanism),
else the variant, else the platform's own storage. Cell: the median over repetitions (one value per
repetition: instances measured within one repetition are reduced to their median first) with the
interval of the median at its real level and n (bench.stats.summarize). Drivers a platform knows but
cannot use on this host (env.json `storage_drivers_unavailable`: {driver: reason}) and platforms of the
run that were unavailable are listed with their reasons. Never names a platform or a driver itself.
"""

from __future__ import annotations

import html
import math
import statistics
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from bench import stats
from bench.results import SampleRecord
from runtime.platform import PlatformInfo, split_variant

#: (scenario, metric, filter on metadata, heading). A metric's variants (its METRICS keys) split its tables.
OPERATIONS: tuple[tuple[str, str, Mapping[str, str], str], ...] = (
    ("storage", "storage_create_s", {}, "time to a ready instance (its root made from the image)"),
    ("storage", "storage_copy_up_write_s", {}, "first write to a large file of the image (copy-up), then a rewrite"),
    ("storage", "storage_commit_s", {}, "commit of an instance's changes as a new image"),
    ("storage", "storage_disk_mib", {}, "disk the instance adds on the host"),
    ("disk", "fio_bandwidth", {"storage": "cow", "bs": "1M"}, "fio sequential 1 MiB, copy-on-write root"),
    ("disk", "fio_iops", {"storage": "cow", "bs": "4k"}, "fio random 4 KiB, copy-on-write root"),
    ("disk", "fio_iops", {"storage": "volume", "bs": "4k"}, "fio random 4 KiB, data volume"),
)


@dataclass(frozen=True)
class Cell:
    summary: stats.Summary
    unit: str

    @property
    def text(self) -> str:
        s = self.summary
        iv = s.interval
        span = f" [{_num(iv.low)}, {_num(iv.high)}] {iv.label}" if iv.defined else " (no interval)"
        return f"{_num(s.median)} {self.unit}{span}, n = {s.n}"


def _num(value: float) -> str:
    if not math.isfinite(value):
        return "–"
    if value == 0:
        return "0"
    magnitude = abs(value)
    if magnitude >= 100:
        return f"{value:,.0f}"
    if magnitude >= 1:
        return f"{value:.2f}"
    return f"{value:.3g}"


def _variant_keys(scenario: str, metric: str) -> tuple[str, ...]:
    from scenarios import base

    try:
        module = base.load(scenario)
    except Exception:  # an old run's scenario that no longer exists: no variant split
        return ()
    declared = getattr(module, "METRICS", {}).get(metric)
    return tuple(declared[1]) if declared else ()


def _facts(env_platforms: Mapping[str, object], name: str) -> Mapping[str, object]:
    entry = env_platforms.get(name)
    return entry if isinstance(entry, Mapping) else {}


def storage_label(name: str, env_platforms: Mapping[str, object]) -> str:
    """The storage a run's platform used: its recorded driver, else its variant, else its own storage."""
    facts = _facts(env_platforms, name)
    driver = facts.get("storage_driver")
    if driver:
        return str(driver)
    variant = split_variant(name)[1]
    return variant if variant else "(its own)"


def unavailable(env_platforms: Mapping[str, object]) -> dict[str, str]:
    """Storage driver (or unavailable platform variant) -> why it could not run here."""
    found: dict[str, str] = {}
    for name, entry in env_platforms.items():
        if not isinstance(entry, Mapping):
            continue
        drivers = entry.get("storage_drivers_unavailable")
        if isinstance(drivers, Mapping):
            for driver, reason in drivers.items():
                found.setdefault(str(driver), str(reason))
        variant = split_variant(str(name))[1]
        if variant and entry.get("available") is False:
            found.setdefault(variant, str(entry.get("reason", "unavailable")))
    return found


def _per_repetition(samples: Sequence[SampleRecord]) -> list[float]:
    by_rep: dict[int, list[float]] = defaultdict(list)
    for s in samples:
        by_rep[s.repetition].append(s.value)
    return [float(statistics.median(v)) for _, v in sorted(by_rep.items())]


def tables(samples: Sequence[SampleRecord], env_platforms: Mapping[str, object]) -> list[dict[str, object]]:
    """One table per operation × variant: {heading, variant, unit, rows: [driver], columns: [platform],
    cells: {(driver, platform): Cell}} (pure, for the HTML and for tests)."""
    out: list[dict[str, object]] = []
    for scenario, metric, wanted, heading in OPERATIONS:
        chosen = [s for s in samples if s.scenario == scenario and s.metric == metric
                  and all(str(s.metadata.get(k)).lower() == v.lower() for k, v in wanted.items())]
        if not chosen:
            continue
        keys = [k for k in _variant_keys(scenario, metric) if k not in wanted]
        groups: dict[str, list[SampleRecord]] = defaultdict(list)
        for s in chosen:
            groups[", ".join(f"{k} {s.metadata[k]}" for k in keys if k in s.metadata)].append(s)
        for variant, group in groups.items():
            rows = list(dict.fromkeys(storage_label(s.platform, env_platforms) for s in group))
            columns = list(dict.fromkeys(split_variant(s.platform)[0] for s in group))
            by_cell: dict[tuple[str, str], list[SampleRecord]] = defaultdict(list)
            for s in group:
                by_cell[(storage_label(s.platform, env_platforms), split_variant(s.platform)[0])].append(s)
            cells = {key: Cell(stats.summarize(_per_repetition(values)), values[0].unit)
                     for key, values in by_cell.items()}
            out.append({"heading": heading, "metric": metric, "variant": variant, "unit": group[0].unit,
                        "rows": rows, "columns": columns, "cells": cells})
    return out


def _column_label(base: str, samples: Sequence[SampleRecord], infos: Mapping[str, PlatformInfo]) -> str:
    """A column's label: the platform's kind of display name without its storage suffix (the row says it)."""
    for s in samples:
        if split_variant(s.platform)[0] == base and s.platform == base and base in infos:
            return infos[base].label
    return base


def section(samples: Sequence[SampleRecord], env_platforms: Mapping[str, object],
            infos: Mapping[str, PlatformInfo]) -> str:
    """The storage section as an HTML fragment ('' when the run measured no storage operation)."""
    found = tables(samples, env_platforms)
    missing = unavailable(env_platforms)
    if not found:
        return ""
    mechanisms = {}
    for s in samples:
        label = storage_label(s.platform, env_platforms)
        mechanism = _facts(env_platforms, s.platform).get("storage")
        if mechanism and label not in mechanisms:
            mechanisms[label] = str(mechanism)
    parts = ["<h2 id=\"section-storage\">storage: drivers × platforms</h2>",
             "<p class=\"meta\">One table per operation: rows are the storage each platform ran on (its storage "
             "driver, as recorded in env.json), columns the platforms. Cell: median over repetitions with the "
             "interval of the median at its real level (order statistics: [min, max] of 3 repetitions is a 75 % "
             "interval) and n repetitions; – : not measured there (the scenario's raw log says why).</p>"]
    if mechanisms:
        parts.append("<p class=\"meta\">" + "; ".join(f"<b>{html.escape(k)}</b>: {html.escape(v)}"
                                                         for k, v in mechanisms.items()) + "</p>")
    if missing:
        items = "".join(f"<li><b>{html.escape(d)}</b>: {html.escape(r)}</li>" for d, r in sorted(missing.items()))
        parts.append(f"<p>Unavailable on this host:</p><ul class=\"storage-unavailable\">{items}</ul>")
    for table in found:
        columns: list[str] = table["columns"]  # type: ignore[assignment]
        rows: list[str] = table["rows"]  # type: ignore[assignment]
        cells: dict[tuple[str, str], Cell] = table["cells"]  # type: ignore[assignment]
        head = "".join(f"<th>{html.escape(_column_label(c, samples, infos))}</th>" for c in columns)
        body = []
        for row in rows:
            tds = "".join(f"<td>{html.escape(cells[(row, c)].text)}</td>" if (row, c) in cells else "<td>–</td>"
                          for c in columns)
            body.append(f"<tr><th>{html.escape(row)}</th>{tds}</tr>")
        variant = f" — {html.escape(str(table['variant']))}" if table["variant"] else ""
        parts.append(f"<h3>{html.escape(str(table['heading']))}{variant} ({html.escape(str(table['metric']))}, "
                     f"{html.escape(str(table['unit']))})</h3>"
                     f"<div class=\"scroll\"><table class=\"storage\"><tr><th>storage</th>{head}</tr>"
                     f"{''.join(body)}</table></div>")
    return "".join(parts)
