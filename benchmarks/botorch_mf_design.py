"""Design choices of `botorch-mf`'s multi-fidelity GP, measured on TRAIN experiments only.

    BENCH_DATA_MIRROR=/work/shared/data python benchmarks/botorch_mf_design.py     # ~4 min on 2 CPUs
    python benchmarks/botorch_mf_design.py --experiments 99 --seeds 0 1 --variants \
        product/normal/uniform product/robust/uniform                                # every train experiment

Per (task, train experiment, seed) each variant is fitted on the experiment's prior (its
cheaper-fidelity runs, `task.problem(exp, Budget("trials", 3)).prior`) and scored at the target
fidelity by (a) the Spearman correlation of its posterior mean with the true target outcomes and
(b) the nregret of its posterior-mean argmax over the target candidates (botorch-mf's first trial),
(value - optimum) / |median - optimum| in the objective's direction. The table shows the mean over
experiments and seeds per task, and the mean over tasks. To stay CPU-cheap it reads a seeded
subsample of `--experiments` train experiments per task (default 4; grpo has 2) and seed 0 only.
Every outcome lookup is asserted to be of a train experiment (`train_only`).

A variant is "kernel/scores/subset"; the default list changes one choice of the production model
(`MultiFidelityModel`: product/normal/uniform) at a time:
- kernel: `product` a_i a_j k_x(x, x') k_s(s_i, s_j); `drift` a_i a_j (k_x(x, x') + s_i s_j
  k_x2(x, x')), a deviation that grows linearly along s and is extrapolated to the target; `joint`
  the product + a_i a_j c RBF-ARD([x, s], [x', s']), level-specific deviations decaying along s;
  `ar` Kennedy & O'Hagan co-kriging f_i = rho_i f_(i-1) + delta_i, fitted jointly as one GP.
- scores: per-level normal scores (`normal`), per-level mean/std standardisation (`std`), or
  per-level median/MAD standardisation through bilog sign(z) log(1 + |z|) (`robust`).
- subset (the points the hyperparameters are fitted on): a uniform draw (`uniform`), an equal quota
  per level (`balanced`), or the best 10% of each level forced in before the uniform draw (`best`).
"""

from __future__ import annotations

import argparse
import time

import gpytorch
import numpy as np
import torch
from botorch.models.utils.gpytorch_modules import get_covar_module_with_dim_scaled_prior
from rich.console import Console
from rich.table import Table
from scipy.stats import spearmanr

from baselines.botorch_gp.models import (
    FidelityFeatures,
    LevelScaleKernel,
    MultiFidelityModel,
    fit_subset,
)
from bench.gym.problem import Budget
from bench.gym.registry import load_task
from bench.gym.task import Task
from bench.numerics import normal_scores_by_level, torch_threads

TASKS = ("data_mixture", "pretrain_hparams", "architecture", "grpo")
BEST_SHARE = 0.1


def product_kernel(model: MultiFidelityModel, d: int) -> gpytorch.kernels.Kernel:
    return MultiFidelityModel.covar_module(model, d)


def _config_kernel(d: int) -> gpytorch.kernels.Kernel:
    return get_covar_module_with_dim_scaled_prior(ard_num_dims=d, active_dims=list(range(d)))


def drift_kernel(model: MultiFidelityModel, d: int) -> gpytorch.kernels.Kernel:
    """f(x, i) = a_i (g(x) + s_i h(x)): a deviation growing linearly along s (extrapolated)."""
    drift = _config_kernel(d) * gpytorch.kernels.LinearKernel(active_dims=[d])
    return (_config_kernel(d) + drift) * LevelScaleKernel(model.features.n_levels, d + 1)


def joint_kernel(model: MultiFidelityModel, d: int) -> gpytorch.kernels.Kernel:
    """The product kernel + a_i a_j c * RBF-ARD([x, s], [x', s']): deviations that decay along s."""
    joint = gpytorch.kernels.ScaleKernel(
        get_covar_module_with_dim_scaled_prior(ard_num_dims=d + 1, active_dims=list(range(d + 1))))
    return product_kernel(model, d) + joint * LevelScaleKernel(model.features.n_levels, d + 1)


