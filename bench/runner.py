"""Runner: every (task, experiment, method, budget, seed) of a suite, in worker processes.

Episodes always run in worker processes (`bench.workers`) with a fixed `PYTHONHASHSEED`, so
results do not depend on `--jobs`, the executor or hash randomisation (SMAC needs it). Workers
send every event to this process, the single writer of `--out`: local workers, a Dask
`LocalCluster` (`--executor dask`) or an existing cluster (`--scheduler ADDRESS`) need no shared
disk and give the same numbers.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import time
from collections import defaultdict
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field, replace

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
from bench.gym.suites import Protocol, Suite, load_suite, suite_names
from bench.methods import method
from bench.store import EpisodeKey, Store
from bench.summary import EpisodeSummary
from bench.workers import LocalWorkers, Recorder, child_of

log = logging.getLogger(__name__)
MAX_BATCH = 50


@dataclass
class Plan:
    """Episodes to run: (task reference, key) pairs; done ones are counted, not rerun.
    `protocols`: (suite name, task name) -> how those episodes are set up. `copies`: key -> the
    same episode under another suite's name (`Protocol.same_episodes`: a built-in suite's, or a
    nearer distance of this ladder), copied once that one is complete instead of run again."""

    todo: list[tuple[str, EpisodeKey]] = field(default_factory=list)
    copies: dict[EpisodeKey, EpisodeKey] = field(default_factory=dict)
    done: int = 0
    skipped: list[str] = field(default_factory=list)  # what the protocol leaves out, and why
    protocols: dict[tuple[str, str], Protocol] = field(default_factory=dict)


def plan(suite: Suite, tasks: list[str], method_names: list[str], store: Store,
         retry_failed: bool = False) -> Plan:
    """Every episode of the suite (of each of its distances, for a ladder) for these tasks and
    methods; completed ones are counted, not rerun (failed ones too, unless `retry_failed`).
    Learned methods that cannot train (`MethodSpec.untrainable`; under `cv`, a task of one group)
    are left out, said in `skipped`. Unknown experiment names are an error."""
    p, queued = Plan(), set()
    families = {m: method(m).family for m in method_names}
    runs = suite.per_gap()
    own = {run.name for run in runs}
    others = [other for name in suite_names() for other in load_suite(name).per_gap()
              if other.name not in own]  # built-in suites whose episodes these may copy
    seen: set[str] = set()
    for ref in tasks:
        task = load_task(ref)
        available = list(task.experiments) if suite.cv else task.split(suite.split)
        experiments = suite.pick_experiments(available)
        seen.update(experiments)
        names = method_names
        if suite.cv and len(task.groups()) < 2:
            learned = [m for m in method_names if method(m).learned]
            if learned:
                p.skipped.append(f"{task.name}: one experiment group, so no fold leaves anything to train "
                                 f"on: {', '.join(learned)} not run (non-learned methods only)")
                names = [m for m in method_names if m not in learned]
        if not suite.cv:  # a learned method needs the task's train experiments
            untrainable = {m: why for m in names if (why := method(m).untrainable(task))}
            p.skipped += [f"{task.name}: {m} not run: {why}" for m, why in untrainable.items()]
            names = [m for m in names if m not in untrainable]
        elsewhere = {other.name: other.protocol(task.name) for other in others}
        for run in runs:
            p.protocols[run.name, task.name] = run.protocol(task.name)
            nearer = {name: proto for (name, t), proto in p.protocols.items() if t == task.name}
            _plan_task(p, run, ref, task, experiments, names, families, store, retry_failed,
                       {**nearer, **elsewhere}, queued)
    if isinstance(suite.experiments, list) and (unknown := [e for e in suite.experiments if e not in seen]):
        known = sorted({e for ref in tasks for e in (list(load_task(ref).experiments) if suite.cv
                                                     else load_task(ref).split(suite.split))})
        what = "experiment" if suite.cv else f"{suite.split} experiment"
        raise BenchError(f"no {what} named {', '.join(map(repr, unknown))} in "
                         f"{', '.join(load_task(r).name for r in tasks)}; known: {', '.join(known)}")
    return p


def _plan_task(p: Plan, suite: Suite, ref: str, task, experiments: list[str], method_names: list[str],
               families: dict[str, str], store: Store, retry_failed: bool,
               others: dict[str, Protocol], queued: set[EpisodeKey]) -> None:
    """`others`: the protocols of suites whose episodes this one may copy (`Plan.copies`);
    `queued`: the plan's keys to run so far."""
    prior, mine = suite.prior_for(task.name), p.protocols[suite.name, task.name]

    def usable(key: EpisodeKey) -> bool:
        return store.is_done(key) and not (retry_failed and store.is_failed(key))

    for exp in experiments:
        if not task.offers(exp, prior):
            why = f"no prior fidelity costs at most 1/{prior.gap:g} of the target" if prior.gap \
                else "it has no cheaper fidelity"
            p.skipped.append(f"{suite.name} {task.name}/{exp}: {why}")
            continue
        budgets = suite.budget_objects()
        pool = len(task.outcomes(exp, task.experiment(exp).target.name))
        if suite.budget == "trials":
            too_big = [b for b in budgets if b.amount > pool / 2]
            if too_big:
                listed = ", ".join(f"{b.amount:g}" for b in too_big)
                p.skipped.append(f"{suite.name} {task.name}/{exp}: budgets {listed} exceed half the "
                                 f"target pool ({pool} candidates)")
            budgets = [b for b in budgets if b not in too_big]
        twins = [other for other, protocol in others.items()
                 if other != suite.name and protocol.same_episodes(mine, task, exp)]
        for name in method_names:
            for b in budgets:
                for seed in suite.seeds_for(families[name]):
                    key = EpisodeKey(suite.name, task.name, name, exp, b.kind, b.amount, seed)
                    if usable(key):
                        p.done += 1
                        continue
                    source = next((twin for other in twins if (twin := replace(key, suite=other)) in queued
                                   or twin in p.copies or usable(twin)), None)
                    if source is not None:
                        p.copies[key] = source
                    else:
                        p.todo.append((ref, key))
                        queued.add(key)


