"""The OptFormer optimizer: meta-training, and OptFormer-EI over the target pool."""

from __future__ import annotations

import numpy as np
import torch

from baselines.optformer.model import score_candidates
from baselines.optformer.tokens import FeatureScaler, Serialiser, bin_centres, maximised, prior_context
from baselines.optformer.training import (
    Settings,
    build_model,
    context_size,
    fit_scaler,
    generate,
    train_model,
)
from bench.gym.problem import Outcome, Problem, Query
from bench.numerics import seeded_torch, torch_threads
from bench.optimizer import LearnedOptimizer


def expected_improvement(probs: np.ndarray, threshold: float) -> np.ndarray:
    """sum_b p(b) max(0, v_b - threshold) over the bin centres v_b."""
    return probs @ np.maximum(bin_centres(probs.shape[1]) - threshold, 0.0)


class OptFormer(LearnedOptimizer):
    """OptFormer-EI over the target pool with a behaviour-cloned trial transformer (`baselines.optformer`)."""

    VERSION = 1

    @classmethod
    def meta_train(cls, data, seed: int, progress, **params) -> dict:
        s = Settings.of(params)
        rng = np.random.default_rng(seed)
        scaler = fit_scaler(data)
        width = data.task.encoder.width
        config = {"q": s.q, "width": width, "n_fid": len(scaler.mean), "max_trials": s.max_trials,
                  "d_model": s.d_model, "layers": s.layers, "heads": s.heads, "basis": s.coord_basis}
        ser = Serialiser(s.q, width, config["n_fid"], s.max_trials)
        with torch_threads(1), seeded_torch(seed):
            runs = generate(data, s, width, scaler, rng, progress)
            model = build_model(config, s.dropout)
            losses = train_model(model, runs, ser, s, rng, progress)
        return {"model": {k: v.detach().clone() for k, v in model.state_dict().items()}, "config": config,
                "scaler_mean": torch.as_tensor(scaler.mean), "scaler_scale": torch.as_tensor(scaler.scale),
                "losses": losses}

    def __init__(self, problem: Problem, seed: int, *, checkpoint, **params):
        super().__init__(problem, seed, checkpoint=checkpoint)
        self.settings = Settings.of(params)
        state = checkpoint.state
        config = state["config"]
        self.model = build_model(config)
        self.model.load_state_dict(state["model"])
        self.model.eval()
        self.ser = Serialiser(config["q"], config["width"], config["n_fid"], config["max_trials"])
        scaler = FeatureScaler(state["scaler_mean"].numpy(), state["scaler_scale"].numpy())
        features = scaler(problem)
        self.target_features = features[-1]
        self.context = prior_context(problem, features, context_size(self.settings, config["width"]),
                                     self.settings.min_per_fidelity, self.settings.context_top_share)

    def target_trials(self) -> list[Outcome]:
        return [o for _, o in self.history if o.fidelity == self.problem.target and o.candidate is not None]

    def bin_probabilities(self, candidate_ids: np.ndarray) -> np.ndarray:
        """Outcome-bin probabilities (n, Q) of target candidates `candidate_ids` after the history."""
        obs = self.target_trials()
        pool_x = self.problem.arrays().x
        tried = np.array([o.candidate for o in obs], int)
        scores = maximised(self.problem, [o.value for o in obs])
        prefix = self.ser.episode(self.context, pool_x[tried], self.target_features, scores)
        cands = self.ser.candidates(pool_x[candidate_ids], self.target_features, len(obs) + 1)
        with torch_threads(1), torch.no_grad():
            return score_candidates(self.model, prefix, cands).double().numpy()

    def acquisition(self) -> tuple[np.ndarray, np.ndarray]:
        """(untried ids, their EI over the best tried candidate's expected pool quantile), from one
        batched pass over the untried and the tried candidates."""
        ids = self.pool_ids()
        tried = np.unique([o.candidate for o in self.target_trials()]).astype(int)
        probs = self.bin_probabilities(np.concatenate([ids, tried]))
        expected = probs @ bin_centres(probs.shape[1])
        best = float(expected[len(ids):].max()) if len(tried) else -np.inf
        return ids, expected_improvement(probs[:len(ids)], max(self.settings.ei_floor, best))

    def ask(self) -> Query:
        ids, ei = self.acquisition()
        return self.query_candidate(int(ids[int(np.argmax(ei))]))
