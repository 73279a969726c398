"""Result store: one append-only trial log per episode, and a completion marker.

Layout under the output directory:
  episodes/<suite>/<task>/<method>/<experiment>/<budget>-s<seed>.jsonl      trials, as they happen
  episodes/<suite>/<task>/<method>/<experiment>/<budget>-s<seed>.done.json  summary, when complete
  episodes/<suite>/<task>/<method>/<experiment>/<budget>-s<seed>.error.txt  traceback, if it failed
  packed/<suite>.parquet                 completed episodes packed for publishing (`bench pack`)
An episode without a marker is incomplete: a rerun starts it again (runs are deterministic). A
failed episode has a marker (it is scored); `bench run --retry-failed` runs it again.

A packed file holds one row per completed episode, losslessly: the key's fields (`suite`, `task`,
`method`, `experiment`, `budget_kind`, `budget`, `seed`), `summary` (the marker's JSON), `trials` (the
trial log's JSON lines) and `error` (the traceback of a failed episode, else null); zstd-compressed.
Packed and loose episodes are read together, and a loose one shadows a packed one of the same key
(a rerun with `--retry-failed`), so `bench run --out DIR` adds episodes to packed results.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Collection, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, fields, replace
from pathlib import Path
from urllib.parse import quote, unquote

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from bench.errors import BenchError
from bench.gym.problem import Budget
from bench.summary import EpisodeSummary


@dataclass(frozen=True)
class EpisodeKey:
    suite: str
    task: str
    method: str
    experiment: str
    budget_kind: str
    budget: float
    seed: int

    def record(self) -> dict[str, str | float | int]:
        """Its fields by name (`dataclasses.asdict`'s result, without its deep copy: the fields
        are flat, and this runs once per episode the client writes or a leaderboard reads)."""
        return dict(vars(self))

    @property
    def budget_obj(self) -> Budget:
        return Budget(self.budget_kind, self.budget)  # type: ignore[arg-type]

    def stem(self) -> str:
        unit = "T" if self.budget_kind == "trials" else "C"
        return f"{unit}{self.budget:g}-s{self.seed}"

    def folder(self, out: Path) -> Path:
        """One folder level per field; names are quoted (`openai:Qwen/Qwen3-8B` has a slash)."""
        parts = (self.suite, self.task, self.method, self.experiment)
        return out.joinpath("episodes", *(quote(p, safe=" :+-._@=,") for p in parts))


PACKED = "packed"  # folder of the packed episodes, one Parquet file per suite
PACKED_SCHEMA = pa.schema([
    ("suite", pa.string()), ("task", pa.string()), ("method", pa.string()), ("experiment", pa.string()),
    ("budget_kind", pa.string()), ("budget", pa.float64()), ("seed", pa.int64()),
    ("summary", pa.string()), ("trials", pa.string()), ("error", pa.string())])


def _json_default(v):
    if isinstance(v, np.generic):
        return v.item()
    if isinstance(v, np.ndarray):
        return v.tolist()
    raise TypeError(f"not JSON-serialisable: {type(v).__name__}")


def dumps(obj) -> str:
    return json.dumps(obj, default=_json_default, allow_nan=True)


KEY_FIELDS = [f.name for f in fields(EpisodeKey)]


class Store:
    def __init__(self, out: Path):
        self.out = Path(out)
        self._packed: dict[EpisodeKey, tuple[Path, int, dict]] | None = None  # key -> (file, row, summary)
        self._columns: dict[tuple[Path, str], list] = {}  # a packed file's column, read on first use

    def check_writable(self) -> None:
        try:
            self.out.mkdir(parents=True, exist_ok=True)
            probe = self.out / ".write-test"
            probe.write_text("")
            probe.unlink()
        except OSError as exc:
            raise BenchError(f"cannot write to output directory {self.out}: {exc.strerror}. "
                             "Choose another with --out.") from exc

    def trial_log(self, key: EpisodeKey) -> Path:
        return key.folder(self.out) / f"{key.stem()}.jsonl"

    def marker(self, key: EpisodeKey) -> Path:
        return key.folder(self.out) / f"{key.stem()}.done.json"

    def error_file(self, key: EpisodeKey) -> Path:
        path = key.folder(self.out) / f"{key.stem()}.error.txt"
        path.parent.mkdir(parents=True, exist_ok=True)
        return path

    def is_done(self, key: EpisodeKey) -> bool:
        """Packed, or a marker and a trial log holding exactly the trials it counts (a log cut
        short by a crash, or damaged since, makes the episode run again)."""
        return self._loose_done(key) or (key in self.packed() and not self.trial_log(key).exists())

    def _loose_done(self, key: EpisodeKey) -> bool:
        try:
            summary = json.loads(self.marker(key).read_text())
            lines = self.trial_log(key).read_bytes().splitlines()
            last_parses = all(json.loads(line) is not None for line in lines[-1:])
            return len(lines) == summary["trials"] and last_parses
        except (OSError, ValueError, KeyError, TypeError):
            return False

    @contextmanager
    def lock(self) -> Iterator[None]:
        """Held while a `bench run` writes here; a second one gets a clear message. The lock
        dies with its process (a killed run leaves nothing to clean up)."""
        from filelock import FileLock, Timeout

        lock = FileLock(str(self.out / ".bench-run.lock"), timeout=0)
        try:
            lock.acquire()
        except Timeout:
            raise BenchError(f"another `bench run` is writing to {self.out}; wait for it to finish or "
                             "use another --out") from None
        try:
            yield
        finally:
            lock.release()

    def is_failed(self, key: EpisodeKey) -> bool:
        """A completed episode that failed (its marker records the reason)."""
        try:
            return json.loads(self.marker(key).read_text()).get("failed") is not None
        except (OSError, json.JSONDecodeError):
            return key in self.packed() and self.packed()[key][2].get("failed") is not None

    def open_log(self, key: EpisodeKey) -> TrialLog:
        path = self.trial_log(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        return TrialLog(path)

    def complete(self, key: EpisodeKey, summary: EpisodeSummary) -> None:
        """Write the marker atomically: it exists only once the whole episode is on disk."""
        path = self.marker(key)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(dumps({"key": key.record(), **summary.to_json()}))
        os.replace(tmp, path)

    def summaries(self) -> Iterator[tuple[EpisodeKey, EpisodeSummary]]:
        """Every completed episode's key and summary, loose ones first, then the packed ones they do
        not shadow."""
        loose = set()
        for path, key, record in self._markers():
            loose.add(key)
            try:
                yield key, EpisodeSummary.from_json(record)
            except BenchError as exc:
                raise BenchError(f"{path}: {exc}") from None
        for key, (path, _, record) in self.packed().items():
            if key not in loose:
                try:
                    yield key, EpisodeSummary.from_json(dict(record))
                except BenchError as exc:
                    raise BenchError(f"{path}: {exc}") from None

    def _markers(self) -> Iterator[tuple[Path, EpisodeKey, dict]]:
        """Each loose completion marker: its path, key and summary record."""
        for path in sorted((self.out / "episodes").glob("*/*/*/*/*.done.json")):
            try:
                record = json.loads(path.read_text())
                key = EpisodeKey(**record.pop("key"))
            except (OSError, json.JSONDecodeError, KeyError, TypeError) as exc:
                raise BenchError(f"result marker {path} is corrupt ({exc}); delete it and rerun "
                                 "`bench run` to recompute that episode") from exc
            yield path, key, record

    def trials(self, key: EpisodeKey) -> list[dict]:
        """The trial records of a completed episode (its loose log, else its packed row)."""
        path = self.trial_log(key)
        try:
            if self.marker(key).exists() or key not in self.packed():
                return [orjson.loads(line) for line in path.read_bytes().splitlines()]
            return [orjson.loads(line) for line in self._packed_cell(key, "trials").splitlines()]
        except (OSError, orjson.JSONDecodeError) as exc:
            raise BenchError(f"trial log {path} is unreadable ({exc}); delete its .done.json and rerun "
                             "`bench run` to recompute that episode") from exc

    def summary(self, key: EpisodeKey) -> EpisodeSummary:
        """A completed episode's summary (its loose marker, else its packed row)."""
        if self.marker(key).exists():
            record = json.loads(self.marker(key).read_text())
            record.pop("key")
        else:
            record = dict(self.packed()[key][2])
        return EpisodeSummary.from_json(record)

    def error(self, key: EpisodeKey) -> str | None:
        """A completed episode's traceback, if it failed with one."""
        if self.marker(key).exists():
            path = self.error_file(key)
            return path.read_text() if path.exists() else None
        return self._packed_cell(key, "error")

    def copy(self, source: EpisodeKey, key: EpisodeKey, **changes) -> None:
        """Complete `key` as a copy of the completed episode `source` (the same episode filed under
        another suite's name, `bench.runner.Plan.copies`), its summary's fields changed by `changes`."""
        log = self.open_log(key)
        try:
            for record in self.trials(source):
                log.append(record)
        finally:
            log.close()
        if (error := self.error(source)) is not None:
            self.error_file(key).write_text(error)
        self.complete(key, replace(self.summary(source), **changes))

    def _packed_cell(self, key: EpisodeKey, column: str) -> str | None:
        """One packed episode's `trials` or `error`; a file's column is read once."""
        file, row, _ = self.packed()[key]
        if (file, column) not in self._columns:
            self._columns[file, column] = _read(file, [column])[column]
        return self._columns[file, column][row]

    def packed(self) -> dict[EpisodeKey, tuple[Path, int, dict]]:
        """The packed episodes: key -> (file, row, summary record), read once."""
        if self._packed is None:
            self._packed = {}
            for file in sorted((self.out / PACKED).glob("*.parquet")):
                columns = _read(file, [*KEY_FIELDS, "summary"])
                try:
                    for row, summary in enumerate(columns["summary"]):
                        key = EpisodeKey(**{name: columns[name][row] for name in KEY_FIELDS})
                        self._packed[key] = (file, row, json.loads(summary))
                except (ValueError, TypeError) as exc:
                    raise _damaged(file, exc) from exc
        return self._packed

    def pack(self) -> int:
        """Move every loose completed episode into `packed/<suite>.parquet` (a packed row of the
        same key is replaced) and delete its loose files; returns how many were packed. Incomplete
        episodes stay loose."""
        fresh: dict[str, dict[EpisodeKey, dict]] = {}  # per suite: the loose rows to pack
        for _, key, record in self._markers():
            if self._loose_done(key):
                error = self.error_file(key)
                fresh.setdefault(key.suite, {})[key] = {
                    **key.record(), "summary": json.dumps(record), "trials": self.trial_log(key).read_text(),
                    "error": error.read_text() if error.exists() else None}
        for suite, rows in fresh.items():
            target = self.out / PACKED / f"{suite}.parquet"
            kept = []  # the rows packed before that no loose episode replaces, read once
            if target.exists():
                packed = pa.Table.from_pydict(_read(target, PACKED_SCHEMA.names)).to_pylist()
                kept = [row for row in packed
                        if EpisodeKey(**{name: row[name] for name in KEY_FIELDS}) not in rows]
            table = sorted([*kept, *rows.values()], key=lambda row: [row[name] for name in KEY_FIELDS])
            _write(target, pa.Table.from_pylist(table, schema=PACKED_SCHEMA))
        for key in (key for rows in fresh.values() for key in rows):
            for path in (self.trial_log(key), self.marker(key), self.error_file(key)):
                path.unlink(missing_ok=True)
        self._tidy()
        return sum(len(rows) for rows in fresh.values())

    def forget(self, method: str, tasks: Collection[str] | None = None,
               suites: Collection[str] | None = None) -> int:
        """Delete `method`'s episodes of these tasks and suites (default: all): its packed rows and
        its loose files, complete or not. Returns how many completed episodes went."""
        def chosen(suite: str, task: str, name: str) -> bool:
            return name == method and (tasks is None or task in tasks) and (suites is None or suite in suites)

        gone = {key for key in [*(key for _, key, _ in self._markers()), *self.packed()]
                if chosen(key.suite, key.task, key.method)}
        for file in sorted((self.out / PACKED).glob("*.parquet")):
            table = pq.read_table(file)
            drop = pc.equal(table["method"], method)
            for column, names in (("task", tasks), ("suite", suites)):
                if names is not None:
                    drop = pc.and_(drop, pc.is_in(table[column], pa.array(sorted(names), pa.string())))
            left = table.filter(pc.invert(drop))
            if left.num_rows == 0:
                file.unlink()
            elif left.num_rows < table.num_rows:
                _write(file, left.cast(PACKED_SCHEMA))
        for folder in sorted((self.out / "episodes").glob("*/*/*/")):
            if chosen(*(unquote(part) for part in folder.parts[-3:])):
                shutil.rmtree(folder)
        self._tidy()
        return len(gone)

    def _tidy(self) -> None:
        """Remove empty episode folders and forget what was read of the packed files."""
        for folder in sorted((self.out / "episodes").glob("**/"), key=lambda p: -len(p.parts)):
            if folder.is_dir() and not any(folder.iterdir()):
                folder.rmdir()
        self._packed, self._columns = None, {}


