"""A scripted optimizer for tests: asks the given learning rates, in order."""

from bench.gym.problem import Query
from bench.optimizer import Optimizer


class Scripted(Optimizer):
    def __init__(self, problem, seed, lrs=()):
        super().__init__(problem, seed)
        self.lrs = list(lrs)

    def ask(self) -> Query:
        return self.query({"lr": self.lrs[len(self.history)]})
