"""The episode rules, in one place: what a query may be, which candidate it runs, what fits the
budget and when an episode ends. The harness's loop (`bench.loop`), the Gymnasium env
(`bench.gym.env`, vectorised) and the oracle (`Oracle.evaluate`) all apply these functions.

Budgets. Trial budgets allow `amount` queries at the target fidelity; cost budgets allow queries
at any fidelity while their GPU-hours fit what is left (`fits`, with a relative slack of 1e-9 so
that a budget of exactly k runs buys k runs). A query that does not fit is refused: not run, not
charged, not told. An episode ends when the budget is spent, when nothing fits any more, or after
`MAX_REFUSALS` refused queries in a row; `query_limit` guards against a method that never spends.
"""

from __future__ import annotations

import numpy as np

from bench.gym.problem import Budget, Problem, Query
from bench.gym.space import Encoder, nearest

MAX_QUERIES_PER_TRIAL = 20  # guard against a method that never spends its budget
MAX_REFUSALS = 3  # refused queries in a row that end an episode
SNAP_TOLERANCE = 1e-9  # a query this close (unit-cube distance) to a candidate runs it unchanged


class MethodError(RuntimeError):
    """An optimizer broke the contract (a bad query); its episode is scored as failed."""


def fits(cost, left):
    """Does a run costing `cost` GPU-hours fit `left`? (numpy arrays broadcast)"""
    return cost <= left * (1 + 1e-9) + 1e-12


def trial_left(left):
    """Is a whole trial left of `left` trials? (numpy arrays broadcast)"""
    return left >= 1 - 1e-9


def affordable(problem: Problem, spent: float, trials: int) -> list[str]:
    """Fidelities a next query may use after `trials` queries costing `spent` GPU-hours
    (cheapest first). Trial budgets: the target, while a trial is left. Cost budgets: those whose
    cost fits what is left."""
    left = problem.remaining(spent, trials)
    if problem.budget.kind == "trials":
        return [problem.target] if trial_left(left) else []
    return [f.name for f in problem.fidelities if fits(f.cost, left)]


def horizon(budget: Budget, costs) -> int:
    """The most runs an episode can make: the trials, or the cheapest runs the GPU-hours buy
    (`costs`: GPU-hours per run of each fidelity, the target last)."""
    costs = np.asarray(costs, float)
    if budget.kind == "trials":
        return int(budget.amount)
    return int(budget.amount * costs[-1] / costs.min() + 1e-9)


def query_limit(budget: Budget, costs) -> int:
    """Queries after which an episode that has not spent its budget is a `MethodError`."""
    limit = int(MAX_QUERIES_PER_TRIAL * max(budget.amount, 1))
    costs = np.asarray(costs, float)
    if budget.kind == "cost" and costs.min() > 0:  # every query spends: cheap ones may be many
        limit = max(limit, int(budget.amount * costs[-1] / costs.min()) + 2)
    return limit


def check_query(query: Query, problem: Problem, method: str) -> None:
    """`MethodError` unless `query` is a Query the harness can run in `problem` (a query at a
    fidelity the episode is not given passes: it is refused, like an unaffordable one)."""
    if not isinstance(query, Query):
        raise MethodError(f"{method}.ask() returned {type(query).__name__}, not a Query")
    if query.fidelity not in {f.name for f in problem.fidelities}:
        raise MethodError(f"{method} asked for unknown fidelity {query.fidelity!r}")
    if query.fidelity not in problem.pools:
        return
    if query.candidate is not None:
        n = len(problem.arrays(query.fidelity))
        if not isinstance(query.candidate, int | np.integer) or not 0 <= query.candidate < n:
            raise MethodError(f"{method} asked for candidate {query.candidate!r} of {n} at {query.fidelity}")
        return
    missing = [p for p in problem.params if p not in query.config]
    if missing:
        raise MethodError(f"{method} asked a configuration without {missing}")


def snap(query: Query, x: np.ndarray, encoder: Encoder) -> tuple[int, float]:
    """The candidate a query runs among the pool encoded as `x` (the episode's order) and its
    distance: the id it names, else the nearest candidate (ties: the lowest id)."""
    if query.candidate is not None:
        i = int(query.candidate)
        if not 0 <= i < len(x):
            raise ValueError(f"candidate {i} is not in the pool of {len(x)} at {query.fidelity}")
        return i, 0.0
    return nearest(x, encoder.one(query.config))
