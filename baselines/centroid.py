"""Centroid: the target candidates nearest the centroid of the target pool, nearest first.

It uses no outcome at all, only where the experimenters put their grid: the floor every method is
read against. Where a grid is centred on the expected optimum (Step Law's grids are) it is a hard
floor; a method that does not beat it has learnt nothing from the cheap runs that the pool's
geometry did not already say. Distances are Euclidean in the unit-cube encoding; candidates at
equal distance come in the pool's order, which the harness shuffles with the episode seed.
"""

from __future__ import annotations

import numpy as np

from bench.gym.problem import Query
from bench.gym.space import config_at, encode
from bench.optimizer import Optimizer


class Centroid(Optimizer):
    def __init__(self, problem, seed):
        super().__init__(problem, seed)
        self._pool = problem.candidates()
        x = encode(problem.space, self._pool)
        self._order = np.argsort(np.linalg.norm(x - x.mean(axis=0), axis=1), kind="stable")

    def ask(self) -> Query:
        i = int(self._order[min(len(self.history), len(self._order) - 1)])
        return self.query(config_at(self._pool, i))
