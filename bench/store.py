"""Result store: one append-only trial log per episode, and a completion marker.

Layout under the output directory:
  episodes/<suite>/<task>/<method>/<experiment>/<budget>-s<seed>.jsonl      trials, as they happen
  episodes/<suite>/<task>/<method>/<experiment>/<budget>-s<seed>.done.json  summary, when complete
  episodes/<suite>/<task>/<method>/<experiment>/<budget>-s<seed>.error.txt  traceback, if it failed
An episode without a marker is incomplete: a rerun starts it again (runs are deterministic). A
failed episode has a marker (it is scored); `bench run --retry-failed` runs it again.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from urllib.parse import quote

import numpy as np
import orjson

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


def _json_default(v):
    if isinstance(v, np.generic):
        return v.item()
    if isinstance(v, np.ndarray):
        return v.tolist()
    raise TypeError(f"not JSON-serialisable: {type(v).__name__}")


def dumps(obj) -> str:
    return json.dumps(obj, default=_json_default, allow_nan=True)


class Store:
    def __init__(self, out: Path):
        self.out = Path(out)

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
        """A marker, and a trial log holding exactly the trials it counts (a log cut short by a
        crash, or damaged since, makes the episode run again)."""
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
            return False

    def open_log(self, key: EpisodeKey) -> TrialLog:
        path = self.trial_log(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        return TrialLog(path)

    def complete(self, key: EpisodeKey, summary: EpisodeSummary) -> None:
        """Write the marker atomically: it exists only once the whole episode is on disk."""
        path = self.marker(key)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(dumps({"key": asdict(key), **summary.to_json()}))
        os.replace(tmp, path)

    def summaries(self) -> Iterator[tuple[EpisodeKey, EpisodeSummary]]:
        """Every completed episode's key and summary."""
        root = self.out / "episodes"
        for path in sorted(root.glob("*/*/*/*/*.done.json")):
            try:
                record = json.loads(path.read_text())
                key = EpisodeKey(**record.pop("key"))
            except (OSError, json.JSONDecodeError, KeyError, TypeError) as exc:
                raise BenchError(f"result marker {path} is corrupt ({exc}); delete it and rerun "
                                 "`bench run` to recompute that episode") from exc
            try:
                yield key, EpisodeSummary.from_json(record)
            except BenchError as exc:
                raise BenchError(f"{path}: {exc}") from None


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
