"""Acquisition over candidate pools: LogEI for target trials, cost-aware knowledge gradient for budgets.

`pick_log_ei` scores a pool with BoTorch's LogExpectedImprovement through optimize_acqf_discrete.

`knowledge_gradient` is the discrete knowledge gradient (Frazier, Powell & Dayanik 2009): for an
observation at point p (any fidelity), the expected increase of the maximum posterior mean over the
target candidates. Observing y_p moves the target means linearly, mu_c + b_pc Z with
b_pc = Cov(f_c, f_p) / sqrt(Var f_p + noise) and Z ~ N(0, 1); the expectation of the maximum is
taken by Gauss-Hermite quadrature, so it is deterministic. Divided by a point's cost, it is the
cost-aware multi-fidelity acquisition (KG per GPU-hour, as in cfKG, Wu et al. 2019) evaluated on
discrete (candidate, fidelity) pairs, which suits pool-based tables better than BoTorch's
one-shot qMultiFidelityKnowledgeGradient over a continuous space.
"""

from __future__ import annotations

import numpy as np
import torch
from botorch.acquisition import LogExpectedImprovement
from botorch.models.model import Model
from botorch.optim import optimize_acqf_discrete

_NODES, _WEIGHTS = np.polynomial.hermite_e.hermegauss(64)
QUAD_NODES = torch.as_tensor(_NODES, dtype=torch.float64)
QUAD_WEIGHTS = torch.as_tensor(_WEIGHTS / _WEIGHTS.sum(), dtype=torch.float64)
CHUNK = 256  # pairs per block when evaluating the quadrature (bounds memory)


def pick_log_ei(model: Model, choices: torch.Tensor, best_f: float) -> int:
    """Row of `choices` (n x d) with the highest LogEI over `best_f` (ties: the first)."""
    acq = LogExpectedImprovement(model, best_f=best_f)
    best, _ = optimize_acqf_discrete(acq, q=1, choices=choices, unique=True)
    return int(torch.nonzero((choices == best).all(-1))[0, 0])


def knowledge_gradient(target_mean: torch.Tensor, cov_target_pairs: torch.Tensor,
                       pair_var: torch.Tensor, noise: float) -> torch.Tensor:
    """KG of one noisy observation at each pair.

    target_mean: (n_c,) posterior means of the target candidates; cov_target_pairs: (n_c, n_p)
    posterior covariances; pair_var: (n_p,) posterior variances of the pairs; noise: observation
    noise variance. Returns (n_p,) values >= 0 (up to quadrature error)."""
    slopes = cov_target_pairs / torch.sqrt(pair_var.clamp_min(0) + noise).unsqueeze(0)
    best_now = target_mean.max()
    out = []
    for start in range(0, slopes.shape[1], CHUNK):
        b = slopes[:, start:start + CHUNK]
        values = target_mean[:, None, None] + b[:, :, None] * QUAD_NODES  # n_c x chunk x nodes
        out.append(values.max(dim=0).values @ QUAD_WEIGHTS - best_now)
    return torch.cat(out) if out else torch.zeros(0, dtype=torch.float64)


def kg_per_cost_batch(mean: torch.Tensor, cov: torch.Tensor, n_pairs: int, costs: torch.Tensor,
                      is_target: torch.Tensor, noise: float, budget: float, batch_cost: float,
                      max_batch: int) -> list[int]:
    """Pairs to evaluate next, chosen greedily by KG per unit cost.

    `mean`/`cov` are the joint posterior of [pairs; target candidates] (the first `n_pairs` rows
    are pairs). The best pair is taken; if it is at the target it is the whole batch. Otherwise
    cheap pairs are added while the best next choice is a cheap one, the batch costs less than
    `batch_cost` and holds fewer than `max_batch`, each time conditioning the covariance on the
    chosen pair as if it returned its posterior mean ("kriging believer", Ginsbourger et al. 2010),
    which lowers the value of its neighbours. Pairs that do not fit `budget` are never chosen."""
    cov = cov.clone()
    targets = slice(n_pairs, cov.shape[0])
    chosen: list[int] = []
    spent = 0.0
    while len(chosen) < max_batch:
        kg = knowledge_gradient(mean[targets], cov[targets, :n_pairs],
                                torch.diagonal(cov)[:n_pairs], noise)
        utility = kg.clamp_min(0) / costs
        utility[costs > budget - spent + 1e-12] = -torch.inf
        if chosen:
            utility[chosen] = -torch.inf
        j = int(torch.argmax(utility))
        if utility[j] == -torch.inf or (chosen and bool(is_target[j])):
            break
        chosen.append(j)
        spent += float(costs[j])
        if bool(is_target[j]) or spent >= batch_cost:
            break
        column = cov[:, j].clone()
        cov -= torch.outer(column, column) / (column[j] + noise)
    return chosen
