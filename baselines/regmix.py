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
        self._fitted: tuple[int, lgb.LGBMRegressor | None] | None = None  # (len(history), model)

    def _features(self, configs: pd.DataFrame, fidelities) -> np.ndarray:
        desc = self._desc.loc[list(fidelities)].to_numpy(float)
        return np.hstack([encode(self.problem.space, configs), desc])

    def _model(self) -> lgb.LGBMRegressor | None:
        """The regressor of `objective.sign * value` on the prior and the target runs told so far
        (None with fewer than two rows); refitted only when the history grew."""
        if self._fitted is None or self._fitted[0] != len(self.history):
            seen = self.observations().assign(fidelity=self.problem.target)
            train = pd.concat([self.problem.prior, seen], ignore_index=True)
            model = None
            if len(train) >= 2:
                model = lgb.LGBMRegressor(**self.params)
                model.fit(self._features(train, train["fidelity"]),
                          self.problem.objective.sign * train["value"].to_numpy(float))
            self._fitted = (len(self.history), model)
        return self._fitted[1]

    def ask(self) -> Query:
        model = self._model()
        if model is None:  # nothing to learn from: first candidate at random
            return self.query(self.random_candidate())
        pool = self.pool()
        pred = model.predict(self._features(pool, [self.problem.target] * len(pool)))
        return self.query(config_at(pool, int(np.argmin(pred))))

    def predict(self, ids):
        """LightGBM's prediction at target candidates `ids`; no uncertainty (std NaN)."""
        model = self._model()
        if model is None:
            return None
        configs = self.problem.arrays().configs.iloc[np.asarray(ids)]
        mean = self.problem.objective.sign * model.predict(
            self._features(configs, [self.problem.target] * len(configs)))
        return mean, np.full(len(mean), np.nan)
