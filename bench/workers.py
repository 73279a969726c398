"""Worker processes that run episodes and stream what happens to the client, the single writer.

A worker is `python -m bench.workers PARENT` (PARENT: the client's pid), started with a fixed
`PYTHONHASHSEED` (SMAC's run history depends on it): it reads requests on stdin, ("warm", task
references) to import the harness and load those tasks ahead of its first batch, or ("batch", task
reference, keys, protocol): episodes of one task. It writes length-prefixed pickled messages on
its stdout, one per event:
    ("start", key)                          an episode begins
    ("trial", key, record)                  a trial happened (the record of the trial log)
    ("done", key, summary, error, warnings) it ended (error: the traceback of a scored failure)
    ("broken", key, traceback, reason)      the harness broke (e.g. the task would not load)
    ("fatal", message)                      a `BenchError` (a bad API key): the run must stop
It never writes results itself, so it needs no access to the client's `--out` (a Dask worker on
another machine). Anything a library prints goes to stderr, not into the message stream. It exits
when its parent dies (no orphans keep the CPU busy after `bench run` is killed) or closes stdin.

`LocalWorkers` is the client side (a context manager: its workers stop when it exits): `start`
spawns the workers and warms them up while the client still plans and trains; `run` keeps them
busy with batches, hands each event to a `Sink`,
stops an episode at its wall-clock limit (the worker is killed and replaced; the episode is a
failure with reason `timeout`), and reruns the episode of a worker that died, once.
"""

from __future__ import annotations

import logging
import os
import pickle
import selectors
import struct
import subprocess
import sys
import threading
import time
import traceback
import warnings
from collections import deque
from dataclasses import dataclass, field
from typing import Protocol

from bench.errors import BenchError
from bench.store import EpisodeKey
from bench.summary import EpisodeSummary

HEADER = struct.Struct("<Q")
WATCH_SECONDS = 1.0  # how often a worker checks that its parent is alive
Batch = tuple  # (task reference, list of EpisodeKey, Prior)


def send(stream, message) -> None:
    data = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    stream.write(HEADER.pack(len(data)) + data)
    stream.flush()


def receive(stream):
    """The next message, or None at the end of the stream. Reads exactly one message (the
    client's streams are unbuffered, so `select` sees whatever is left in the pipe)."""
    head = _read_exactly(stream, HEADER.size)
    if head is None:
        return None
    data = _read_exactly(stream, HEADER.unpack(head)[0])
    return None if data is None else pickle.loads(data)


def _read_exactly(stream, n: int) -> bytes | None:
    parts, left = [], n
    while left:
        chunk = stream.read(left)
        if not chunk:
            return None
        parts.append(chunk)
        left -= len(chunk)
    return b"".join(parts)


class Sink(Protocol):
    """Where the events of episodes go (`bench.runner.StoreWriter` writes them to `--out`)."""

    def start(self, key: EpisodeKey) -> None: ...
    def trial(self, key: EpisodeKey, record: dict) -> None: ...
    def done(self, key: EpisodeKey, summary: EpisodeSummary, error: str | None,
             warnings: list[str]) -> None: ...
    def broken(self, key: EpisodeKey, tb: str, reason: str) -> None: ...
    def lost(self, key: EpisodeKey, ref: str, protocol, reason: str) -> None: ...


class Recorder:
    """A sink that keeps the events, to replay them elsewhere (a Dask task's result)."""

    def __init__(self):
        self.events: list[tuple] = []

    def __getattr__(self, name):
        if name not in ("start", "trial", "done", "broken", "lost"):
            raise AttributeError(name)
        return lambda *args: self.events.append((name, *args))

    def replay(self, sink: Sink) -> None:
        for name, *args in self.events:
            getattr(sink, name)(*args)


@dataclass
class _Worker:
    proc: subprocess.Popen
    batch: deque = field(default_factory=deque)  # keys of the current batch not finished yet
    ref: str = ""
    protocol: object = None  # the batch's `bench.gym.suites.Protocol`
    current: EpisodeKey | None = None
    since: float = 0.0

    @property
    def busy(self) -> bool:
        return bool(self.batch)


