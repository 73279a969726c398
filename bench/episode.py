"""The episode loop: one optimizer, one experiment, one seed, one budget.

Budgets. Trial budgets allow `amount` queries at the target fidelity (the cheaper runs are the
prior); cost budgets allow queries at any fidelity while their GPU-hours fit what is left. A query
that does not fit (`Optimizer.affordable()`) is refused: not run, not charged, not told. The
episode ends when the budget is spent, when nothing fits any more, or after `MAX_REFUSALS`
refused queries in a row.

Failures are scores. An episode whose optimizer raises, breaks the contract, or ends with nothing
to score (no target observation on a trial budget; `NoRecommendation` on a cost budget) is
completed with `failed` set to the reason, and scored as the worst target candidate (`bench.scores`).
Only `NoRecommendation` is caught around `recommend()`; any other error is a failure, except
a `BenchError` (the user's environment: a missing API key, a network that stays down), which
stops the run and leaves the episode to be rerun.

What an optimizer attaches to a query (`Query.info`) is logged with its trial; token and dollar
counts in it are summed into the summary (`tokens_in`, `tokens_out`, `dollars`, `fallbacks`).
"""

from __future__ import annotations

import random
import sys
import time
import traceback
from collections import Counter

import numpy as np

from bench.errors import BenchError
from bench.gym.problem import Query
from bench.gym.task import Prior, PriorPolicy, Task, method_seed
from bench.methods import MethodSpec
from bench.optimizer import NoRecommendation
from bench.store import EpisodeKey, Store

MAX_QUERIES_PER_TRIAL = 20  # guard against a method that never spends its budget
MAX_REFUSALS = 3  # refused queries in a row that end an episode


class MethodError(RuntimeError):
    """An optimizer broke the contract (bad query); the episode is scored as failed."""


