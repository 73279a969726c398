"""OptFormer's teachers and their recorded runs: a teacher (`TEACHERS`, `CheapGPEI` among them)
plays an episode through the harness's loop, and the run is kept as arrays (`TeacherRun`)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
from scipy.stats import norm

from baselines.optformer.tokens import Context, FeatureScaler, maximised, prior_context, quantiles
from bench import loop
from bench.gym.problem import Budget, Problem, Query
from bench.optimizer import Optimizer

TEACHERS = ("best-prior", "extrapolate", "random", "cheap-gp-ei")


class CheapGPEI(Optimizer):
    """Teacher: a fixed-hyperparameter GP over the unit cube on the most expensive prior fidelity's
    runs (normal scores, a subset) and the target trials, correlated `rho` across the two; EI over
    the best target trial (UCB before any), among the untried target candidates. NumPy, no fitting."""

    def __init__(self, problem: Problem, seed: int, rho: float = 0.7, max_prior: int = 48):
        super().__init__(problem, seed)
        x, levels, values = problem.prior_arrays
        self.pool_x = problem.arrays().x
        d = np.linalg.norm(self.pool_x[:, None] - self.pool_x[None], axis=-1)
        self.lengthscale = 0.5 * float(np.median(d[d > 0])) if (d > 0).any() else 1.0
        self.rho = rho
        if len(levels):
            rows = np.flatnonzero(levels == levels.max())
            rows = self.rng.permutation(rows)[:max_prior]
            self.prior_x = x[rows]
            self.prior_y = norm.ppf(quantiles(maximised(problem, values[rows])))
        else:
            self.prior_x, self.prior_y = np.zeros((0, self.pool_x.shape[1])), np.zeros(0)

    def _kernel(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return np.exp(-0.5 * ((a[:, None] - b[None]) ** 2).sum(-1) / self.lengthscale ** 2)

    def ask(self) -> Query:
        ids = self.pool_ids()
        obs = [(o.candidate, o.value) for _, o in self.history if o.fidelity == self.problem.target]
        tx = self.pool_x[[c for c, _ in obs]] if obs else np.zeros((0, self.pool_x.shape[1]))
        ty = norm.ppf(quantiles(maximised(self.problem, [v for _, v in obs]))) if len(obs) > 1 \
            else np.zeros(len(obs))
        xs = np.vstack([self.prior_x, tx])
        y = np.concatenate([self.prior_y, ty])
        if not len(y):
            return self.query_candidate(int(ids[int(self.rng.integers(len(ids)))]))
        target = np.r_[np.zeros(len(self.prior_y), bool), np.ones(len(ty), bool)]
        scale = np.where(target[:, None] == target[None], 1.0, self.rho)
        noise = np.where(target, 1e-2, 0.2)
        k = self._kernel(xs, xs) * scale + np.diag(noise)
        ks = self._kernel(self.pool_x[ids], xs) * np.where(target, 1.0, self.rho)[None]
        alpha = np.linalg.solve(k, y)
        mean = ks @ alpha
        sd = np.sqrt(np.maximum(1.0 - np.einsum("ij,ji->i", ks, np.linalg.solve(k, ks.T)), 1e-9))
        if len(ty):
            z = (mean - ty.max()) / sd
            acq = sd * (z * norm.cdf(z) + norm.pdf(z))
        else:
            acq = mean + sd
        return self.query_candidate(int(ids[int(np.argmax(acq))]))


@dataclass
class TeacherRun:
    """A teacher's recorded run as raw arrays: the context, its target trials, the target pool."""

    context: Context
    tried: np.ndarray  # (k,) pool ids of the target trials, in order
    tried_scores: np.ndarray  # (k,) their outcomes, to maximise
    pool_x: np.ndarray  # (pool, d) target candidates
    pool_quantile: np.ndarray  # (pool,) every target candidate's outcome quantile in the pool
    target_feat: np.ndarray  # (n_fid,) target fidelity features
    mixture: np.ndarray  # exchangeable columns (`mixture_columns`)

    def length(self, width: int) -> int:
        return 1 + (len(self.context.x) + len(self.tried)) * (width + 2)


def mixture_columns(problem: Problem) -> np.ndarray:
    """Encoder columns of mixture weights: linear floats within [0, 1] that sum to 1 in every
    target candidate. They are exchangeable, so permuting them makes new training studies."""
    cols, names, k = [], [], 0
    for name, kind, args in problem.encoder.parts:
        if kind == "linear" and args[0] >= 0 and args[1] <= 1:
            cols.append(k)
            names.append(name)
        k += len(args[0]) if kind == "categorical" else 1
    if len(names) < 2:
        return np.zeros(0, int)
    sums = problem.candidates()[names].to_numpy(float).sum(axis=1)
    return np.array(cols) if np.all(np.abs(sums - 1) <= 0.01) else np.zeros(0, int)


def teacher(name: str, problem: Problem, seed: int) -> Optimizer:
    if name == "cheap-gp-ei":
        return CheapGPEI(problem, seed)
    from bench.methods import methods

    return methods()[name].make(problem, seed)


def play_teacher(name: str, problem: Problem, oracle, steps: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Candidate ids and values of the teacher's target trials, in order: its episode run through
    the harness's loop (`bench.loop.run`) on `problem` with a budget of `steps` trials."""
    problem = dataclasses.replace(problem, budget=Budget("trials", steps))
    trace = loop.run(teacher(name, problem, seed), oracle, problem, name)
    return (np.array([o.candidate for o in trace.outcomes], int),
            np.array([o.value for o in trace.outcomes], float))


def pool_scores(problem: Problem, oracle) -> np.ndarray:
    """The target outcomes (to maximise) in the episode's candidate order: training only, on fit
    experiments, for the outcome labels."""
    order = oracle.task.permutation(problem.experiment, problem.target, oracle.seed)
    return maximised(problem, oracle.target_values()[order])


def record_run(problem: Problem, oracle, scaler: FeatureScaler, teacher_name: str, seed: int,
               max_trials: int, context_trials: int, min_per_fidelity: int,
               top_share: float = 1.0) -> TeacherRun:
    """The context, then up to `max_trials - 1` target trials of the teacher."""
    features = scaler(problem)
    context = prior_context(problem, features, context_trials, min_per_fidelity, top_share)
    pool_x = problem.arrays().x
    steps = min(max_trials - 1, len(pool_x) - 1)
    ids, values = play_teacher(teacher_name, problem, oracle, steps, seed)
    return TeacherRun(context, ids, maximised(problem, values), pool_x,
                      quantiles(pool_scores(problem, oracle)), features[-1].astype(np.float32),
                      mixture_columns(problem))

