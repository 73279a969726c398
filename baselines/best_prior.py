"""Best-prior: transfer the ranking of cheap runs to the target.

Cheap runs are ranked best first, from the most expensive prior fidelity down (ties in the
value keep the prior's order, which the harness shuffles with the episode seed); each is mapped
to its nearest untried target candidate, in that order.
With no prior it falls back to random order.
"""

from __future__ import annotations

import pandas as pd

from bench.gym.problem import Query
from bench.gym.space import config_at
from bench.optimizer import Optimizer


class BestPrior(Optimizer):
    def __init__(self, problem, seed):
        super().__init__(problem, seed)
        prior = problem.prior
        order = [f.name for f in reversed(problem.fidelities[:-1])]
        ranked = [
            prior[prior.fidelity == f].sort_values(
                "value", ascending=problem.objective.direction == "minimize", kind="stable")
            for f in order
        ]
        self._queue = pd.concat(ranked, ignore_index=True) if ranked else prior
        self._next = 0

    def ask(self) -> Query:
        if self._next < len(self._queue):
            row = config_at(self._queue, self._next, self.problem.params)
            self._next += 1
            return self.query(self.nearest_untried(row))
        return self.query(self.random_candidate())
