"""Random search over the table: uniform draws from the untried target candidates."""

from __future__ import annotations

from bench.gym.problem import Query
from bench.optimizer import Optimizer


class RandomSearch(Optimizer):
    def ask(self) -> Query:
        return self.query(self.random_candidate())
