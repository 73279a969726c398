"""Runner: every (task, experiment, method, budget, seed) of a suite, in worker processes.

Episodes always run in spawned worker processes with a fixed `PYTHONHASHSEED`, so results do
not depend on `--jobs` or on hash randomisation (SMAC needs it). `--scheduler ADDRESS` sends the
same work to a Dask cluster instead.
"""

from __future__ import annotations

import logging
import multiprocessing as mp
import os
import traceback
import warnings
from collections.abc import Iterator
from concurrent.futures import Executor, ProcessPoolExecutor, as_completed
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from bench.errors import BenchError
from bench.gym.registry import load_task
from bench.gym.task import Prior
from bench.methods import method
from bench.store import EpisodeKey, Store
from bench.suites import Suite

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


def _work(ref: str, keys: list[EpisodeKey], out: str, prior: Prior) -> list[tuple[EpisodeKey, str | None]]:
    """Worker entry point: run a batch of episodes of one task; return each one's failure reason
    (None if it succeeded). The task loads once per worker process (`load_task` caches it)."""
    from bench.episode import run_episode  # imported in the worker

    store = Store(Path(out))
    results = []
    for key in keys:
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                summary = run_episode(key, load_task(ref), method(key.method), store, prior)
            if caught:  # library warnings (e.g. GP numerics) go beside the trial log, not the console
                lines = dict.fromkeys(f"{w.category.__name__}: {w.message}" for w in caught)
                (key.folder(store.out) / f"{key.stem()}.warnings.txt").write_text("\n".join(lines) + "\n")
            results.append((key, summary["failed"]))
        except BenchError:  # the user's environment: the run stops (`execute`)
            raise
        except Exception as exc:  # the harness itself broke (e.g. the task would not load): no score
            store.error_file(key).write_text(traceback.format_exc())
            results.append((key, f"{type(exc).__name__}: {exc}"))
    return results


def batches(todo: list[tuple[str, EpisodeKey]], jobs: int, most: int = MAX_BATCH
            ) -> list[tuple[str, list[EpisodeKey]]]:
    """Episodes grouped per (task, method), in chunks small enough that `jobs` workers get about
    eight each (load balance) and at most `most` episodes (progress)."""
    size = max(1, min(most, len(todo) // (8 * jobs)))
    groups: dict[tuple[str, str], list[EpisodeKey]] = {}
    for ref, key in todo:
        groups.setdefault((ref, key.method), []).append(key)
    return [(ref, keys[i:i + size]) for (ref, _), keys in groups.items() for i in range(0, len(keys), size)]


@contextmanager
def _executor(jobs: int, scheduler: str | None) -> Iterator[Executor]:
    """Local spawned workers, or a Dask cluster (its workers should run with PYTHONHASHSEED=0)."""
    if scheduler:
        from dask.distributed import Client

        with Client(scheduler) as client:
            yield client.get_executor()
        return
    os.environ.setdefault("PYTHONHASHSEED", "0")  # inherited by the spawned workers
    with ProcessPoolExecutor(max_workers=jobs, mp_context=mp.get_context("spawn")) as pool:
        yield pool


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


def execute(p: Plan, suite: Suite, store: Store, jobs: int = 1, scheduler: str | None = None,
            quiet: bool = False) -> list[tuple[EpisodeKey, str]]:
    """Run the plan; returns the failed episodes with their errors (the rest are on disk)."""
    failures: list[tuple[EpisodeKey, str]] = []
    if not p.todo:
        return failures
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
               TimeElapsedColumn())
    with Progress(*columns, disable=quiet) as bar, _executor(jobs, scheduler) as pool:
        task_id = bar.add_task(f"suite {suite.name}", total=len(p.todo))
        futures = [pool.submit(_work, ref, keys, str(store.out), suite.prior_for(keys[0].task))
                   for ref, keys in batches(p.todo, jobs)]
        for fut in as_completed(futures):
            try:
                results = fut.result()
            except BenchError:  # e.g. a bad API key: nothing else can succeed; keep what is done
                for other in futures:
                    other.cancel()
                raise
            for key, error in results:
                if error:
                    failures.append((key, error))
                    log.error("episode %s/%s/%s/%s failed: %s", key.task, key.method,
                              key.experiment, key.stem(), error)
                bar.advance(task_id)
    return failures