def _write(target: Path, table: pa.Table) -> None:
    """A packed file, replaced atomically."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(target.name + ".tmp")
    pq.write_table(table, tmp, compression="zstd", compression_level=19)
    os.replace(tmp, target)


def _read(file: Path, columns: list[str]) -> dict[str, list]:
    """Columns of a packed file as lists; a damaged file is one message."""
    try:
        return pq.read_table(file, columns=columns).to_pydict()
    except (OSError, ValueError, pa.ArrowException) as exc:
        raise _damaged(file, exc) from exc


def _damaged(file: Path, exc: Exception) -> BenchError:
    return BenchError(f"packed results {file} are unreadable ({exc}); restore the file (git checkout) "
                      "or delete it and rerun those episodes")


class TrialLog:
    """Append-only JSON lines, one unbuffered write per trial.

    A trial is in the operating system's hands before the next ask, so a killed process loses
    nothing it logged; no fsync per trial (milliseconds each); the completion marker is written
    atomically after the episode. A power loss may lose an incomplete episode, which a rerun repeats.
    """

    def __init__(self, path: Path):
        self.path = path
        self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)  # a rerun starts afresh

    def append(self, record: dict) -> None:
        os.write(self._fd, orjson.dumps(record, default=_json_default,
                                        option=orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_APPEND_NEWLINE))

    def close(self) -> None:
        os.close(self._fd)
