"""A user's optimizer, benchmarked with no edit to the package (README: "Writing an optimizer")."""

import numpy as np

from bench.optimizer import Optimizer


class TopKCentre(Optimizer):
    """The target candidates nearest the centre of the best `top_k` cheap runs at the most
    expensive prior fidelity; after the first target run, the ones nearest the best target run."""

    def __init__(self, problem, seed, top_k: int = 5):
        super().__init__(problem, seed)
        x, level, value = problem.prior_arrays  # unit-cube encodings, fidelity index, outcome
        top = level == level.max() if len(level) else np.zeros(0, bool)
        best_first = np.argsort(problem.objective.sign * value[top])
        self.centre = x[top][best_first[:top_k]].mean(axis=0) if top.any() else None

    def ask(self):
        ids = self.pool_ids()  # target candidates not tried yet
        seen = self.observations()  # target runs so far: config and value
        centre = self.centre
        if len(seen):
            best = seen.iloc[int(np.argmin(self.problem.objective.sign * seen["value"].to_numpy()))]
            centre = self.problem.encoder.one(best[self.problem.params].to_dict())
        if centre is None:  # no prior: a random candidate
            return self.query_candidate(ids[self.rng.integers(len(ids))])
        distance = ((self.problem.arrays().x[ids] - centre) ** 2).sum(axis=1)
        return self.query_candidate(ids[np.argmin(distance)])
