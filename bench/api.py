"""The Python API for the common loops, so that a notebook does not shell out: the functions
`bench run` and `bench leaderboard` call, with the same names, checks and results.

    from bench import api

    ep = api.run(task="data_mixture", methods=["random", "mymod:MyOpt"], suite="quick", out="runs")
    board = api.leaderboard(ep)             # or api.leaderboard("runs"): a results directory
    problem, oracle = api.make_problem("data_mixture", "pile_cc", budget=5)   # one episode by hand

Methods are named as on the command line (`bench.methods`: presets, plugin names, `module:Class`);
an Optimizer class defined in an importable module may be given as the class itself. Episodes run
in worker processes, which import the class by name: one defined in a notebook's `__main__` cannot
run there (put it in a module beside the notebook).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from pathlib import Path

import pandas as pd

from bench import plugins
from bench.errors import BenchError
from bench.gym.problem import Budget, Problem
from bench.gym.registry import load_task, resolve_tasks
from bench.gym.suites import load_suite
from bench.gym.task import Oracle
from bench.methods import resolve_methods, using
from bench.metrics import episodes_frame
from bench.metrics import leaderboard as board_of
from bench.runner import run_suite
from bench.store import Store

log = logging.getLogger(__name__)
MethodRef = str | type


def run(task: str | Iterable[str], methods: MethodRef | Iterable[MethodRef] = "all", suite: str = "quick",
        out: str | Path = "runs", *, budget: float | None = None, seeds: int | None = None,
        experiments: Iterable[str] | None = None, jobs: int = 1, executor: str = "local",
        scheduler: str | None = None, methods_file: str | Path | None = None,
        method_params: Mapping | str | None = None, retry_failed: bool = False,
        quiet: bool = True) -> pd.DataFrame:
    """Run the episodes of `suite` (a name or a .yaml path) for these tasks (names, spec paths or
    `all`) and methods into `out`, as `bench run` does (completed episodes are skipped: resume),
    and return the episodes frame (`bench.metrics.episodes_frame`) of this run's tasks, methods,
    suite, budgets and seeds, the ones done before included. `budget`/`seeds`/`experiments`
    override the suite's; `jobs`, `executor`, `scheduler`, `methods_file` and `method_params` are
    `bench run`'s options of those names.
    Failed episodes are scored (column `failed`) and logged, not raised; a user error is a
    `BenchError`."""
    listed = [methods] if isinstance(methods, str | type) else list(methods)
    method_arg = ",".join(_method_name(m) for m in listed)
    task_arg = task if isinstance(task, str) else ",".join(task)
    with using(methods_file, method_params, method_arg):
        s = load_suite(suite).overridden(budget=budget, seeds=seeds,
                                          experiments=None if experiments is None else list(experiments))
        plugins.configure_run({"llm_cache": None})
        refs, names = resolve_tasks(task_arg), resolve_methods(method_arg)
        store = Store(Path(out))
        store.check_writable()
        _, writer = run_suite(s, refs, names, store, jobs=jobs, executor=executor, scheduler=scheduler,
                              limit=s.episode_timeout, retry_failed=retry_failed, quiet=quiet,
                              planned=_log_skipped)
    if writer.failures:
        log.warning("%d episode(s) failed (scored as failures; tracebacks in %s/**/*.error.txt)",
                    len(writer.failures), out)
    ep = episodes_frame(store.summaries())
    seeds_max = max([s.seeds, *s.seeds_by_family.values()])
    keep = (ep.suite.isin([r.name for r in s.per_gap()]) & ep.task.isin([load_task(r).name for r in refs])
            & ep.method.isin(names) & ep.budget.isin(s.budgets) & (ep.seed < seeds_max))
    if isinstance(s.experiments, list):
        keep &= ep.experiment.isin(s.experiments)
    return ep[keep].reset_index(drop=True)


def leaderboard(runs: str | Path | pd.DataFrame = "runs", metric: str = "pregret",
                suite: str | None = None) -> pd.DataFrame:
    """The leaderboard frame `bench leaderboard` prints and writes (one row per suite, task, budget
    and method), of a results directory or of an episodes frame (`run`'s); `suite`: only these
    suites (comma-separated)."""
    from bench.report import pick_suites

    given = isinstance(runs, pd.DataFrame)
    ep = runs if given else episodes_frame(Store(Path(runs)).summaries())
    if ep.empty:
        raise BenchError(f"no completed episodes in {'the frame' if given else runs}; run some first")
    if suite:
        ep = ep[ep.suite.isin(pick_suites(ep, suite))]
    return board_of(ep, metric)


def make_problem(task: str, experiment: str, budget: float | None = None, suite: str = "paper",
                 seed: int = 0) -> tuple[Problem, Oracle]:
    """One episode by hand: what an optimizer sees of `experiment` under `suite`'s protocol (its
    prior; its cv fold's task under `cv`) with `budget` (default the suite's first) and episode
    `seed`, and the oracle that answers its queries.

        problem, oracle = make_problem("data_mixture", "pile_cc", budget=5)
        trace = bench.loop.run(MyOpt(problem, seed=0), oracle, problem)   # ask/check/tell
        pregret, nregret, regret = oracle.scorer.point(trace.best)
    """
    s = load_suite(suite)
    t = load_task(task)
    t.experiment(experiment)  # a clear error for an unknown name
    protocol = s.protocol(t.name)
    t = protocol.task_for(t, experiment)
    b = Budget(s.budget, s.budgets[0] if budget is None else budget)
    return t.problem(experiment, b, protocol.prior, seed=seed), t.oracle(experiment, seed=seed)


def _log_skipped(p) -> None:
    for line in p.skipped:
        log.warning("skipped %s", line)


def _method_name(m: MethodRef) -> str:
    """A method as `--method` names it; an Optimizer class as `module:Class`."""
    if isinstance(m, str):
        return m
    if m.__module__ == "__main__" or "<locals>" in m.__qualname__:
        raise BenchError(f"{m.__qualname__} is defined in __main__ or a function: worker processes import "
                         "methods by name; define it in a module and pass it (or 'module:Class')")
    return f"{m.__module__}:{m.__qualname__}"
