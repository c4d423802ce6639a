"""Results storage: one directory per run, written so that an interruption loses nothing measured.

Layout of `results/<run-id>/`:
  run.json        the run's configuration and command line (rewritten atomically as it progresses)
  env.json        the environment fingerprint (atomic write)
  samples.jsonl   one sample per line (tidy: platform, scenario, metric, variant, value, unit, rep, attempt...)
  cells.jsonl     one line per platform × scenario outcome: ok, failed or skipped, with the reason and attempt
  blocks.jsonl    interleaved runs: one line per finished block (scenario, attempt, block, platform order,
                  how idle instances were quieted and the host CPU they used meanwhile)
  raw/<platform>/<scenario>/rep<N>/<file>   each tool's raw output (of the cell's latest attempt)

Attempts: every time the harness starts a cell it draws a new attempt id; the samples it stores and
the outcome that ends the cell carry it. Only samples of the attempt named by a cell's latest outcome
are read back, so a killed attempt (samples, no outcome) or one that a resume redid never counts;
`RunStore.drop_unfinished()` also removes them from the file (atomically) when a run resumes.
An interleaved scenario runs as one attempt for all its platforms, block by block; a resume continues
that attempt after its last finished block (blocks.jsonl): the finished blocks' samples are kept, those
of the block that was cut short are dropped.

Durability: a repetition's samples are appended in one `write` call and fsynced; whole files are
written to a temporary name, fsynced, renamed, and their directory fsynced; `sync()` fsyncs every
file and directory of the run before the run is marked complete. A torn last line (power loss during
an append) is skipped with a warning naming the file and line, never fatal. Nothing here runs a workload.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import time
import warnings
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

from runtime.errors import IsolabError

SCHEMA_VERSION = 2  # of the whole directory (run.json "schema") and of each sample line; see results/README.md
SAMPLE_FIELDS = ("schema", "run_id", "platform", "scenario", "metric", "variant", "value", "unit",
                 "repetition", "metadata", "timestamp")
OPTIONAL_SAMPLE_FIELDS = ("attempt",)  # absent in schema 1 files


class TornLineWarning(UserWarning):
    """A results file ends in a partial line (an append cut short by a crash or power loss)."""


def results_root() -> Path:
    return Path(os.environ.get("ISOLAB_RESULTS_DIR", "results"))


def new_run_id() -> str:
    return time.strftime("%Y%m%d-%H%M%S", time.gmtime()) + "-" + secrets.token_hex(2)


def new_attempt_id() -> str:
    return secrets.token_hex(6)


#: Metadata keys that say which unit a sample was measured on (the instance, the interleaved block and the
#: position in it), not what was measured: not in the variant.
UNIT_KEYS = frozenset({"instance", "block", "position"})


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
    attempt: str = ""  # the cell attempt that measured it ("" in schema 1 files: always read)

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
        fields = (*SAMPLE_FIELDS, *(f for f in OPTIONAL_SAMPLE_FIELDS if f in data))
        return cls(**{k: data[k] for k in fields})  # type: ignore[arg-type]


@dataclass(frozen=True)
class CellOutcome:
    platform: str
    scenario: str
    status: str  # "ok" | "failed" | "skipped"
    reason: str = ""
    repetitions: int = 0
    wall_s: float = 0.0
    timestamp: float = field(default_factory=time.time)
    attempt: str = ""


def fsync_dir(path: Path) -> None:
    """Make a rename or creation inside directory `path` durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_bytes_atomic(path: Path, data: bytes) -> None:
    """Write `path` whole or not at all: temporary file, fsync, rename, fsync of the directory."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def write_json_atomic(path: Path, data: object) -> None:
    write_bytes_atomic(path, (json.dumps(data, indent=2, sort_keys=True, default=str) + "\n").encode())


def _append_lines(path: Path, lines: Iterable[str]) -> None:
    """One `write` of whole lines, then fsync (and the directory's, when the file is new)."""
    data = "".join(line + "\n" for line in lines).encode()
    if not data:
        return
    created = not path.exists()
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        written = os.write(fd, data)
        if written != len(data):  # a regular file takes it whole unless the disk is full
            raise IsolabError(f"{path}: only {written} of {len(data)} bytes appended (disk full?)")
        os.fsync(fd)
    finally:
        os.close(fd)
    if created:
        fsync_dir(path.parent)


def read_jsonl(path: Path) -> Iterator[dict[str, object]]:
    """Lines of a JSONL file. A torn last line (no newline, not JSON) is skipped with a TornLineWarning
    naming the file and line; an unreadable line before the last is an error."""
    if not path.exists():
        return
    lines = path.read_text(encoding="utf-8", errors="replace").split("\n")
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            yield json.loads(line)
        except json.JSONDecodeError as exc:
            if number == len(lines):  # no newline after it: an append cut short
                warnings.warn(TornLineWarning(
                    f"{path}:{number}: skipped a torn last line ({len(line)} bytes, {exc.msg}): "
                    f"an append was cut short (crash or power loss); that record is lost"), stacklevel=2)
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
        self.add_samples([record])

    def add_samples(self, records: Iterable[SampleRecord]) -> None:
        """Store a repetition's samples together: one append, so a crash keeps all or none of them."""
        _append_lines(self.path / "samples.jsonl", (record.to_json() for record in records))

    def add_block(self, record: dict[str, object]) -> None:
        """An interleaved block finished: every platform still running measured one repetition."""
        _append_lines(self.path / "blocks.jsonl", [json.dumps(record, sort_keys=True, default=str)])

    def blocks(self) -> list[dict[str, object]]:
        return list(read_jsonl(self.path / "blocks.jsonl"))

    def block_progress(self) -> dict[str, tuple[str, int]]:
        """scenario -> (attempt, last finished block) of interleaved attempts that no outcome has closed yet:
        where a resume continues."""
        latest: dict[str, tuple[str, int]] = {}
        for block in self.blocks():
            scenario, attempt, number = str(block["scenario"]), str(block["attempt"]), int(block["block"])  # type: ignore[call-overload]
            if scenario not in latest or latest[scenario][0] != attempt or number > latest[scenario][1]:
                latest[scenario] = (attempt, number)
        closed = {(o.scenario, o.attempt) for o in self.outcomes() if o.status == "ok"}
        return {scenario: progress for scenario, progress in latest.items() if (scenario, progress[0]) not in closed}

    def add_outcome(self, outcome: CellOutcome) -> None:
        _append_lines(self.path / "cells.jsonl", [json.dumps(asdict(outcome), sort_keys=True)])

    def raw_writer(self, platform: str, scenario: str, repetition: int):
        directory = self.path / "raw" / platform / scenario / f"rep{repetition}"

        def write(name: str, text: str) -> None:
            directory.mkdir(parents=True, exist_ok=True)
            write_bytes_atomic(directory / os.path.basename(name), text.encode("utf-8", errors="replace"))

        return write

    def drop_unfinished(self, keep_raw_of: Iterable[tuple[str, str]] = ()) -> int:
        """Before a resume: rewrite samples.jsonl (atomically) without samples that no finished attempt
        owns, rewrite cells.jsonl without a torn last line, and remove the raw outputs of cells not in
        `keep_raw_of` (the cells the resume will redo). Returns how many samples were dropped."""
        cells = list(read_jsonl(self.path / "cells.jsonl"))
        if (self.path / "cells.jsonl").exists():
            write_bytes_atomic(self.path / "cells.jsonl",
                               "".join(json.dumps(c, sort_keys=True) + "\n" for c in cells).encode())
        everything = self._all_samples()
        progress = self.block_progress()
        finished = {id(s) for s in self._finished(everything)}
        kept = [s for s in everything if id(s) in finished or self._in_finished_block(s, progress)]
        if (self.path / "samples.jsonl").exists():
            write_bytes_atomic(self.path / "samples.jsonl", "".join(s.to_json() + "\n" for s in kept).encode())
        keep = set(keep_raw_of)
        raw = self.path / "raw"
        for platform_dir in raw.iterdir() if raw.is_dir() else []:
            for cell_dir in platform_dir.iterdir():
                if cell_dir.name in progress:  # an interleaved attempt resumes: keep its finished blocks
                    for rep_dir in cell_dir.glob("rep*"):
                        if int(rep_dir.name[3:] or 0) > progress[cell_dir.name][1]:
                            shutil.rmtree(rep_dir)
                elif (platform_dir.name, cell_dir.name) not in keep:
                    shutil.rmtree(cell_dir)
        return len(everything) - len(kept)

    def sync(self) -> None:
        """fsync every file and directory of the run (pytest-benchmark's JSON and raw outputs included)."""
        for directory, _dirs, files in os.walk(self.path):
            for name in files:
                fd = os.open(os.path.join(directory, name), os.O_RDONLY)
                try:
                    os.fsync(fd)
                finally:
                    os.close(fd)
            fsync_dir(Path(directory))
        fsync_dir(self.path.parent)

    # reading
    def run_info(self) -> dict[str, object]:
        return json.loads((self.path / "run.json").read_text())

    def env(self) -> dict[str, object]:
        path = self.path / "env.json"
        return json.loads(path.read_text()) if path.exists() else {}

    def samples(self) -> list[SampleRecord]:
        """The samples that count: each cell's from the attempt its latest outcome names (and any schema 1
        samples, which predate attempts)."""
        return self._finished(self._all_samples())

    def _all_samples(self) -> list[SampleRecord]:
        return [SampleRecord.from_dict(d) for d in read_jsonl(self.path / "samples.jsonl")]

    def _finished(self, samples: list[SampleRecord]) -> list[SampleRecord]:
        final = {(o.platform, o.scenario): o.attempt for o in self.outcomes()}  # the latest outcome wins
        return [s for s in samples if not s.attempt or final.get((s.platform, s.scenario)) == s.attempt]

    @staticmethod
    def _in_finished_block(sample: SampleRecord, progress: dict[str, tuple[str, int]]) -> bool:
        attempt, last = progress.get(sample.scenario, ("", 0))
        block = sample.metadata.get("block")
        return bool(attempt) and sample.attempt == attempt and isinstance(block, int) and block <= last

    def outcomes(self) -> list[CellOutcome]:
        return [CellOutcome(**d) for d in read_jsonl(self.path / "cells.jsonl")]  # type: ignore[arg-type]

    def finished_cells(self) -> set[tuple[str, str]]:
        """Cells with a final outcome (ok or skipped); failed cells are retried on resume."""
        return {(o.platform, o.scenario) for o in self.outcomes() if o.status in ("ok", "skipped")}