class AutoregressiveKernel(gpytorch.kernels.Kernel):
    """Co-kriging (Kennedy & O'Hagan 2000) as one GP: f_0 = delta_0, f_i = rho_i f_(i-1) + delta_i,
    so k((x, i), (x', j)) = sum_(l <= min(i, j)) w_il w_jl k_l(x, x'), w_il = rho_(l+1) ... rho_i."""

    def __init__(self, d: int, n_levels: int):
        super().__init__()
        self.d, self.n_levels = d, n_levels
        self.deltas = torch.nn.ModuleList(
            gpytorch.kernels.ScaleKernel(get_covar_module_with_dim_scaled_prior(ard_num_dims=d))
            for _ in range(n_levels))
        self.register_parameter("rho", torch.nn.Parameter(torch.ones(n_levels, dtype=torch.float64)))

    def weights(self) -> torch.Tensor:
        zero = torch.zeros((), dtype=self.rho.dtype)
        return torch.stack([torch.stack([torch.prod(self.rho[lv + 1:i + 1]) if lv <= i else zero
                                         for lv in range(self.n_levels)]) for i in range(self.n_levels)])

    def forward(self, x1, x2, diag: bool = False, **params):
        w = self.weights()
        w1, w2 = (w[(x[..., self.d + 1] * max(self.n_levels - 1, 1)).round().long()] for x in (x1, x2))
        a, b = x1[..., : self.d], x2[..., : self.d]
        if diag:
            return sum(w1[..., lv] * w2[..., lv] * k(a, b, diag=True) for lv, k in enumerate(self.deltas))
        return sum(w1[..., lv].unsqueeze(-1) * w2[..., lv].unsqueeze(-2) * k(a, b).to_dense()
                   for lv, k in enumerate(self.deltas))


def ar_kernel(model: MultiFidelityModel, d: int) -> gpytorch.kernels.Kernel:
    return AutoregressiveKernel(d, model.features.n_levels)


def _per_level(y: np.ndarray, levels: np.ndarray, scale) -> np.ndarray:
    out = np.zeros(len(y))
    for lv in np.unique(levels):
        mask = levels == lv
        out[mask] = scale(y[mask])
    return out


def _standardise(y: np.ndarray) -> np.ndarray:
    sd = y.std()
    return (y - y.mean()) / (sd if sd > 0 else 1.0)


def _robust(y: np.ndarray) -> np.ndarray:
    """(y - median) / (1.4826 MAD), then bilog sign(z) log(1 + |z|) (BoTorch's `Bilog`)."""
    mad = 1.4826 * np.median(np.abs(y - np.median(y)))
    z = (y - np.median(y)) / mad if mad > 0 else _standardise(y)
    return np.sign(z) * np.log1p(np.abs(z))


SCORES = {
    "normal": normal_scores_by_level,
    "std": lambda y, levels: _per_level(y, levels, _standardise),
    "robust": lambda y, levels: _per_level(y, levels, _robust),
}


