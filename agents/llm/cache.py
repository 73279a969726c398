"""A response cache of LLM calls (SQLite), so a rerun replays an agent's episodes with no network.

Keyed by the SHA-256 of (provider, model, the whole request: system, messages, schema, sampling
parameters, seed). Modes (`bench run --llm-cache`, or `$BENCH_LLM_CACHE`):
  readwrite  answer from the cache when it can, call the provider otherwise and store the reply
  read       answer from the cache when it can, call the provider otherwise, store nothing
  write      always call the provider and store the reply
  off        neither read nor write
The file is `$BENCH_CACHE/llm/responses.sqlite`; it holds requests and replies, never API keys.
Several worker processes share it (WAL journal; a writer waits for the lock).

Replies the project ships (`SHIPPED`: one gzipped JSON-lines file per model, keys and replies
only, written by `ResponseCache.ship`) are read after the file, so the reference runs of a model
replay on a machine that has neither the model nor a key.
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import json
import os
import sqlite3
from dataclasses import asdict
from pathlib import Path

from agents.llm.providers import Reply, Request
from bench.errors import BenchError
from bench.paths import cache_dir

MODES = ("readwrite", "read", "write", "off")
SHIPPED = Path(__file__).parent / "replays"  # committed replays (scripts/ship_llm_replays.py)


@functools.cache
def shipped() -> dict[str, tuple[str, str, dict]]:
    """The shipped replies: cache key -> (provider, model, reply)."""
    replies = {}
    for path in sorted(SHIPPED.glob("*.jsonl.gz")):
        replies.update(_read_shipped(path))
    return replies


def _read_shipped(path: Path) -> dict[str, tuple[str, str, dict]]:
    try:
        with gzip.open(path, "rt") as lines:
            rows = [json.loads(line) for line in lines]
        return {row["key"]: (row["provider"], row["model"], row["reply"]) for row in rows}
    except (OSError, EOFError, ValueError, KeyError) as exc:
        raise BenchError(f"the shipped LLM replay {path} is unreadable ({exc}); restore it with "
                         "git") from exc


def mode_from_env() -> str:
    mode = os.environ.get("BENCH_LLM_CACHE", "readwrite")
    if mode not in MODES:
        raise BenchError(f"$BENCH_LLM_CACHE={mode!r} is not one of {', '.join(MODES)}")
    return mode


def default_path() -> Path:
    return cache_dir() / "llm" / "responses.sqlite"


class ResponseCache:
    def __init__(self, path: Path | None = None, mode: str | None = None):
        self.mode = mode or mode_from_env()
        if self.mode not in MODES:
            raise BenchError(f"LLM cache mode {self.mode!r} is not one of {', '.join(MODES)}")
        self.path = path or default_path()
        self._db: sqlite3.Connection | None = None

    @property
    def reads(self) -> bool:
        return self.mode in ("readwrite", "read")

    @property
    def writes(self) -> bool:
        return self.mode in ("readwrite", "write")

    def _connect(self) -> sqlite3.Connection:
        if self._db is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            try:
                db = sqlite3.connect(self.path, timeout=60)
                db.execute("PRAGMA journal_mode=WAL")
                db.execute("CREATE TABLE IF NOT EXISTS responses (key TEXT PRIMARY KEY, provider TEXT, "
                           "model TEXT, request TEXT, reply TEXT)")
                db.commit()
            except sqlite3.DatabaseError as exc:
                raise BenchError(f"the LLM response cache {self.path} is unreadable ({exc}); delete it "
                                 "or run with --llm-cache off") from exc
            self._db = db
        return self._db

    @staticmethod
    def key(provider: str, model: str, request: Request) -> str:
        blob = json.dumps({"provider": provider, "model": model, "request": request.key()},
                          sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(blob.encode()).hexdigest()

    def get(self, provider: str, model: str, request: Request) -> Reply | None:
        if not self.reads:
            return None
        key = self.key(provider, model, request)
        if self.path.exists() or self._db:
            row = self._connect().execute("SELECT reply FROM responses WHERE key = ?", (key,)).fetchone()
            if row:
                return Reply(**json.loads(row[0]))
        return Reply(**shipped()[key][2]) if key in shipped() else None

    def put(self, provider: str, model: str, request: Request, reply: Reply) -> None:
        if not self.writes:
            return
        db = self._connect()
        db.execute("INSERT OR REPLACE INTO responses VALUES (?, ?, ?, ?, ?)",
                   (self.key(provider, model, request), provider, model,
                    json.dumps(request.key(), sort_keys=True), json.dumps(asdict(reply))))
        db.commit()

    def count(self, provider: str, model: str) -> int:
        """Replies stored for this provider and model, here and shipped."""
        here = 0 if not self.path.exists() else self._connect().execute(
            "SELECT COUNT(*) FROM responses WHERE provider = ? AND model = ?",
            (provider, model)).fetchone()[0]
        return here + sum((p, m) == (provider, model) for p, m, _ in shipped().values())

    def ship(self, provider: str, model: str, path: Path) -> int:
        """Add this cache's replies of `model` to the shipped replays in `path` (the replies it
        already holds are kept; the cache's win on the same key). Sorted, gzip without a
        timestamp: the same replies give the same bytes. Returns how many it holds."""
        replies = {key: reply for key, (_, _, reply) in _read_shipped(path).items()} if path.exists() else {}
        if self.path.exists():
            replies.update((key, json.loads(reply)) for key, reply in self._connect().execute(
                "SELECT key, reply FROM responses WHERE provider = ? AND model = ?", (provider, model)))
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) as out:
            for key in sorted(replies):
                out.write((json.dumps({"key": key, "provider": provider, "model": model,
                                       "reply": replies[key]}, sort_keys=True) + "\n").encode())
        return len(replies)
