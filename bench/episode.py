"""The episode loop: one optimizer, one experiment, one seed, one budget."""

from __future__ import annotations

import random
import sys
import time

import numpy as np

from bench.gym.problem import Query
from bench.gym.task import PriorPolicy, Task
from bench.methods import MethodSpec
from bench.store import EpisodeKey, Store

MAX_QUERIES_PER_TRIAL = 20  # guard against a method that never spends its budget


class MethodError(RuntimeError):
    """An optimizer broke the contract (bad query); the episode is abandoned, others go on."""


def seed_everything(seed: int) -> None:
    """Seed the global generators some libraries use behind our back."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    if "torch" in sys.modules:
        sys.modules["torch"].manual_seed(seed)


def _check(query: Query, params: list[str], fidelities: set[str], method: str) -> None:
    if not isinstance(query, Query):
        raise MethodError(f"{method}.ask() returned {type(query).__name__}, not a Query")
    if query.fidelity not in fidelities:
        raise MethodError(f"{method} asked for unknown fidelity {query.fidelity!r}")
    missing = [p for p in params if p not in query.config]
    if missing:
        raise MethodError(f"{method} asked a configuration without {missing}")


def run_episode(key: EpisodeKey, task: Task, method: MethodSpec, store: Store,
                prior: PriorPolicy = "cheaper") -> dict:
    """Run to the end of the budget, logging every trial; write the completion marker."""
    budget = key.budget_obj
    problem = task.problem(key.experiment, budget, prior)
    oracle = task.oracle(key.experiment)
    objective, target = task.objective, problem.target
    cls = method.load_class()
    seed_everything(key.seed)
    t0 = time.perf_counter()
    optimizer = cls(problem, key.seed, **method.params)
    setup_s = time.perf_counter() - t0

    costs = {f.name: f.cost for f in problem.fidelities}
    cap = budget.amount * (costs[target] if budget.kind == "cost" else 1.0)
    max_queries = int(MAX_QUERIES_PER_TRIAL * max(budget.amount, 1))
    if budget.kind == "cost" and min(costs.values()) > 0:  # every query spends: cheap ones may be many
        max_queries = max(max_queries, int(cap / min(costs.values())) + 2)
    log = store.open_log(key)
    spent, trials, best, curve, ask_total = 0.0, 0, None, [], 0.0
    try:
        for _ in range(max_queries):
            if budget.kind == "trials" and trials >= budget.amount:
                break
            t0 = time.perf_counter()
            query = optimizer.ask()
            ask_s = time.perf_counter() - t0
            _check(query, problem.params, set(costs), method.name)
            if budget.kind == "cost" and spent + costs[query.fidelity] > cap * (1 + 1e-9):
                break  # the query does not fit what is left of the budget
            outcome = oracle.evaluate(query)
            optimizer.tell(query, outcome)
            trials, spent, ask_total = trials + 1, spent + outcome.cost, ask_total + ask_s
            if outcome.fidelity == target and (best is None or objective.is_better(outcome.value, best)):
                best = outcome.value
            if outcome.fidelity == target:
                curve.append(best)
            log.append({
                "t": trials, "fidelity": outcome.fidelity, "asked": query.config,
                "config": outcome.config, "snapped": outcome.snapped,
                "distance": outcome.distance, "value": outcome.value, "cost": outcome.cost,
                "gpu_hours": spent, "best_target": best, "ask_seconds": ask_s,
            })
        else:
            raise MethodError(f"{method.name} did not spend its budget of {budget}")
    finally:
        log.close()

    try:
        rec = oracle.evaluate(Query(optimizer.recommend(), target))
        rec_value, rec_config = rec.value, rec.config
    except RuntimeError:  # nothing seen at the target
        rec_value, rec_config = None, None
    optimum, median = oracle.optimum(), oracle.median()
    summary = {
        "trials": trials, "target_trials": len(curve), "gpu_hours": spent,
        "best": best, "curve": curve, "recommend": rec_config, "recommend_value": rec_value,
        "optimum": optimum, "median": median, "direction": objective.direction,
        "simulated": task.simulated, "ask_seconds": ask_total, "setup_seconds": setup_s,
    }
    store.complete(key, summary)
    return summary
