"""Extrapolate: target candidates in order of unit-cube distance from the optimum the prior
extrapolates to (`bench.extrapolation`: a power law per dimension in the fidelity descriptors, as
Step Law fits learning rate and batch size), ties keeping the pool's order, shuffled per episode
seed.

Fitted on the prior only; target outcomes are never used. With an empty prior (suite `prior:
none`) it is random search.
"""

from __future__ import annotations

import numpy as np

from bench.extrapolation import TOP_K, extrapolated_optimum
from bench.gym.problem import Problem, Query
from bench.gym.space import config_at, encode
from bench.optimizer import Optimizer


class Extrapolate(Optimizer):
    """Target candidates in order of distance from the optimum extrapolated from the prior."""

    def __init__(self, problem: Problem, seed: int, top_k: int = TOP_K):
        super().__init__(problem, seed)
        self._pool = problem.candidates()
        self.predicted = extrapolated_optimum(problem, top_k)
        self._order = self._candidate_order() if self.predicted is not None else None
        self._next = 0

    def _candidate_order(self) -> np.ndarray:
        space = self.problem.space
        dist = np.linalg.norm(encode(space, self._pool) - encode(space, [self.predicted]), axis=1)
        return np.argsort(dist, kind="stable")

    def ask(self) -> Query:
        if self._order is None or self._next >= len(self._order):
            return self.query(self.random_candidate())
        i = int(self._order[self._next])
        self._next += 1
        return self.query(config_at(self._pool, i))
