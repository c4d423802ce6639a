"""Reading stored results for the report, `compare` and `merge`: a run directory or a merged dataset.

Reading never raises on bad content. A corrupt or torn line, a sample that fails the schema or holds
a non-finite value, a missing or unreadable file, an area (scenario) the run configured but has no
samples and no outcome for, and a schema version newer than this code are each turned into one
sentence in `Dataset.problems`; everything else loads. The report prints those sentences, so a
damaged directory gives a report that says what is missing instead of a traceback.

Schema versions (results/README.md has the full format):
  1  run.json without "schema"; env.json without platforms' "info"; samples "schema": 1
  2  run.json "schema": 2; env.json["platforms"][name]["info"] (runtime.platform.PlatformInfo);
     per-instance samples carry metadata "instance"; a merged dataset's run.json has "merged": true
     and "runs": {run_id: {"host", "env", "run"}}, and its cells.jsonl lines carry "run_id"
Version 1 directories load unchanged (the report makes up platform descriptions for them).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from dataclasses import dataclass, field, fields
from pathlib import Path

from bench.results import SCHEMA_VERSION, CellOutcome, SampleRecord, results_root
from runtime.errors import IsolabError

SUPPORTED_SCHEMAS = (1, 2)
assert SCHEMA_VERSION in SUPPORTED_SCHEMAS


@dataclass
class RunMeta:
    """One measured run inside a dataset: where it ran and how."""

    run_id: str
    host: str
    env: dict[str, object]
    info: dict[str, object]  # run.json


@dataclass
class Outcome:
    run_id: str
    outcome: CellOutcome


@dataclass
class Dataset:
    path: Path
    name: str
    runs: dict[str, RunMeta] = field(default_factory=dict)
    samples: list[SampleRecord] = field(default_factory=list)
    outcomes: list[Outcome] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    merged: bool = False

    @property
    def hosts(self) -> dict[str, str]:
        """run_id -> host name."""
        return {run_id: meta.host for run_id, meta in self.runs.items()}

    @property
    def info(self) -> dict[str, object]:
        """run.json of the dataset (a merged dataset's own)."""
        return self._info

    @property
    def env(self) -> dict[str, object]:
        """env.json of the first run (the one a single-run report describes)."""
        first = next(iter(self.runs.values()), None)
        return first.env if first else {}

    @property
    def platforms_env(self) -> dict[str, object]:
        """{"platforms": ...} of every run (first run first), the shape reporting.platforms reads."""
        merged: dict[str, object] = {}
        for meta in self.runs.values():
            found = meta.env.get("platforms")
            if isinstance(found, dict):
                for name, facts in found.items():
                    merged.setdefault(name, facts)
        return {"platforms": merged}

    _info: dict[str, object] = field(default_factory=dict)


def _read_json(path: Path, problems: list[str], what: str) -> dict[str, object] | None:
    if not path.is_file():
        problems.append(f"{path.name} is missing: {what} unknown")
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        problems.append(f"{path.name} is unreadable ({exc}): {what} unknown")
        return None
    if not isinstance(data, dict):
        problems.append(f"{path.name} is not a JSON object: {what} unknown")
        return None
    return data


def _lines(path: Path, problems: list[str]) -> Iterator[tuple[int, dict[str, object]]]:
    """(line number, object) of a JSONL file; bad lines become problems and are skipped."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        problems.append(f"{path.name} is unreadable ({exc})")
        return
    lines = text.split("\n")
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            data = json.loads(line)
        except json.JSONDecodeError as exc:
            where = f"its last line ({number}) is torn (an interrupted write)" if number == len(lines) else (
                f"line {number} is not JSON ({exc.msg})")
            problems.append(f"{path.name}: {where}; skipped")
            continue
        if not isinstance(data, dict):
            problems.append(f"{path.name}: line {number} is not a JSON object; skipped")
            continue
        yield number, data


def _schema_of(info: dict[str, object] | None) -> int | None:
    raw = (info or {}).get("schema", 1)
    return raw if isinstance(raw, int) else None


def _host_of(env: dict[str, object]) -> str:
    host = env.get("host")
    return str(host.get("hostname") or "") if isinstance(host, dict) else ""


def _samples(path: Path, problems: list[str], run_ids: set[str] | None = None) -> list[SampleRecord]:
    if not path.is_file():
        problems.append("samples.jsonl is missing: no measurements in this directory")
        return []
    samples: list[SampleRecord] = []
    rejected: dict[str, list[int]] = {}
    for number, data in _lines(path, problems):
        schema = data.get("schema")
        if schema not in SUPPORTED_SCHEMAS:
            rejected.setdefault(f"unknown sample schema {schema!r}", []).append(number)
            continue
        try:
            record = SampleRecord.from_dict(data)
        except (ValueError, TypeError) as exc:
            rejected.setdefault(str(exc), []).append(number)
            continue
        if isinstance(record.value, bool) or not math.isfinite(record.value):
            rejected.setdefault(f"value {record.value!r} is not a finite number", []).append(number)
            continue
        if run_ids is not None and record.run_id not in run_ids:
            rejected.setdefault(f"run {record.run_id!r} is not listed in run.json", []).append(number)
            continue
        samples.append(record)
    for why, numbers in rejected.items():
        shown = ", ".join(str(n) for n in numbers[:5]) + (" ..." if len(numbers) > 5 else "")
        problems.append(f"samples.jsonl: {len(numbers)} line(s) skipped ({why}): line {shown}")
    return samples


def _outcomes(path: Path, problems: list[str], default_run: str) -> list[Outcome]:
    if not path.is_file():
        problems.append("cells.jsonl is missing: the outcome (ok, failed, skipped) of each cell is unknown")
        return []
    found = []
    for number, data in _lines(path, problems):
        run_id = str(data.pop("run_id", default_run))
        known = {f.name for f in fields(CellOutcome)}  # keys a later version added are ignored
        try:
            found.append(Outcome(run_id, CellOutcome(**{k: v for k, v in data.items() if k in known})))  # type: ignore[arg-type]
        except TypeError as exc:
            problems.append(f"cells.jsonl: line {number} is not a cell outcome ({exc}); skipped")
    return found


def _drop_unfinished_attempts(dataset: Dataset) -> None:
    """Samples count only if the cell's latest outcome names their attempt (bench.results): those of an
    attempt killed before its outcome, or redone by a resume, are left out and said so."""
    only = next(iter(dataset.runs), "")
    final = {(o.run_id, o.outcome.platform, o.outcome.scenario): o.outcome.attempt for o in dataset.outcomes}
    kept = [s for s in dataset.samples if not s.attempt
            or final.get((s.run_id if dataset.merged else only, s.platform, s.scenario)) == s.attempt]
    if len(kept) < len(dataset.samples):
        dataset.problems.append(f"samples.jsonl: {len(dataset.samples) - len(kept)} sample(s) of cell attempts that "
                                f"did not finish (killed, or redone by a resume) are not counted")
    dataset.samples = kept


def _missing_areas(dataset: Dataset) -> None:
    """Cells a run configured with neither samples nor an outcome; areas with no samples at all."""
    only = next(iter(dataset.runs), "")
    measured = {(s.run_id if dataset.merged else only, s.platform, s.scenario) for s in dataset.samples}
    decided = {(o.run_id, o.outcome.platform, o.outcome.scenario) for o in dataset.outcomes}
    for run_id, meta in dataset.runs.items():
        config = meta.info.get("config") if isinstance(meta.info.get("config"), dict) else {}
        platforms = [str(p) for p in (config or {}).get("platforms", [])]  # type: ignore[union-attr]
        scenarios = [str(s) for s in (config or {}).get("scenarios", [])]  # type: ignore[union-attr]
        where = f" in run {run_id}" if dataset.merged else ""
        for scenario in scenarios:
            cells = [(run_id, p, scenario) for p in platforms]
            if not any(c in measured for c in cells):
                failed = [c[1] for c in cells if c in decided]
                why = (f"every cell failed or was skipped ({', '.join(failed)}; reasons above)" if
                       len(failed) == len(cells) else "no samples and no outcome: the run stopped before it "
                       "or its lines were lost")
                dataset.problems.append(f"area {scenario}{where}: no samples ({why})")
                continue
            for cell in cells:
                if cell not in measured and cell not in decided:
                    dataset.problems.append(f"{cell[1]} × {scenario}{where}: no samples and no outcome recorded")


def find(run_id_or_path: str, root: Path | None = None) -> Path:
    """The directory of a run or dataset given by path or by id under the results root."""
    candidate = Path(run_id_or_path)
    if candidate.is_dir():
        return candidate
    under = (root or results_root()) / run_id_or_path
    if under.is_dir():
        return under
    raise IsolabError(f"no run or dataset {run_id_or_path!r} (not a directory, nor one in {root or results_root()})")


def load(path: Path | str) -> Dataset:
    """Everything readable in a results directory (a run or a merged dataset), with what is not."""
    path = Path(path)
    dataset = Dataset(path=path, name=path.name)
    if not path.is_dir():
        dataset.problems.append(f"{path} is not a directory")
        return dataset
    info = _read_json(path / "run.json", dataset.problems, "the run's configuration") or {}
    dataset._info = info
    schema = _schema_of(info)
    if schema not in SUPPORTED_SCHEMAS:
        dataset.problems.append(
            f"results schema {info.get('schema')!r} is not one this isolab reads "
            f"({', '.join(map(str, SUPPORTED_SCHEMAS))}): nothing in {path.name} was read; a newer isolab wrote it")
        return dataset
    if info.get("merged"):
        dataset.merged = True
        runs = info.get("runs") if isinstance(info.get("runs"), dict) else {}
        for run_id, meta in (runs or {}).items():  # type: ignore[union-attr]
            meta = meta if isinstance(meta, dict) else {}
            env = meta.get("env") if isinstance(meta.get("env"), dict) else {}
            dataset.runs[str(run_id)] = RunMeta(str(run_id), str(meta.get("host") or _host_of(env)), env,
                                                meta.get("run") if isinstance(meta.get("run"), dict) else {})
        if not dataset.runs:
            dataset.problems.append("run.json of this merged dataset lists no runs")
        dataset.problems += [str(p) for p in info.get("problems") or []]  # type: ignore[union-attr]
    else:
        env = _read_json(path / "env.json", dataset.problems, "the host, its tools and the platforms' mechanisms")
        run_id = str(info.get("run_id") or path.name)
        dataset.runs[run_id] = RunMeta(run_id, _host_of(env or {}), env or {}, info)
    run_ids = set(dataset.runs) if dataset.merged else None
    dataset.samples = _samples(path / "samples.jsonl", dataset.problems, run_ids)
    dataset.outcomes = _outcomes(path / "cells.jsonl", dataset.problems, next(iter(dataset.runs), path.name))
    _drop_unfinished_attempts(dataset)
    _missing_areas(dataset)
    return dataset