def balanced_subset(model, levels: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """An equal quota per level; a level with fewer rows leaves the rest of its quota to the others."""
    if len(levels) <= n:
        return np.arange(len(levels))
    groups = sorted((rng.permutation(np.flatnonzero(levels == lv)) for lv in np.unique(levels)), key=len)
    taken, left = [], n
    for k, rows in enumerate(groups):
        taken.append(rows[: min(len(rows), left // (len(groups) - k))])
        left -= len(taken[-1])
    return np.sort(np.concatenate(taken))


def best_subset(model, levels: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """The best BEST_SHARE of each level forced in, then a uniform draw of the rest."""
    if len(levels) <= n:
        return np.arange(len(levels))
    y = model.scored
    assert len(y) == len(levels), "best_subset needs every row's score (the prior fits max_points)"
    forced = np.concatenate([rows[np.argsort(-y[rows])][: max(1, int(BEST_SHARE * len(rows)))]
                             for rows in (np.flatnonzero(levels == lv) for lv in np.unique(levels))])[:n]
    rest = np.setdiff1d(np.arange(len(levels)), forced)
    return np.sort(np.concatenate([forced, rng.choice(rest, size=n - len(forced), replace=False)]))


KERNELS = {"product": product_kernel, "drift": drift_kernel, "joint": joint_kernel, "ar": ar_kernel}
SUBSETS = {
    "uniform": lambda model, levels, n, rng: fit_subset(levels, model.features.target_level, n, rng),
    "balanced": balanced_subset,
    "best": best_subset,
}
PRODUCTION = ("product", "normal", "uniform")  # what `MultiFidelityModel` does
VARIANTS = [  # one choice changed at a time
    "/".join(PRODUCTION),
    *(f"{k}/normal/uniform" for k in KERNELS if k != "product"),
    *(f"product/{s}/uniform" for s in SCORES if s != "normal"),
    *(f"product/normal/{s}" for s in SUBSETS if s != "uniform"),
]


def variant(name: str) -> type[MultiFidelityModel]:
    """The model class for "kernel/scores/subset"."""
    kernel, scores, subset = name.split("/")

    class Variant(MultiFidelityModel):
        def covar_module(self, d: int) -> gpytorch.kernels.Kernel:
            return KERNELS[kernel](self, d)

        def scores(self, y: np.ndarray, levels: np.ndarray) -> np.ndarray:
            self.scored = SCORES[scores](y, levels)  # kept for `best_subset`
            return self.scored

        def subset(self, levels: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
            return SUBSETS[subset](self, levels, n, rng)

    return Variant


def train_only(task: Task) -> Task:
    """`task` with every outcome lookup asserted to be of a train experiment (the problem's prior,
    candidate pools and the scoring all go through `Task.outcomes`)."""
    lookup = task.outcomes
    test = set(task.split("test"))

    def outcomes(experiment: str, fidelity: str):
        assert experiment not in test, f"{task.name}: test experiment {experiment} touched"
        return lookup(experiment, fidelity)

    task.outcomes = outcomes
    return task


def train_experiments(task: Task, n: int) -> list[str]:
    """A seeded subsample of at most `n` train experiments."""
    names = task.split("train")
    return sorted(np.random.default_rng(0).choice(names, size=min(n, len(names)), replace=False).tolist())


def score(task: Task, experiment: str, model_cls: type[MultiFidelityModel], seed: int) -> tuple[float, float]:
    """(Spearman of the posterior mean with the target outcomes, nregret of its argmax)."""
    assert task.experiment(experiment).split == "train", f"{experiment} is not a train experiment"
    problem = task.problem(experiment, Budget("trials", 3))
    features = FidelityFeatures(problem)
    gp = model_cls(features).fit(problem.prior, problem.objective.sign, np.random.default_rng(seed), seed)
    truth = task.outcomes(experiment, problem.target)
    with torch.no_grad():
        mean = gp.posterior(features(truth, [problem.target] * len(truth))).mean.squeeze(-1).numpy()
    values, sign = truth["value"].to_numpy(float), problem.objective.sign
    optimum = problem.objective.best(values)
    nregret = sign * (values[int(np.argmax(mean))] - optimum) / abs(np.median(values) - optimum)
    return float(spearmanr(mean, -sign * values).statistic), float(nregret)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tasks", nargs="+", default=list(TASKS))
    parser.add_argument("--variants", nargs="+", default=VARIANTS, help="kernel/scores/subset names")
    parser.add_argument("--experiments", type=int, default=4, help="train experiments per task (subsample)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    args = parser.parse_args(argv)
    for name in args.variants:
        kernel, scores, subset = (name.split("/") + ["?"] * 3)[:3]
        if kernel not in KERNELS or scores not in SCORES or subset not in SUBSETS:
            parser.error(f"{name}: want kernel/scores/subset, of {'|'.join(KERNELS)}/{'|'.join(SCORES)}/"
                         f"{'|'.join(SUBSETS)}")
    console = Console(width=160)
    results: dict[tuple[str, str], list[tuple[float, float]]] = {}
    t0 = time.perf_counter()
    with torch_threads(1):
        for name in args.tasks:
            task = train_only(load_task(name))
            experiments = train_experiments(task, args.experiments)
            console.log(f"{name}: {', '.join(experiments)}")
            for label in args.variants:
                cls = variant(label)
                results[(name, label)] = [score(task, e, cls, s) for e in experiments for s in args.seeds]
                console.log(f"  {label}: {time.perf_counter() - t0:.0f}s")
    console.print(_table(results, args.tasks, args.variants))
    return 0


def _table(results, tasks: list[str], variants: list[str]) -> Table:
    table = Table(title="botorch-mf design, train experiments: Spearman / nregret of the posterior mean")
    table.add_column("variant")
    for name in [*tasks, "mean"]:
        table.add_column(name, justify="right")
    for label in variants:
        cells = [np.mean(results[(t, label)], axis=0) for t in tasks]
        cells.append(np.mean(cells, axis=0))
        table.add_row(label, *(f"{rho:.2f} / {nr:.2f}" for rho, nr in cells))
    return table


if __name__ == "__main__":
    raise SystemExit(main())
