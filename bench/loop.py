"""The ask/check/tell loop: one optimizer, one problem, under the gym's episode rules
(`bench.gym.rules`). The harness's episodes (`bench.episode`), meta-training and validation,
`bench suggest`, and the teachers of the learned methods all run their optimizers through `run`.

What an optimizer attaches to a query (`Query.info`) is passed on with its trial; token and dollar
counts in it are summed (`Trace.usage`), refused asks included, and fallbacks counted.
"""

from __future__ import annotations

import random
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from bench.gym import rules
from bench.gym.problem import Outcome, Problem, Query
from bench.optimizer import Optimizer

USAGE = ("tokens_in", "tokens_out", "dollars")  # summed over an episode's asks (LLM agents)


def seed_everything(seed: int) -> None:
    """Seed the global generators some libraries use behind our back."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    if "torch" in sys.modules:
        sys.modules["torch"].manual_seed(seed)


@dataclass
class Trace:
    """What a loop has run so far: every outcome in order, the budget spent, the best target
    value (and whether that run diverged; the first of equal values counts) and its curve (the
    best after each target run)."""

    outcomes: list[Outcome] = field(default_factory=list)
    spent: float = 0.0
    refused: int = 0
    best: float | None = None
    best_diverged: bool = False
    curve: list[float] = field(default_factory=list)
    ask_seconds: float = 0.0
    usage: dict[str, float | None] = field(default_factory=dict)  # `USAGE` keys seen, and fallbacks

    @property
    def trials(self) -> int:
        return len(self.outcomes)

    def record(self, outcome: Outcome, problem: Problem) -> None:
        """Count a run."""
        self.outcomes.append(outcome)
        self.spent += outcome.cost
        if outcome.fidelity == problem.target:
            if self.best is None or problem.objective.is_better(outcome.value, self.best):
                self.best, self.best_diverged = outcome.value, outcome.diverged
            self.curve.append(self.best)

    def count_usage(self, info) -> None:
        """Token and dollar counts of an ask (None once any ask did not know them); fallbacks."""
        if not info:
            return
        for k in USAGE:
            if k in info:
                v, total = info[k], self.usage.get(k, 0)
                self.usage[k] = None if v is None or total is None else total + v
        self.usage["fallbacks"] = self.usage.get("fallbacks", 0) + bool(info.get("fallback"))


OnTrial = Callable[[Trace, Query, Outcome, float], None]  # (trace, query, outcome, ask seconds)


def run(optimizer: Optimizer, oracle, problem: Problem, name: str | None = None,
        on_trial: OnTrial | None = None, trace: Trace | None = None) -> Trace:
    """Ask, check, run and tell until the budget is spent, nothing fits, or `MAX_REFUSALS` asks in a
    row are refused; `on_trial` hears of every run after the optimizer was told. A query the rules
    reject raises `MethodError`; so does an optimizer that does not spend its budget in
    `query_limit` queries. Errors propagate; `trace` (filled in place) keeps what ran before one."""
    name = name or type(optimizer).__name__
    trace = trace if trace is not None else Trace()
    costs = [f.cost for f in problem.fidelities]
    limit = rules.query_limit(problem.budget, costs)
    refused_in_a_row = 0
    while (affordable := rules.affordable(problem, trace.spent, trace.trials)) \
            and refused_in_a_row < rules.MAX_REFUSALS:
        if trace.trials >= limit:
            raise rules.MethodError(f"{name} did not spend its budget of {problem.budget} in {limit} queries")
        t0 = time.perf_counter()
        query = optimizer.ask()
        ask_seconds = time.perf_counter() - t0
        trace.ask_seconds += ask_seconds
        rules.check_query(query, problem, name)
        trace.count_usage(query.info)
        if query.fidelity not in affordable:
            trace.refused += 1
            refused_in_a_row += 1
            continue
        refused_in_a_row = 0
        outcome = oracle.evaluate(query)
        optimizer.tell(query, outcome)
        trace.record(outcome, problem)
        if on_trial is not None:
            on_trial(trace, query, outcome, ask_seconds)
    return trace


def play(optimizer: Optimizer, oracle, problem: Problem) -> float | None:
    """An episode in memory, nothing logged (training, validation): the best target value, or
    None without one. Errors propagate."""
    return run(optimizer, oracle, problem).best
