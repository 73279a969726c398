"""Random search over the table: uniform draws from the untried target candidates."""

from __future__ import annotations

from bench.gym.problem import Query
from bench.optimizer import Optimizer


class RandomSearch(Optimizer):
    def ask(self) -> Query:
        pool = self.untried()
        if pool.empty:  # every candidate tried: re-ask one (costs budget, same outcome)
            pool = self.problem.candidates()
        return self.query(pool.iloc[int(self.rng.integers(len(pool)))].to_dict())