def seed_everything(seed: int) -> None:
    """Seed the global generators some libraries use behind our back."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    if "torch" in sys.modules:
        sys.modules["torch"].manual_seed(seed)


def check_query(query: Query, problem, method: str) -> None:
    """`MethodError` unless `query` is a Query the harness can run in `problem`."""
    if not isinstance(query, Query):
        raise MethodError(f"{method}.ask() returned {type(query).__name__}, not a Query")
    if query.fidelity not in {f.name for f in problem.fidelities}:
        raise MethodError(f"{method} asked for unknown fidelity {query.fidelity!r}")
    if query.fidelity not in problem.pools:  # a rung the suite withholds: refused, like any unaffordable one
        return
    if query.candidate is not None:
        n = len(problem.arrays(query.fidelity))
        if not isinstance(query.candidate, int | np.integer) or not 0 <= query.candidate < n:
            raise MethodError(f"{method} asked for candidate {query.candidate!r} of {n} at {query.fidelity}")
        return
    missing = [p for p in problem.params if p not in query.config]
    if missing:
        raise MethodError(f"{method} asked a configuration without {missing}")


def run_episode(key: EpisodeKey, task: Task, method: MethodSpec, store: Store,
                prior: PriorPolicy = "cheaper") -> dict:
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


def play_episode(key: EpisodeKey, task: Task, method: MethodSpec, log,
                 prior: PriorPolicy = "cheaper") -> tuple[dict, str | None]:
    """Run to the end of the budget, passing every trial record to `log.append` as it happens.

    Returns the summary and the traceback of a failure (or None); `summary["failed"]` is None or
    the reason; `extrapolation` is log10(target cost / cost of the most expensive fidelity in
    the prior); `gap` the prior's extrapolation distance g, `fold` the cv fold the method's
    training held the experiment out of (None: the fixed split). Writes nothing itself: workers
    send the records to the client (`bench.workers`).
    """
    budget = key.budget_obj
    problem = task.problem(key.experiment, budget, prior, seed=key.seed)
    oracle = task.oracle(key.experiment, seed=key.seed)
    objective, target = task.objective, problem.target
    costs = {f.name: f.cost for f in problem.fidelities}
    seed = method_seed(key.seed)  # not the episode seed: that one drives the shuffles
    seed_everything(seed)
    state = {"trials": 0, "spent": 0.0, "best": None, "best_diverged": False, "curve": [],
             "ask_seconds": 0.0, "refused": 0, "setup_seconds": 0.0}
    failed, error, rec_config, rec_value, rec_diverged = None, None, None, None, False
    try:
        t0 = time.perf_counter()
        optimizer = method.make(problem, seed, task)
        state["setup_seconds"] = time.perf_counter() - t0
        _loop(optimizer, oracle, problem, costs, method.name, log, state)
        try:
            rec = oracle.evaluate(Query(optimizer.recommend(), target))
            rec_config, rec_value, rec_diverged = rec.config, rec.value, rec.diverged
        except NoRecommendation:
            pass
        score = state["best"] if budget.kind == "trials" else rec_value
        if budget.kind == "cost":
            state["best_diverged"] = rec_value is not None and rec_diverged
        if score is None:
            failed = "no target observation" if budget.kind == "trials" else "no recommendation"
    except BenchError:  # the user's environment (a missing key, a network down): stop, score nothing
        raise
    except Exception as exc:  # a broken episode is a scored failure; the others go on
        failed, error = f"{type(exc).__name__}: {exc}", traceback.format_exc()
    prior_levels = Counter(problem.prior["fidelity"].tolist())
    prior_cost = sum(costs[f] * n for f, n in prior_levels.items())
    summary = {
        "prior_runs": len(problem.prior), "prior_worth": prior_cost / costs[target],
        "extrapolation": float(np.log10(costs[target] / max(costs[f] for f in prior_levels)))
        if len(prior_levels) else None,
        "gap": Prior.of(prior).gap, "fold": task.fold or None,
        "trials": state["trials"], "target_trials": len(state["curve"]), "gpu_hours": state["spent"],
        "budget_gpu_hours": problem.budget_gpu_hours(), "refused": state["refused"],
        "best": state["best"], "curve": state["curve"], "recommend": rec_config,
        "recommend_value": rec_value, "failed": failed, "pool_size": len(problem.arrays()),
        "direction": objective.direction, "simulated": task.simulated,
        "scores": _scores(oracle, key, rec_value if budget.kind == "cost" else state["best"],
                          state["curve"], failed, state["best_diverged"]),
        "ask_seconds": state["ask_seconds"], "setup_seconds": state["setup_seconds"],
        **{k: state[k] for k in (*USAGE, "fallbacks") if k in state},
    }
    return summary, error


def _scores(oracle, key, final, curve, failed, diverged) -> dict:
    """The episode's scores (`bench.scores`); a trial budget's anytime curve covers its budget."""
    length = int(round(key.budget)) if key.budget_kind == "trials" else None
    return oracle.scorer.episode(final, curve, failed is not None, diverged, length)


def failure_summary(key: EpisodeKey, task: Task, prior: PriorPolicy, reason: str) -> dict:
    """The summary of an episode that produced nothing to score (stopped at its time limit, or
    its worker died twice): scored as a failure, like any other."""
    problem = task.problem(key.experiment, key.budget_obj, prior, seed=key.seed)
    oracle = task.oracle(key.experiment, seed=key.seed)
    return {"prior_runs": len(problem.prior), "prior_worth": None, "extrapolation": None,
            "gap": Prior.of(prior).gap, "fold": task.fold or None, "trials": 0,
            "target_trials": 0, "gpu_hours": 0.0, "budget_gpu_hours": problem.budget_gpu_hours(),
            "refused": 0, "best": None, "curve": [], "recommend": None, "recommend_value": None,
            "failed": reason, "pool_size": len(problem.arrays()),
            "direction": task.objective.direction, "simulated": task.simulated, "ask_seconds": 0.0,
            "setup_seconds": 0.0, "scores": _scores(oracle, key, None, [], reason, False)}


class _NoLog:
    def append(self, record: dict) -> None:
        pass


def play(optimizer, oracle, problem) -> float | None:
    """An episode in memory, nothing logged (training, validation): the best target value, or
    None without one. Errors propagate."""
    state = {"trials": 0, "spent": 0.0, "best": None, "curve": [], "ask_seconds": 0.0, "refused": 0,
             "best_diverged": False}
    costs = {f.name: f.cost for f in problem.fidelities}
    _loop(optimizer, oracle, problem, costs, type(optimizer).__name__, _NoLog(), state)
    return state["best"]


def _loop(optimizer, oracle, problem, costs, name, log, state) -> None:
    budget, target, objective = problem.budget, problem.target, problem.objective
    max_queries = int(MAX_QUERIES_PER_TRIAL * max(budget.amount, 1))
    if budget.kind == "cost" and min(costs.values()) > 0:  # every query spends: cheap ones may be many
        max_queries = max(max_queries, int(problem.budget_gpu_hours() / min(costs.values())) + 2)
    refused_in_a_row = 0
    while (affordable := problem.affordable(state["spent"], state["trials"])) \
            and refused_in_a_row < MAX_REFUSALS:
        if state["trials"] >= max_queries:
            raise MethodError(f"{name} did not spend its budget of {budget} in {max_queries} queries")
        t0 = time.perf_counter()
        query = optimizer.ask()
        ask_s = time.perf_counter() - t0
        state["ask_seconds"] += ask_s
        check_query(query, problem, name)
        _count_usage(state, query.info)
        if query.fidelity not in affordable:
            state["refused"] += 1
            refused_in_a_row += 1
            continue
        refused_in_a_row = 0
        outcome = oracle.evaluate(query)
        optimizer.tell(query, outcome)
        state["trials"] += 1
        state["spent"] += outcome.cost
        if outcome.fidelity == target:
            if state["best"] is None or objective.is_better(outcome.value, state["best"]):
                state["best"], state["best_diverged"] = outcome.value, outcome.diverged
            state["curve"].append(state["best"])
        log.append({
            "t": state["trials"], "fidelity": outcome.fidelity, "asked": query.config,
            "config": outcome.config, "snapped": outcome.snapped,
            "distance": outcome.distance, "value": outcome.value, "cost": outcome.cost,
            **({"diverged": True} if outcome.diverged else {}),
            "gpu_hours": state["spent"], "best_target": state["best"], "ask_seconds": ask_s,
            **({"info": dict(query.info)} if query.info else {}),
        })


USAGE = ("tokens_in", "tokens_out", "dollars")  # summed over an episode's asks (LLM agents)


def _count_usage(state: dict, info) -> None:
    """Token and dollar counts of every ask, refused ones included; a fallback is counted."""
    if not info:
        return
    for k in USAGE:
        if k in info:
            v = info[k]
            state[k] = None if v is None or state.get(k, 0) is None else state.get(k, 0) + v
    state["fallbacks"] = state.get("fallbacks", 0) + bool(info.get("fallback"))
