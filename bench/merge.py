"""`python -m bench merge RUN... --into NAME`: several runs (of one host or of a fleet) as one dataset.

The merged directory (format in results/README.md, schema 2) keeps every source run's samples and
cell outcomes unchanged, tagged by their run_id, and records each run's host, env.json and run.json
under run.json["runs"], so the report shows a host column and never pools hosts. Merged datasets can
be merged again (their runs are taken over). A run given twice is one clear error; what a source
could not provide (corrupt lines, missing files) is carried into the merged run.json's "problems"
and so into its report.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict
from pathlib import Path

from bench.dataset import Dataset, load
from bench.results import SCHEMA_VERSION, write_bytes_atomic, write_json_atomic
from runtime.errors import IsolabError


def _host_label(meta_host: str, run_id: str) -> str:
    """A run without a recorded host name is its own host, so that it is never pooled with another."""
    return meta_host or f"unknown host (run {run_id})"


def merge(sources: list[Path], into: Path) -> Dataset:
    if len(sources) < 2:
        raise IsolabError("merge needs at least two runs")
    if into.exists():
        raise IsolabError(f"{into} exists already: choose a new name for the merged dataset")
    loaded = [load(path) for path in sources]
    runs: dict[str, dict[str, object]] = {}
    problems: list[str] = []
    for path, data in zip(sources, loaded, strict=True):
        if not data.runs:
            raise IsolabError(f"{path}: nothing to merge ({'; '.join(data.problems) or 'no run'})")
        for run_id, meta in data.runs.items():
            if run_id in runs:
                raise IsolabError(f"run {run_id} is given twice (from {path}): each run can be merged once")
            runs[run_id] = {"host": _host_label(meta.host, run_id), "env": meta.env, "run": meta.info,
                            "source": str(path)}
        problems += [f"{path.name}: {p}" for p in data.problems]
    configs = [meta["run"].get("config") or {} for meta in runs.values()]  # type: ignore[union-attr]
    union = {key: list(dict.fromkeys(v for c in configs for v in (c.get(key) or []))) for key in
             ("platforms", "scenarios")}
    profiles = sorted({str(c.get("profile")) for c in configs if c.get("profile")})
    info = {"schema": SCHEMA_VERSION, "merged": True, "run_id": into.name, "status": "merged",
            "merged_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "sources": [str(p) for p in sources],
            "hosts": sorted({str(m["host"]) for m in runs.values()}), "runs": runs, "problems": problems,
            "config": {**union, "profile": "+".join(profiles) or None,
                       "reps": sorted({c.get("reps") for c in configs if c.get("reps")})}}
    into.mkdir(parents=True)
    (into / "raw").mkdir()
    samples = [s for data in loaded for s in data.samples]
    _write_lines(into / "samples.jsonl", [s.to_json() for s in samples])
    _write_lines(into / "cells.jsonl", [json.dumps({"run_id": o.run_id, **asdict(o.outcome)}, sort_keys=True)
                                        for data in loaded for o in data.outcomes])
    write_json_atomic(into / "run.json", info)  # last: a directory with run.json is complete
    return load(into)


def _write_lines(path: Path, lines: list[str]) -> None:
    """Whole or not at all, fsynced with its directory (bench.results.write_bytes_atomic)."""
    write_bytes_atomic(path, "".join(line + "\n" for line in lines).encode("utf-8"))