class LocalWorkers:
    """`jobs` worker processes on this machine, supervised (see the module docstring)."""

    def __init__(self, jobs: int, limit: float | None = None):
        self.jobs, self.limit = jobs, limit
        self.sink: Sink | None = None
        self.workers: list[_Worker] = []
        self.attempts: dict[EpisodeKey, int] = {}

    def __enter__(self) -> LocalWorkers:
        return self

    def __exit__(self, *exc) -> None:
        for w in self.workers:
            _stop(w.proc)
        self.workers = []

    def _spawn(self) -> _Worker:
        env = {**os.environ, "PYTHONHASHSEED": "0"}
        proc = subprocess.Popen([sys.executable, "-m", "bench.workers", str(os.getpid())],
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env, bufsize=0)
        return _Worker(proc)

    def start(self, refs: list[str] = ()) -> None:
        """Spawn the workers now and have them load the tasks `refs`, while the caller goes on."""
        while len(self.workers) < self.jobs:
            w = self._spawn()
            send(w.proc.stdin, ("warm", list(refs)))
            self.workers.append(w)

    def run(self, batches: list[Batch], sink: Sink) -> None:
        """Run every batch on the workers (started here if `start` was not called), events to `sink`."""
        self.sink = sink
        pending = deque(batches)
        while len(self.workers) < min(self.jobs, len(batches)):
            self.workers.append(self._spawn())
        workers = self.workers
        selector = selectors.DefaultSelector()
        for w in workers:
            selector.register(w.proc.stdout, selectors.EVENT_READ, w)
        try:
            while pending or any(w.busy for w in workers):
                for w in workers:
                    if not w.busy and pending:
                        ref, keys, protocol = pending.popleft()
                        w.batch, w.ref, w.protocol = deque(keys), ref, protocol
                        send(w.proc.stdin, ("batch", ref, list(keys), protocol))
                for sel_key, _ in selector.select(timeout=0.2):
                    w = sel_key.data
                    message = receive(w.proc.stdout)
                    if message is None:
                        self._replace(w, workers, selector, pending, died=True)
                    else:
                        self._handle(w, message)
                for w in workers:
                    if w.current is not None and self.limit and time.monotonic() - w.since > self.limit:
                        self._replace(w, workers, selector, pending, died=False)
        finally:
            selector.close()

    def _handle(self, w: _Worker, message: tuple) -> None:
        kind, *args = message
        if kind == "start":
            w.current, w.since = args[0], time.monotonic()
            self.sink.start(args[0])
        elif kind == "trial":
            self.sink.trial(*args)
        elif kind in ("done", "broken"):
            getattr(self.sink, kind)(*args)
            w.current = None
            if w.batch and w.batch[0] == args[0]:
                w.batch.popleft()
        elif kind == "fatal":
            raise BenchError(args[0])

    def _replace(self, w: _Worker, workers: list[_Worker], selector, pending: deque, died: bool) -> None:
        """A worker died, or its episode ran past the limit: kill it, settle that episode, give
        the rest of its batch to a fresh worker."""
        key = w.current
        selector.unregister(w.proc.stdout)
        _stop(w.proc)
        rest = list(w.batch)
        if key is not None and rest and rest[0] == key:
            rest.pop(0)
            self.attempts[key] = self.attempts.get(key, 0) + 1
            if died and self.attempts[key] < 2:
                rest.insert(0, key)  # rerun it from the start: the client truncates its log
            else:
                reason = "worker died twice" if died else f"timeout after {self.limit:g} s"
                self.sink.lost(key, w.ref, w.protocol, reason)
        if rest:
            pending.appendleft((w.ref, rest, w.protocol))
        fresh = self._spawn()
        workers[workers.index(w)] = fresh
        selector.register(fresh.proc.stdout, selectors.EVENT_READ, fresh)


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        try:
            proc.stdin.close()
        except OSError:
            pass
        proc.kill()
    proc.wait()


# --- the worker side -----------------------------------------------------------------------------

class _PipeLog:
    def __init__(self, out, key: EpisodeKey):
        self.out, self.key = out, key

    def append(self, record: dict) -> None:
        send(self.out, ("trial", self.key, record))


def child_of(parent: int) -> None:
    """Set up a helper process of `bench run` (a worker, or a training process of
    `bench.runner.train_first`), process `parent`'s child: it exits once its parent is gone
    (checked every WATCH_SECONDS; at once if it is gone already), so it does not outlive a killed
    `bench run`; and it does not repeat the warnings of the task tables it loads (rows merged, ...),
    which the client, loading the same tables to plan the run, has shown once."""
    logging.getLogger("bench.gym.spec").setLevel(logging.ERROR)
    threading.Thread(target=_watch_parent, args=(parent,), daemon=True).start()


def _watch_parent(parent: int) -> None:
    while os.getppid() == parent:
        time.sleep(WATCH_SECONDS)
    os._exit(3)


def _run_batch(out, ref: str, keys: list[EpisodeKey], protocol) -> None:
    from bench.episode import play_episode
    from bench.gym.registry import load_task
    from bench.methods import method

    for key in keys:
        try:
            task, spec = load_task(ref), method(key.method)  # once per process (cached), not timed
            task = protocol.task_for(task, key.experiment)  # its cv fold (cached), or itself
            send(out, ("start", key))
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                summary, error = play_episode(key, task, spec, _PipeLog(out, key), protocol.prior)
            lines = list(dict.fromkeys(f"{w.category.__name__}: {w.message}" for w in caught))
            send(out, ("done", key, summary, error, lines))
        except BenchError as exc:
            send(out, ("fatal", str(exc)))
            return
        except Exception as exc:  # the harness itself broke (e.g. the task would not load): no score
            send(out, ("broken", key, traceback.format_exc(), f"{type(exc).__name__}: {exc}"))


def _warm(refs: list[str]) -> None:
    """Import what episodes need and load the tasks `refs` (cached for the batches to come). A task
    that fails to load fails again in its batch, which reports it; here it is only not warm."""
    import bench.episode  # noqa: F401
    from bench.gym.registry import load_task

    for ref in refs:
        try:
            load_task(ref)
        except Exception:  # reported by the batch that needs it
            continue


def main() -> None:
    out = os.fdopen(os.dup(1), "wb")  # messages; stray prints of libraries go to stderr
    os.dup2(2, 1)
    child_of(int(sys.argv[1]))  # not os.getppid(): a client killed while this one imports is gone by now
    while (request := receive(sys.stdin.buffer)) is not None:
        kind, *args = request
        if kind == "warm":
            _warm(*args)
        else:
            _run_batch(out, *args)


if __name__ == "__main__":
    main()
