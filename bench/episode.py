"""A benchmark episode: one method, one experiment, one seed, one budget, logged and scored.

The loop and its rules are `bench.loop` and `bench.gym.rules`. A learned method gets the
checkpoint its task's train experiments give (`bench.training.checkpoint_for`).

Failures are scores. An episode whose optimizer raises, breaks the contract, or ends with nothing
to score (no target observation on a trial budget; `NoRecommendation` on a cost budget) is
completed with `failed` set to the reason, and scored as the worst target candidate (`bench.scores`).
Only `NoRecommendation` is caught around `recommend()`; any other error is a failure, except
a `BenchError` (the user's environment: a missing API key, a network that stays down), which
stops the run and leaves the episode to be rerun.

NumPy's and SciPy's BLAS run with one thread during an episode (`one_blas_thread`): the matrices
here are small, a thread per core only spins (smac-bb, an episode of T = 10 on data_mixture on
a busy 2-core machine: 54.6 CPU-s with two threads, 20.1 with one, the same asks), and an
episode's numbers no longer depend on the machine's core count. Torch's threads are the methods'
own (`bench.numerics.torch_threads`).
"""

from __future__ import annotations

import functools
import time
import traceback
from collections import Counter

import numpy as np
from threadpoolctl import ThreadpoolController

from bench.errors import BenchError
from bench.gym.problem import Outcome, Query
from bench.gym.task import Prior, PriorPolicy, Task, method_seed
from bench.loop import Trace, run, seed_everything
from bench.methods import MethodSpec
from bench.optimizer import NoRecommendation
from bench.store import EpisodeKey, Store
from bench.summary import EpisodeSummary
from bench.training import checkpoint_for


def run_episode(key: EpisodeKey, task: Task, method: MethodSpec, store: Store,
                prior: PriorPolicy = "cheaper") -> EpisodeSummary:
    """Run to the end of the budget in this process, logging every trial into `store`; write the
    completion marker (and the traceback of a failure). Returns the summary."""
    log = store.open_log(key)
    try:
        summary, error = play_episode(key, task, method, log, prior)
    finally:
        log.close()
    if error:
        store.error_file(key).write_text(error)
    store.complete(key, summary)
    return summary


@functools.cache
def _blas() -> ThreadpoolController:
    import scipy.linalg  # noqa: F401  SciPy's own OpenBLAS, loaded now so the controller finds it

    return ThreadpoolController()


def one_blas_thread():
    """A context in which NumPy's and SciPy's BLAS use one thread (see the module docstring)."""
    return _blas().limit(limits=1, user_api="blas")


def play_episode(key: EpisodeKey, task: Task, method: MethodSpec, log,
                 prior: PriorPolicy = "cheaper") -> tuple[EpisodeSummary, str | None]:
    """Run to the end of the budget, passing every trial record to `log.append` as it happens.
    Returns the summary and the traceback of a failure (or None). Writes nothing itself: workers
    send the records to the client (`bench.workers`)."""
    budget = key.budget_obj
    problem = task.problem(key.experiment, budget, prior, seed=key.seed)
    oracle = task.oracle(key.experiment, seed=key.seed)
    seed = method_seed(key.seed)  # not the episode seed: that one drives the shuffles
    seed_everything(seed)
    trace, setup_seconds = Trace(), 0.0
    failed, error, recommended = None, None, None

    def on_trial(trace: Trace, query: Query, outcome: Outcome, ask_seconds: float) -> None:
        log.append({
            "t": trace.trials, "fidelity": outcome.fidelity, "asked": query.config,
            "config": outcome.config, "snapped": outcome.snapped,
            "distance": outcome.distance, "value": outcome.value, "cost": outcome.cost,
            **({"diverged": True} if outcome.diverged else {}),
            "gpu_hours": trace.spent, "best_target": trace.best, "ask_seconds": ask_seconds,
            **({"info": dict(query.info)} if query.info else {}),
        })

    with one_blas_thread():
        try:
            t0 = time.perf_counter()
            checkpoint = checkpoint_for(method, task) if method.learned else None
            optimizer = method.make(problem, seed, checkpoint)
            setup_seconds = time.perf_counter() - t0
            run(optimizer, oracle, problem, method.name, on_trial, trace)
            try:
                recommended = oracle.evaluate(Query(optimizer.recommend(), problem.target))
            except NoRecommendation:
                pass
        except BenchError:  # the user's environment (a missing key, a network down): stop, score nothing
            raise
        except Exception as exc:  # a broken episode is a scored failure; the others go on
            failed, error = f"{type(exc).__name__}: {exc}", traceback.format_exc()
    if budget.kind == "trials":
        final, diverged = trace.best, trace.best_diverged
    else:
        final = None if recommended is None else recommended.value
        diverged = recommended is not None and recommended.diverged
    if failed is None and final is None:
        failed = "no target observation" if budget.kind == "trials" else "no recommendation"
    costs = {f.name: f.cost for f in problem.fidelities}
    prior_levels = Counter(problem.prior["fidelity"].tolist())
    summary = EpisodeSummary(
        scores=_scores(oracle, key, final, trace.curve, failed, diverged), failed=failed,
        best=trace.best, curve=trace.curve,
        recommend=None if recommended is None else recommended.config,
        recommend_value=None if recommended is None else recommended.value,
        trials=trace.trials, target_trials=len(trace.curve), refused=trace.refused,
        gpu_hours=trace.spent, budget_gpu_hours=problem.budget_gpu_hours(),
        pool_size=len(problem.arrays()), prior_runs=len(problem.prior),
        prior_worth=sum(costs[f] * n for f, n in prior_levels.items()) / costs[problem.target],
        extrapolation=float(np.log10(costs[problem.target] / max(costs[f] for f in prior_levels)))
        if prior_levels else None,
        gap=Prior.of(prior).gap, fold=task.fold or None, direction=task.objective.direction,
        simulated=task.simulated, ask_seconds=trace.ask_seconds, setup_seconds=setup_seconds,
        usage=trace.usage)
    return summary, error


def _scores(oracle, key: EpisodeKey, final, curve, failed, diverged) -> dict:
    """The episode's scores (`bench.scores`); a trial budget's anytime curve covers its budget."""
    length = int(round(key.budget)) if key.budget_kind == "trials" else None
    return oracle.scorer.episode(final, curve, failed is not None, diverged, length)


def failure_summary(key: EpisodeKey, task: Task, prior: PriorPolicy, reason: str) -> EpisodeSummary:
    """The summary of an episode that produced nothing to score (stopped at its time limit, or
    its worker died twice): scored as a failure, like any other."""
    problem = task.problem(key.experiment, key.budget_obj, prior, seed=key.seed)
    oracle = task.oracle(key.experiment, seed=key.seed)
    return EpisodeSummary(
        scores=_scores(oracle, key, None, [], reason, False), failed=reason,
        budget_gpu_hours=problem.budget_gpu_hours(), pool_size=len(problem.arrays()),
        prior_runs=len(problem.prior), gap=Prior.of(prior).gap, fold=task.fold or None,
        direction=task.objective.direction, simulated=task.simulated)
