"""Runner: every (task, experiment, method, budget, seed) of a suite, in worker processes.

Episodes always run in worker processes (`bench.workers`) with a fixed `PYTHONHASHSEED`, so
results do not depend on `--jobs`, the executor or hash randomisation (SMAC needs it). Workers
send every event to this process, the single writer of `--out`: local workers, a Dask
`LocalCluster` (`--executor dask`) or an existing cluster (`--scheduler ADDRESS`) need no shared
disk and give the same numbers.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from dataclasses import dataclass, field

from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from bench.episode import failure_summary
from bench.errors import BenchError
from bench.gym.registry import load_task
from bench.gym.task import Prior
from bench.methods import method
from bench.store import EpisodeKey, Store
from bench.suites import Suite
from bench.workers import LocalWorkers, Recorder

log = logging.getLogger(__name__)
MAX_BATCH = 50


@dataclass
class Plan:
    """Episodes to run: (task reference, key) pairs; done ones are counted, not rerun."""

    todo: list[tuple[str, EpisodeKey]] = field(default_factory=list)
    done: int = 0
    skipped: list[str] = field(default_factory=list)  # what the protocol leaves out, and why


def plan(suite: Suite, tasks: list[str], method_names: list[str], store: Store,
         retry_failed: bool = False) -> Plan:
    """Every episode of the suite for these tasks and methods; completed ones are counted, not
    rerun (failed ones too, unless `retry_failed`). Unknown experiment names are an error."""
    p = Plan()
    families = {m: method(m).family for m in method_names}
    seen: set[str] = set()
    for ref in tasks:
        task = load_task(ref)
        prior = suite.prior_for(task.name)
        experiments = suite.pick_experiments(task.split(suite.split))
        seen.update(experiments)
        for exp in experiments:
            if prior.kind == "cheaper" and not task.prior_fidelities(exp, prior):
                p.skipped.append(f"{task.name}/{exp}: no prior fidelity costs at most 1/{prior.gap:g} "
                                 "of the target")
                continue
            budgets = suite.budget_objects()
            pool = len(task.outcomes(exp, task.experiment(exp).target.name))
            if suite.budget == "trials":
                too_big = [b for b in budgets if b.amount > pool / 2]
                if too_big:
                    listed = ", ".join(f"{b.amount:g}" for b in too_big)
                    p.skipped.append(f"{task.name}/{exp}: budgets {listed} exceed half the target pool "
                                     f"({pool} candidates)")
                budgets = [b for b in budgets if b not in too_big]
            for name in method_names:
                for b in budgets:
                    for seed in suite.seeds_for(families[name]):
                        key = EpisodeKey(suite.name, task.name, name, exp, b.kind, b.amount, seed)
                        if store.is_done(key) and not (retry_failed and store.is_failed(key)):
                            p.done += 1
                        else:
                            p.todo.append((ref, key))
    if isinstance(suite.experiments, list) and (unknown := [e for e in suite.experiments if e not in seen]):
        known = sorted({e for ref in tasks for e in load_task(ref).split(suite.split)})
        raise BenchError(f"no {suite.split} experiment named {', '.join(map(repr, unknown))} in "
                         f"{', '.join(load_task(r).name for r in tasks)}; known: {', '.join(known)}")
    return p


def batches(todo: list[tuple[str, EpisodeKey]], jobs: int, most: int = MAX_BATCH
            ) -> list[tuple[str, list[EpisodeKey]]]:
    """Episodes grouped per (task, method), in chunks small enough that `jobs` workers get about
    eight each (load balance) and at most `most` episodes (progress)."""
    size = max(1, min(most, len(todo) // (8 * jobs)))
    groups: dict[tuple[str, str], list[EpisodeKey]] = {}
    for ref, key in todo:
        groups.setdefault((ref, key.method), []).append(key)
    return [(ref, keys[i:i + size]) for (ref, _), keys in groups.items() for i in range(0, len(keys), size)]


def train_first(p: Plan, quiet: bool = False) -> None:
    """Meta-train every learned method of the plan on its tasks before any episode runs (once,
    here, rather than in every worker); existing checkpoints are reused."""
    pairs = dict.fromkeys((ref, key.method) for ref, key in p.todo if method(key.method).needs_training)
    for ref, name in pairs:
        _, path = train_with_progress(method(name), ref, quiet=quiet)
        log.info("checkpoint %s", path)


def train_with_progress(spec, ref: str, seed: int = 0, force: bool = False, quiet: bool = False):
    """`bench.training.train` with a progress bar: (checkpoint, path)."""
    from bench.training import train

    with Progress(TextColumn("{task.description}"), BarColumn(), TimeElapsedColumn(), disable=quiet) as bar:
        bar_id = bar.add_task(f"training {spec.name} on {ref}", total=1.0)
        return train(spec, load_task(ref), seed=seed, force=force,
                     progress=lambda f: bar.update(bar_id, completed=f))


class StoreWriter:
    """The client's sink (`bench.workers.Sink`): the only writer of `--out`. Trial logs are written
    as trials arrive, then the marker; it counts failures and seconds per method."""

    def __init__(self, store: Store, advance=lambda: None):
        self.store, self.advance = store, advance
        self.logs: dict[EpisodeKey, object] = {}
        self.started: dict[EpisodeKey, float] = {}
        self.failures: list[tuple[EpisodeKey, str]] = []
        self.seconds: dict[str, float] = defaultdict(float)

    def start(self, key: EpisodeKey) -> None:
        self._close(key)
        self.logs[key] = self.store.open_log(key)  # a rerun of an episode starts its log afresh
        self.started[key] = time.monotonic()

    def trial(self, key: EpisodeKey, record: dict) -> None:
        self.logs[key].append(record)

    def done(self, key: EpisodeKey, summary: dict, error: str | None, warned: list[str]) -> None:
        self._close(key)
        if error:
            self.store.error_file(key).write_text(error)
        if warned:  # library warnings (e.g. GP numerics) go beside the trial log, not the console
            (key.folder(self.store.out) / f"{key.stem()}.warnings.txt").write_text("\n".join(warned) + "\n")
        self.store.complete(key, summary)
        self._finish(key, summary["failed"])

    def broken(self, key: EpisodeKey, tb: str, reason: str) -> None:
        """The harness broke: the traceback is kept, no marker (a rerun tries again)."""
        self._close(key)
        self.store.error_file(key).write_text(tb)
        self._finish(key, reason)

    def lost(self, key: EpisodeKey, ref: str, prior: Prior, reason: str) -> None:
        """Stopped at its time limit, or its worker died twice: a scored failure, no trials."""
        self._close(key)
        self.store.open_log(key).close()  # empty: the marker says no trial completed
        self.store.complete(key, failure_summary(key, load_task(ref), prior, reason))
        self._finish(key, reason)

    def _close(self, key: EpisodeKey) -> None:
        if key in self.logs:
            self.logs.pop(key).close()

    def _finish(self, key: EpisodeKey, failed: str | None) -> None:
        if key in self.started:
            self.seconds[key.method] += time.monotonic() - self.started.pop(key)
        if failed:
            self.failures.append((key, failed))
            log.error("episode %s/%s/%s/%s failed: %s", key.task, key.method, key.experiment,
                      key.stem(), failed)
        self.advance()


def execute(p: Plan, suite: Suite, store: Store, jobs: int = 1, scheduler: str | None = None,
            quiet: bool = False, executor: str = "local", limit: float | None = None) -> StoreWriter:
    """Run the plan on local worker processes or a Dask cluster (`executor`; a `scheduler`
    address, or else a LocalCluster of `jobs` workers); `limit`: seconds per episode. Returns the
    writer (failures, seconds per method); what completed is on disk even if this raises."""
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
               TimeElapsedColumn(), TextColumn("eta"), TimeRemainingColumn())
    with Progress(*columns, disable=quiet) as bar:
        bar_id = bar.add_task(f"suite {suite.name}", total=len(p.todo))
        writer = StoreWriter(store, lambda: bar.advance(bar_id))
        work = [(ref, keys, suite.prior_for(keys[0].task)) for ref, keys in batches(p.todo, jobs)]
        if not work:
            return writer
        if executor == "local" and not scheduler:
            LocalWorkers(jobs, writer, limit).run(work)
        else:
            _on_dask(work, writer, jobs, scheduler, limit)
    return writer


def _on_dask(work: list, writer: StoreWriter, jobs: int, scheduler: str | None, limit: float | None) -> None:
    from dask.distributed import Client, LocalCluster, as_completed

    cluster = None if scheduler else LocalCluster(n_workers=jobs, threads_per_worker=1, processes=True,
                                                  dashboard_address=None)
    try:
        with Client(scheduler or cluster) as client:
            futures = [client.submit(dask_batch, batch, limit, pure=False) for batch in work]
            try:
                for fut in as_completed(futures):
                    for name, *args in fut.result():
                        getattr(writer, name)(*args)
            except BaseException:
                client.cancel(futures)
                raise
    finally:
        if cluster is not None:
            cluster.close()


def dask_batch(batch, limit: float | None) -> list[tuple]:
    """A Dask task: one batch in a supervised worker process on the Dask worker's machine; the
    events go back to the client, which writes them (no shared file system needed). A lost Dask
    worker makes Dask rerun the task; nothing was written for it, so nothing is duplicated."""
    recorder = Recorder()
    LocalWorkers(1, recorder, limit).run([batch])
    return recorder.events
