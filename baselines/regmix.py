"""RegMix (Liu et al., arXiv:2407.01492): regression from configuration to outcome.

As in the paper, a LightGBM regressor (objective `regression`, learning rate 0.01, 1000 trees)
is fitted on the cheap runs; here the fidelity descriptors (log10) are extra features, so the
model pools every prior fidelity. It predicts every untried target candidate and proposes the
best prediction. Target outcomes are added to the training set as they arrive and the model is
refitted (`min_child_samples` is lowered so that a few target rows can form leaves). Works for
any task: configurations are featurised with the unit-cube encoding.
"""

from __future__ import annotations

import lightgbm as lgb
import numpy as np
import pandas as pd

from bench.gym.problem import Query
from bench.gym.space import config_at, encode
from bench.optimizer import Optimizer


class RegMix(Optimizer):
    def __init__(self, problem, seed, n_estimators: int = 1000, learning_rate: float = 0.01,
                 min_child_samples: int = 5):
        super().__init__(problem, seed)
        self.params = dict(n_estimators=n_estimators, learning_rate=learning_rate,
                           min_child_samples=min_child_samples, objective="regression",
                           random_state=seed, n_jobs=1, verbose=-1, deterministic=True,
                           force_row_wise=True)
        self._desc = np.log10(problem.descriptors().drop(columns="cost").clip(lower=1e-12))

    def _features(self, configs: pd.DataFrame, fidelities) -> np.ndarray:
        desc = self._desc.loc[list(fidelities)].to_numpy(float)
        return np.hstack([encode(self.problem.space, configs), desc])

    def ask(self) -> Query:
        pool = self.pool()
        target = self.problem.target
        seen = self.observations()
        train = pd.concat([self.problem.prior, seen.assign(fidelity=target)], ignore_index=True)
        if len(train) < 2:  # nothing to learn from: first candidate at random
            return self.query(self.random_candidate())
        model = lgb.LGBMRegressor(**self.params)
        model.fit(self._features(train, train["fidelity"]),
                  self.problem.objective.sign * train["value"].to_numpy(float))
        pred = model.predict(self._features(pool, [target] * len(pool)))
        return self.query(config_at(pool, int(np.argmin(pred))))
