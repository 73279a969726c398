"""The `Optimizer` contract: ask/tell/recommend; the loop lives in the harness (`bench.episode`)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

import numpy as np
import pandas as pd

from bench.gym.problem import Outcome, Problem, Query
from bench.gym.space import Snapper, config_at


class NoRecommendation(Exception):
    """`recommend()` has nothing to recommend (e.g. no target-fidelity observation yet).

    The harness scores such an episode as a failure; it is the only exception it catches there.
    """


class Optimizer(ABC):
    """Proposes configurations for one `Problem`; every random choice flows from `seed`.

    Subclasses implement `ask`; `tell` records the history (call `super().tell`), and
    `recommend` defaults to the best configuration seen at the target fidelity.
    """

    def __init__(self, problem: Problem, seed: int):
        self.problem = problem
        self.seed = seed
        self.rng = np.random.default_rng(seed)
        self.history: list[tuple[Query, Outcome]] = []

    @abstractmethod
    def ask(self) -> Query: ...

    def tell(self, query: Query, outcome: Outcome) -> None:
        self.history.append((query, outcome))

    def recommend(self) -> dict[str, Any]:
        at_target = [o for _, o in self.history if o.fidelity == self.problem.target]
        if not at_target:
            raise NoRecommendation(f"{type(self).__name__} has no target-fidelity observation yet")
        best = min(at_target, key=lambda o: self.problem.objective.sign * o.value)
        return best.config

    # Budget ---------------------------------------------------------------------------------
    def spent(self) -> float:
        """GPU-hours spent so far in this episode (every evaluated query)."""
        return sum(o.cost for _, o in self.history)

    def remaining(self) -> float:
        """What is left of the budget: GPU-hours on cost budgets, trials on trial budgets."""
        return self.problem.remaining(self.spent(), len(self.history))

    def affordable(self) -> list[str]:
        """Fidelities the next query may use, cheapest first; the harness refuses any other."""
        return self.problem.affordable(self.spent(), len(self.history))

    # Helpers for pool-based methods --------------------------------------------------------
    def observations(self, fidelity: str | None = None) -> pd.DataFrame:
        """Evaluated (snapped) configurations and values at `fidelity` (default: the target)."""
        fidelity = fidelity or self.problem.target
        rows = [{**o.config, "value": o.value} for _, o in self.history if o.fidelity == fidelity]
        return pd.DataFrame(rows, columns=[*self.problem.params, "value"])

    def untried(self, fidelity: str | None = None) -> pd.DataFrame:
        """Candidates at `fidelity` (default: the target) not evaluated yet in this episode."""
        fidelity = fidelity or self.problem.target
        pool = self.problem.candidates(fidelity)
        seen = self.observations(fidelity)
        if seen.empty:
            return pool
        key = pool.columns.tolist()
        merged = pool.merge(seen[key].drop_duplicates(), on=key, how="left", indicator=True)
        return pool[(merged["_merge"] == "left_only").to_numpy()]

    def pool(self, fidelity: str | None = None) -> pd.DataFrame:
        """Untried candidates, or all of them once every one was tried (re-asks cost budget)."""
        pool = self.untried(fidelity)
        return pool if not pool.empty else self.problem.candidates(fidelity)

    def random_candidate(self, fidelity: str | None = None) -> dict:
        pool = self.pool(fidelity)
        return config_at(pool, int(self.rng.integers(len(pool))))

    def nearest_untried(self, config: dict, fidelity: str | None = None) -> dict:
        """The untried candidate nearest `config` (unit-cube distance) — for snapping proposals."""
        pool = self.pool(fidelity)
        i, _ = Snapper(self.problem.space, pool).nearest(config)
        return config_at(pool, i)

    def query(self, config: dict) -> Query:
        """A query at the target fidelity."""
        return Query(dict(config), self.problem.target)
