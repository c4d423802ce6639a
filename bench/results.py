"""Results storage: one directory per run, written so that an interruption loses nothing measured.

Layout of `results/<run-id>/`:
  run.json        the run's configuration and command line (rewritten atomically as it progresses)
  env.json        the environment fingerprint (atomic write)
  samples.jsonl   one sample per line (tidy: platform, scenario, metric, variant, value, unit, rep, ...)
  cells.jsonl     one line per platform × scenario outcome: ok, failed or skipped, with the reason
  raw/<platform>/<scenario>/rep<N>/<file>   each tool's raw output

Appends are single `write` calls followed by fsync, so a crash leaves whole lines only; readers
skip a torn last line rather than fail. Nothing here runs a workload.
"""

from __future__ import annotations

import json
import os
import secrets
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

from runtime.errors import IsolabError

SCHEMA_VERSION = 2  # of the whole directory (run.json "schema") and of each sample line; see results/README.md
SAMPLE_FIELDS = ("schema", "run_id", "platform", "scenario", "metric", "variant", "value", "unit",
                 "repetition", "metadata", "timestamp")


def results_root() -> Path:
    return Path(os.environ.get("ISOLAB_RESULTS_DIR", "results"))


def new_run_id() -> str:
    return time.strftime("%Y%m%d-%H%M%S", time.gmtime()) + "-" + secrets.token_hex(2)


#: Metadata keys that say which unit a sample was measured on, not what was measured: not in the variant.
UNIT_KEYS = frozenset({"instance"})


def variant_of(metadata: dict[str, object]) -> str:
    """A stable label of what distinguishes samples of one metric, e.g. 'threads=1'."""
    return ",".join(f"{k}={metadata[k]}" for k in sorted(metadata) if k not in UNIT_KEYS) or "-"


@dataclass(frozen=True)
class SampleRecord:
    run_id: str
    platform: str
    scenario: str
    metric: str
    value: float
    unit: str
    repetition: int
    metadata: dict[str, object] = field(default_factory=dict)
    variant: str = ""
    timestamp: float = field(default_factory=time.time)
    schema: int = SCHEMA_VERSION

    def to_json(self) -> str:
        data = asdict(self)
        data["variant"] = self.variant or variant_of(self.metadata)
        return json.dumps(data, sort_keys=True, default=str)

    @classmethod
    def from_dict(cls, data: dict[str, object]) -> SampleRecord:
        missing = [f for f in SAMPLE_FIELDS if f not in data]
        if missing:
            raise ValueError(f"sample lacks field(s) {', '.join(missing)}")
        if not isinstance(data["value"], int | float):
            raise ValueError(f"sample value {data['value']!r} is not a number")
        return cls(**{k: data[k] for k in SAMPLE_FIELDS})  # type: ignore[arg-type]


@dataclass(frozen=True)
class CellOutcome:
    platform: str
    scenario: str
    status: str  # "ok" | "failed" | "skipped"
    reason: str = ""
    repetitions: int = 0
    wall_s: float = 0.0
    timestamp: float = field(default_factory=time.time)


def write_json_atomic(path: Path, data: object) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(tmp, "w", encoding="utf-8") as out:
        json.dump(data, out, indent=2, sort_keys=True, default=str)
        out.write("\n")
        out.flush()
        os.fsync(out.fileno())
    os.replace(tmp, path)


def _append_line(path: Path, line: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, (line + "\n").encode())
        os.fsync(fd)
    finally:
        os.close(fd)


def read_jsonl(path: Path) -> Iterator[dict[str, object]]:
    """Lines of a JSONL file; a torn (unterminated, unparsable) last line is skipped."""
    if not path.exists():
        return
    lines = path.read_text(encoding="utf-8").split("\n")
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            yield json.loads(line)
        except json.JSONDecodeError as exc:
            if number == len(lines):  # torn final line of an interrupted write
                return
            raise IsolabError(f"{path}:{number}: not a JSON line ({exc.msg})") from exc


class RunStore:
    """Reading and writing one run's directory."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.run_id = path.name

    @classmethod
    def create(cls, root: Path | None = None, run_id: str | None = None) -> RunStore:
        path = (root or results_root()) / (run_id or new_run_id())
        path.mkdir(parents=True, exist_ok=False)
        (path / "raw").mkdir()
        return cls(path)

    @classmethod
    def open(cls, run_id_or_path: str, root: Path | None = None) -> RunStore:
        candidate = Path(run_id_or_path)
        path = candidate if candidate.is_dir() else (root or results_root()) / run_id_or_path
        if not (path / "run.json").is_file():
            raise IsolabError(f"no run {run_id_or_path!r} in {root or results_root()} (no run.json there)")
        return cls(path)

    @classmethod
    def latest(cls, root: Path | None = None) -> RunStore:
        base = root or results_root()
        runs = sorted(p for p in base.glob("*/run.json")) if base.is_dir() else []
        if not runs:
            raise IsolabError(f"no runs in {base}")
        return cls(runs[-1].parent)

    # writing
    def write_run_info(self, info: dict[str, object]) -> None:
        write_json_atomic(self.path / "run.json", info)

    def write_env(self, env: dict[str, object]) -> None:
        write_json_atomic(self.path / "env.json", env)

    def add_sample(self, record: SampleRecord) -> None:
        _append_line(self.path / "samples.jsonl", record.to_json())

    def add_outcome(self, outcome: CellOutcome) -> None:
        _append_line(self.path / "cells.jsonl", json.dumps(asdict(outcome), sort_keys=True))

    def raw_writer(self, platform: str, scenario: str, repetition: int):
        directory = self.path / "raw" / platform / scenario / f"rep{repetition}"

        def write(name: str, text: str) -> None:
            directory.mkdir(parents=True, exist_ok=True)
            (directory / os.path.basename(name)).write_text(text, encoding="utf-8", errors="replace")

        return write

    # reading
    def run_info(self) -> dict[str, object]:
        return json.loads((self.path / "run.json").read_text())

    def env(self) -> dict[str, object]:
        path = self.path / "env.json"
        return json.loads(path.read_text()) if path.exists() else {}

    def samples(self) -> list[SampleRecord]:
        return [SampleRecord.from_dict(d) for d in read_jsonl(self.path / "samples.jsonl")]

    def outcomes(self) -> list[CellOutcome]:
        return [CellOutcome(**d) for d in read_jsonl(self.path / "cells.jsonl")]  # type: ignore[arg-type]

    def finished_cells(self) -> set[tuple[str, str]]:
        """Cells with a final outcome (ok or skipped); failed cells are retried on resume."""
        return {(o.platform, o.scenario) for o in self.outcomes() if o.status in ("ok", "skipped")}
