"""BoTorch optimizers over the table's candidate pools: `botorch-ei` and `botorch-mf`.

`BoTorchEI` (botorch-ei): BoTorch's default SingleTaskGP on the target observations only (the
prior is ignored by design: it is the classic single-fidelity BO baseline), LogExpectedImprovement
over the untried target candidates with optimize_acqf_discrete. The first `n_init` trials are
uniform draws from the untried target candidates, `initial_design_size(budget)` of them: BoTorch's
tutorials start from 2(d + 1) Sobol points, more than these budgets of 1-10 trials, so the design
is scaled down to a third of the budget, at least 1 and at most 2 (T = 1, 3, 5, 10 -> 1, 1, 1, 2).
A GP on a single point is well posed: BoTorch's Standardize centres it with unit scale, the mean is
flat, and LogEI takes the candidate farthest from it. (A Sobol design in the unit cube would have
to be snapped to the pool, which favours the pool's outlying members when, as with mixture weights
on a simplex, the pool does not fill the cube.)

`BoTorchMF` (botorch-mf): the multi-fidelity GP of `models.py` fitted on the prior's cheap runs
and every observation of the episode.
- Trial budgets: every query is at the target. The first is the posterior-mean argmax over the
  target candidates (with no incumbent, the expected improvement of f is E[f]); later ones
  maximise LogEI over the untried target candidates, with best_f the highest posterior mean among
  the target configurations already run (a plug-in incumbent that ignores observation noise).
- Cost budgets: it chooses fidelities among `affordable()` ones only (the harness refuses a query
  that does not fit). Each round refits the GP and picks (candidate, fidelity) pairs by knowledge
  gradient per GPU-hour (`acquisition.py`): a target pair alone, or a greedy batch of cheap pairs
  costing up to 1/`rounds` of the budget (at most `max_batch` pairs), which bounds the number of
  refits per episode whatever the cost ratio. With no data at all it starts with uniform draws at
  the cheapest fidelity (d + 1 of them, at most `init_share` of the budget). `recommend()` is the
  posterior-mean argmax over all target candidates, so it may be a configuration never run (with a
  single cheap run: the target candidate nearest it; with no data: `NoRecommendation`).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import torch

from baselines.botorch_gp.acquisition import kg_per_cost_batch, pick_log_ei
from baselines.botorch_gp.models import (
    DTYPE,
    FidelityFeatures,
    MultiFidelityModel,
    fit_target_gp,
)
from bench.gym.problem import Query
from bench.gym.space import Snapper, config_at, encode
from bench.numerics import normal_scores_by_level, torch_threads
from bench.optimizer import NoRecommendation, Optimizer

SEED_STRIDE = 100_003  # fit number n of seed s uses torch seed s * SEED_STRIDE + n


def initial_design_size(budget: float) -> int:
    """Uniform draws before the first GP fit: a third of the budget, at least 1, at most 2."""
    return max(1, min(2, int(budget) // 3))


def _moments(posterior) -> tuple[np.ndarray, np.ndarray]:
    """Mean and standard deviation of a single-output posterior, as arrays."""
    return (posterior.mean.squeeze(-1).detach().numpy(),
            posterior.variance.squeeze(-1).clamp_min(0).sqrt().detach().numpy())


class BoTorchEI(Optimizer):
    def __init__(self, problem, seed, n_init: int | None = None, threads: int = 1):
        super().__init__(problem, seed)
        self.n_init = initial_design_size(problem.budget.amount) if n_init is None else max(n_init, 1)
        self.threads = threads
        self._fitted: tuple[int, tuple[Any, float] | None] | None = None  # (len(history), model)

    def ask(self) -> Query:
        with torch_threads(self.threads):
            return self._ask()

    def _ask(self) -> Query:
        pool = self.pool()
        x_pool = torch.as_tensor(encode(self.problem.space, pool), dtype=DTYPE)
        fitted = self._model() if x_pool.shape[1] else None
        if fitted is None:
            return self.query(self.random_candidate())
        model, best_f = fitted
        return self.query(config_at(pool, pick_log_ei(model, x_pool, best_f)))

    def _model(self) -> tuple[Any, float] | None:
        """The GP on the target observations and its incumbent (to maximise), once the initial
        design is done; refitted only when the history grew (the fit is seeded by its length)."""
        if self._fitted is None or self._fitted[0] != len(self.history):
            seen = self.observations().drop_duplicates()
            fitted = None
            if len(seen) >= self.n_init:
                x = torch.as_tensor(encode(self.problem.space, seen), dtype=DTYPE)
                y = torch.as_tensor(-self.problem.objective.sign * seen["value"].to_numpy(float), dtype=DTYPE)
                fitted = (fit_target_gp(x, y, self.seed * SEED_STRIDE + len(self.history)), float(y.max()))
            self._fitted = (len(self.history), fitted)
        return self._fitted[1]

    def predict(self, ids):
        """The GP's predictive distribution of a run's outcome (observation noise included) at
        target candidates `ids`, once the model is fitted."""
        fitted = self._model()
        if fitted is None or self.problem.arrays().x.shape[1] == 0:
            return None
        x = torch.as_tensor(self.problem.arrays().x[ids], dtype=DTYPE)
        with torch_threads(self.threads), torch.no_grad():
            mean, std = _moments(fitted[0].posterior(x, observation_noise=True))
        return -self.problem.objective.sign * mean, std


class BoTorchMF(Optimizer):
    def __init__(self, problem, seed, fit_points: int = 300, max_points: int = 2000, maxiter: int = 100,
                 refit_maxiter: int = 20, rounds: int = 10, max_batch: int = 100, init_share: float = 0.1,
                 max_pairs: int = 3000, threads: int = 1):
        super().__init__(problem, seed)
        self.threads = threads
        self.features = FidelityFeatures(problem)
        self.model = MultiFidelityModel(self.features, fit_points, max_points, maxiter, refit_maxiter)
        self.costs = {f.name: f.cost for f in problem.fidelities}
        self.by_cost = problem.budget.kind == "cost"
        self.cap = problem.budget_gpu_hours()
        self.rounds, self.max_batch = rounds, max_batch
        self.init_share, self.max_pairs = init_share, max_pairs
        self._queue: list[Query] = []
        self._fitted: tuple[int, Any] | None = None  # (len(history) at fit time, model)

    # Data and model ----------------------------------------------------------------------------
    def _data(self) -> pd.DataFrame:
        cols = ["fidelity", *self.problem.params, "value"]
        seen = [{"fidelity": o.fidelity, **o.config, "value": o.value} for _, o in self.history]
        frames = [f for f in (self.problem.prior[cols], pd.DataFrame(seen, columns=cols)) if not f.empty]
        return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=cols)

    def _fit(self):
        if self._fitted is None or self._fitted[0] != len(self.history):
            model = self.model.fit(self._data(), self.problem.objective.sign, self.rng,
                                   self.seed * SEED_STRIDE + len(self.history))
            self._fitted = (len(self.history), model)
        return self._fitted[1]

    def _target_mean(self, model, configs: pd.DataFrame) -> torch.Tensor:
        x = self.features(configs, [self.problem.target] * len(configs))
        with torch.no_grad():
            return model.posterior(x).mean.squeeze(-1)

    def _random(self, pool: pd.DataFrame, fidelity: str) -> Query:
        return Query(config_at(pool, int(self.rng.integers(len(pool)))), fidelity)

    # Asking and recommending -----------------------------------------------------------------
    def ask(self) -> Query:
        with torch_threads(self.threads):
            return self._ask_by_cost() if self.by_cost else self._ask_at_target()

    def recommend(self) -> dict[str, Any]:
        if not self.by_cost:
            return super().recommend()
        data, pool = self._data(), self.problem.candidates()
        if data.empty:
            raise NoRecommendation("BoTorchMF has no observation to model")
        if len(data) == 1 and data["fidelity"].iat[0] == self.problem.target:
            return super().recommend()
        if len(data) == 1:  # nothing to model: the target candidate nearest the one cheap run
            return config_at(pool, Snapper(self.problem.space, pool).nearest(data.iloc[0].to_dict())[0])
        with torch_threads(self.threads):
            return config_at(pool, int(torch.argmax(self._target_mean(self._fit(), pool))))

    def predict(self, ids):
        """The GP's predictive distribution of a run's outcome (observation noise included) at
        target candidates `ids`, in the objective's units: the GP models per-level normal scores,
        mapped back by the least-squares line value ~ score through the target runs told so far
        (None before two distinct target values)."""
        data = self._data().drop_duplicates()
        target = data[data["fidelity"] == self.problem.target]
        values = target["value"].to_numpy(float)
        if len(data) < 2 or len(np.unique(values)) < 2:
            return None
        y = -self.problem.objective.sign * values
        slope, intercept = np.polyfit(normal_scores_by_level(y, np.zeros(len(y), int)), values, 1)
        configs = self.problem.arrays().configs.iloc[np.asarray(ids)]
        with torch_threads(self.threads), torch.no_grad():
            x = self.features(configs, [self.problem.target] * len(configs))
            mean, std = _moments(self._fit().posterior(x, observation_noise=True))
        return intercept + slope * mean, abs(slope) * std

    def _ask_at_target(self) -> Query:
        pool = self.pool()
        if len(self._data()) < 2:
            return self._random(pool, self.problem.target)
        model = self._fit()
        seen = self.observations().drop_duplicates()
        if seen.empty:  # no incumbent: the improvement is f itself, and E[f] is the posterior mean
            return self.query(config_at(pool, int(torch.argmax(self._target_mean(model, pool)))))
        best_f = float(self._target_mean(model, seen).max())
        x = self.features(pool, [self.problem.target] * len(pool))
        return self.query(config_at(pool, pick_log_ei(model, x, best_f)))

    # Cost budgets: KG per GPU-hour over (candidate, fidelity) pairs ---------------------------
    def _ask_by_cost(self) -> Query:
        affordable = self.affordable()  # the harness asks only while one fits
        self._queue = [q for q in self._queue if q.fidelity in affordable]
        if self._queue:
            return self._queue.pop(0)
        left = self.remaining() * (1 + 1e-9)
        if len(self._data()) < 2:
            self._queue = self._initial_design(affordable[0], left)
            return self._queue.pop(0)
        pairs = self._pairs(affordable)
        chosen = self._kg_batch(pairs, left) if not pairs.empty else []
        if not chosen:  # everything affordable was run: a re-run (costs, same outcome)
            return self._rerun(affordable)
        params = self.problem.params
        self._queue = [Query(config_at(pairs, j, params), pairs["fidelity"].iat[j]) for j in chosen]
        return self._queue.pop(0)

    def _kg_batch(self, pairs: pd.DataFrame, left: float) -> list[int]:
        model = self._fit()
        targets = self.problem.candidates()
        x = torch.cat([self.features(pairs, pairs["fidelity"]),
                       self.features(targets, [self.problem.target] * len(targets))])
        with torch.no_grad():
            posterior = model.posterior(x)
            mean, cov = posterior.mean.squeeze(-1), posterior.mvn.covariance_matrix
        costs = torch.tensor(pairs["fidelity"].map(self.costs).to_numpy(float), dtype=DTYPE)
        is_target = torch.tensor((pairs["fidelity"] == self.problem.target).to_numpy())
        noise = float(model.likelihood.noise.item())
        return kg_per_cost_batch(mean, cov, len(pairs), costs, is_target, noise, left,
                                 self.cap / self.rounds, self.max_batch)

    def _rerun(self, affordable: list[str]) -> Query:
        if self.problem.target in affordable:
            return self.query(self.recommend())
        return self._random(self.problem.candidates(affordable[0]), affordable[0])

    def _initial_design(self, fidelity: str, left: float) -> list[Query]:
        pool = self.pool(fidelity)
        cost = self.costs[fidelity]
        n = min(len(self.features.space) + 1, int(self.init_share * self.cap / cost))
        n = min(max(n, 2), int(left / cost), len(pool))
        picks = self.rng.choice(len(pool), size=max(n, 1), replace=False)
        return [Query(config_at(pool, int(i)), fidelity) for i in picks]

    def _pairs(self, fidelities: list[str]) -> pd.DataFrame:
        """Untried (configuration, fidelity) pairs, in a seeded random order (ties in KG)."""
        pairs = pd.concat([self.untried(f).assign(fidelity=f) for f in fidelities], ignore_index=True)
        return pairs.iloc[self.rng.permutation(len(pairs))[: self.max_pairs]].reset_index(drop=True)
