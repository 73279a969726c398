"""Asking a method for advice: a fresh optimizer told the target runs so far, then asked for n
suggestions without outcomes (each marked pending), under the episode rules (`bench.gym.rules`).
Not an episode: nothing is run, so it is its own loop rather than `bench.loop.run`."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import numpy as np

from bench.gym import rules
from bench.gym.problem import Outcome, Problem, Query
from bench.gym.task import Task, method_seed
from bench.loop import seed_everything
from bench.methods import MethodSpec
from bench.optimizer import Optimizer
from bench.suggest.pool import Setup
from bench.training import checkpoint_for


@dataclasses.dataclass(frozen=True)
class Suggestion:
    rank: int
    candidate: int  # id in the problem's target pool
    config: dict[str, Any]
    mean: float | None = None  # the method's prediction (objective units), if it predicts
    std: float | None = None
    rationale: str | None = None


@dataclasses.dataclass
class Advice:
    method: str
    suggestions: list[Suggestion]
    queries: list[Query]  # as asked (the first is what an episode would run next)
    note: str = ""


class NoTargetProposal(rules.MethodError):
    """`MAX_REFUSALS` asks in a row at other fidelities: an episode would end here."""


def _ask_target(optimizer: Optimizer, problem: Problem, name: str) -> Query:
    """The next target query; queries at other fidelities are refused, as in an episode."""
    for _ in range(rules.MAX_REFUSALS):
        query = optimizer.ask()
        rules.check_query(query, problem, name)
        if query.fidelity == problem.target:
            return query
    raise NoTargetProposal(f"{name} proposed no target-fidelity run in {rules.MAX_REFUSALS} asks")


def run_outcome(problem: Problem, query: Query, candidate: int, value: float) -> Outcome:
    """What the table would tell for `query` had it run `candidate` (snapped if they differ)."""
    pool = problem.arrays()
    asked = pool.x[query.candidate] if query.candidate is not None else problem.encoder.one(query.config)
    distance = float(np.linalg.norm(asked - pool.x[candidate]))
    return Outcome(value, problem.fidelities[-1].cost, dict(pool.records[candidate]), problem.target,
                   distance > rules.SNAP_TOLERANCE, distance, candidate)


def advise(spec: MethodSpec, problem: Problem, seed: int, task: Task,
           outcome_for: Callable[[int, Query], Outcome], runs: int, n: int) -> Advice:
    """A fresh optimizer of `spec` (as an episode makes it, seeded `method_seed(seed)`) told `runs`
    target runs through ask/tell (`outcome_for(k, query)` answers the k-th ask), then asked for `n`
    suggestions."""
    seed = method_seed(seed)
    seed_everything(seed)
    optimizer = spec.make(problem, seed, checkpoint_for(spec, task) if spec.learned else None)
    for k in range(runs):
        query = _ask_target(optimizer, problem, spec.name)
        optimizer.tell(query, outcome_for(k, query))
    pool = problem.arrays()
    queries: list[Query] = []
    chosen: list[int] = []
    note = ""
    while len(chosen) < n:
        try:
            query = _ask_target(optimizer, problem, spec.name)
        except NoTargetProposal:
            if not chosen:
                raise
            note = f"gives {len(chosen)} suggestion(s), then none at the target"
            break
        candidate = rules.snap(query, pool.x, problem.encoder)[0]
        if candidate in chosen:
            note = f"gives {len(chosen)} distinct suggestion(s) until it is told an outcome"
            break
        queries.append(query)
        chosen.append(candidate)
        optimizer.mark_pending(candidate)  # no outcome is told
    predicted = optimizer.predict(np.array(chosen))
    if predicted is not None and not _is_prediction(predicted, len(chosen)):
        note = "; ".join([*filter(None, [note]), "its predict() does not return (mean, std): not shown"])
        predicted = None
    suggestions = [
        Suggestion(rank + 1, c, dict(pool.records[c]),
                   None if predicted is None else float(predicted[0][rank]),
                   None if predicted is None or np.isnan(predicted[1][rank]) else float(predicted[1][rank]),
                   q.info.get("rationale"))
        for rank, (c, q) in enumerate(zip(chosen, queries, strict=True))]
    return Advice(spec.name, suggestions, queries, note)


def _is_prediction(predicted, n: int) -> bool:
    """Does a `predict` result follow the hook's contract: (mean, std), one value per id?"""
    return (isinstance(predicted, tuple) and len(predicted) == 2
            and all(np.shape(a) == (n,) for a in predicted))


def suggest(spec: MethodSpec, setup: Setup, seed: int, task: Task, n: int) -> Advice:
    """`n` suggestions of `spec` at the setup's target, after the user's observed runs."""
    problem = setup.problem

    def outcome_for(k: int, query: Query) -> Outcome:
        return run_outcome(problem, query, *setup.observed[k])

    return advise(spec, problem, seed, task, outcome_for, len(setup.observed), n)


def cannot_advise(spec: MethodSpec, task: Task) -> str | None:
    """Why `spec` cannot advise on `task` here (None when it can)."""
    missing = spec.missing()
    if missing:
        return "; ".join(missing)
    return spec.untrainable(task)