def copy_twins(p: Plan, store: Store) -> int:
    """Complete each of `p.copies` whose source is complete, as a copy of it (its summary's `gap`
    its own suite's); returns how many, and drops them from the plan."""
    copied = 0
    for key, source in list(p.copies.items()):  # in plan order: a copy of a copy follows its source
        if store.is_done(source):
            store.copy(source, key, gap=p.protocols[key.suite, key.task].prior.gap)
            del p.copies[key]
            copied += 1
    return copied


def batches(todo: list[tuple[str, EpisodeKey]], jobs: int, most: int = MAX_BATCH
            ) -> list[tuple[str, list[EpisodeKey]]]:
    """Episodes grouped per (task, suite, method), in chunks small enough that `jobs` workers get about
    eight each (load balance) and at most `most` episodes (progress)."""
    size = max(1, min(most, len(todo) // (8 * jobs)))
    groups: dict[tuple[str, str, str], list[EpisodeKey]] = {}
    for ref, key in todo:
        groups.setdefault((ref, key.suite, key.method), []).append(key)
    return [(ref, keys[i:i + size]) for (ref, *_), keys in groups.items() for i in range(0, len(keys), size)]


def trainings(p: Plan) -> list[tuple[str, str, int | None]]:
    """(learned method, task reference, cv fold index or None) of every checkpoint the plan's
    episodes use: one per task, or one per (task, fold) under cross-validation."""
    out: dict[tuple[str, str, int | None], None] = {}
    for ref, key in p.todo:
        if not method(key.method).learned:
            continue
        fold = None
        if p.protocols[key.suite, key.task].cv:
            folds = load_task(ref).cv_folds()
            fold = next(k for k, f in enumerate(folds) if f.experiments[key.experiment].split == "test")
        out[key.method, ref, fold] = None
    return list(out)


def train_first(p: Plan, jobs: int = 1, quiet: bool = False) -> None:
    """Meta-train every checkpoint the plan needs (`trainings`) that does not exist yet (shipped or
    cached) before any episode runs, in `jobs` worker processes (which exit if this one is killed)."""
    todo = [job for job in trainings(p) if _fold_or_task_checkpoint(*job) is None]
    if not todo:
        return
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    context = multiprocessing.get_context("spawn")  # no forked torch or thread state
    with Progress(*columns, disable=quiet) as bar, \
            ProcessPoolExecutor(max_workers=min(jobs, len(todo)), mp_context=context,
                                initializer=child_of, initargs=(os.getpid(),)) as pool:
        bar_id = bar.add_task(f"training {len(todo)} checkpoint(s)", total=len(todo))
        for done in as_completed([pool.submit(train_one, *job) for job in todo]):
            log.info("checkpoint %s", done.result())
            bar.advance(bar_id)


def _training_task(ref: str, fold: int | None):
    """Task `ref`, or its cv fold `fold`: what a checkpoint of `trainings` is trained on."""
    task = load_task(ref)
    return task if fold is None else task.cv_folds()[fold]


def _fold_or_task_checkpoint(name: str, ref: str, fold: int | None):
    from bench.training import trained_path

    return trained_path(method(name), _training_task(ref, fold))


def train_one(name: str, ref: str, fold: int | None = None) -> str:
    """Train (or find) one checkpoint of method `name` on task `ref`, or on its cv fold `fold`."""
    from bench.training import train

    return str(train(method(name), _training_task(ref, fold))[1])


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

    def done(self, key: EpisodeKey, summary: EpisodeSummary, error: str | None, warned: list[str]) -> None:
        self._close(key)
        if error:
            self.store.error_file(key).write_text(error)
        if warned:  # library warnings (e.g. GP numerics) go beside the trial log, not the console
            (key.folder(self.store.out) / f"{key.stem()}.warnings.txt").write_text("\n".join(warned) + "\n")
        self.store.complete(key, summary)
        self._finish(key, summary.failed)

    def broken(self, key: EpisodeKey, tb: str, reason: str) -> None:
        """The harness broke: the traceback is kept, no marker (a rerun tries again)."""
        self._close(key)
        self.store.error_file(key).write_text(tb)
        self._finish(key, reason)

    def lost(self, key: EpisodeKey, ref: str, protocol: Protocol, reason: str) -> None:
        """Stopped at its time limit, or its worker died twice: a scored failure, no trials."""
        self._close(key)
        self.store.open_log(key).close()  # empty: the marker says no trial completed
        task = protocol.task_for(load_task(ref), key.experiment)
        self.store.complete(key, failure_summary(key, task, protocol.prior, reason))
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


def run_suite(suite: Suite, refs: list[str], method_names: list[str], store: Store, *, jobs: int = 1,
              executor: str = "local", scheduler: str | None = None, limit: float | None = None,
              retry_failed: bool = False, quiet: bool = False,
              planned: Callable[[Plan], None] = lambda _: None) -> tuple[Plan, StoreWriter]:
    """What `bench run` and `bench.api.run` do, under the store's lock: `plan` (then `planned(p)`,
    e.g. to print what is skipped), `train_first`, `execute`. Local workers start first, so they
    import the harness and load the tasks while the plan is built and checkpoints train."""
    with store.lock(), LocalWorkers(jobs, limit) as workers:
        local = executor == "local" and not scheduler
        if local:
            workers.start(refs)
        p = plan(suite, refs, method_names, store, retry_failed=retry_failed)
        planned(p)
        copy_twins(p, store)
        train_first(p, jobs=jobs, quiet=quiet)
        writer = execute(p, suite, store, jobs=jobs, scheduler=scheduler, quiet=quiet, executor=executor,
                         limit=limit, workers=workers if local else None)
        copy_twins(p, store)  # those whose source ran just now
    return p, writer


def execute(p: Plan, suite: Suite, store: Store, jobs: int = 1, scheduler: str | None = None,
            quiet: bool = False, executor: str = "local", limit: float | None = None,
            workers: LocalWorkers | None = None) -> StoreWriter:
    """Run the plan on local worker processes (`workers` if given, else `jobs` new ones) or a Dask
    cluster (`executor`; a `scheduler` address, or else a LocalCluster of `jobs` workers); `limit`:
    seconds per episode. Returns the writer (failures, seconds per method); what completed is on
    disk even if this raises."""
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
               TimeElapsedColumn(), TextColumn("eta"), TimeRemainingColumn())
    with Progress(*columns, disable=quiet) as bar:
        bar_id = bar.add_task(f"suite {suite.name}", total=len(p.todo))
        writer = StoreWriter(store, lambda: bar.advance(bar_id))
        work = [(ref, keys, p.protocols[keys[0].suite, keys[0].task]) for ref, keys in batches(p.todo, jobs)]
        if not work:
            return writer
        if workers is not None:
            workers.run(work, writer)
        elif executor == "local" and not scheduler:
            with LocalWorkers(jobs, limit) as fresh:
                fresh.run(work, writer)
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
    with LocalWorkers(1, limit) as workers:
        workers.run([batch], recorder)
    return recorder.events
