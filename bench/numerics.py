"""Numerical helpers shared by the methods: outcome normal scores per fidelity level, and torch's
seed and thread count scoped to a block."""

from __future__ import annotations

from contextlib import contextmanager

import numpy as np
import torch
from scipy.special import ndtri


def normal_scores_by_level(y: np.ndarray, levels: np.ndarray) -> np.ndarray:
    """Per level, each value's normal score Phi^-1((rank - 1/2) / n) (ties share their mean rank).

    The Gaussian-copula transform of Salinas, Shen & Perrone (ICML 2020): it makes levels
    comparable and bounds diverged runs (the dense pretrain_hparams train grids hold losses of 7-10
    next to 2.3-2.7). In `benchmarks/botorch_mf_design.py` (module docstring), per-level mean/std
    standardisation picked diverged runs on pretrain_hparams (nregret 20.6 against 0.02), though it
    ranked architecture's small levels better (Spearman 0.93 against 0.64); a median/MAD
    standardisation with bilog tails (`robust`) ranked better on average (0.86 against 0.81) but
    picked no better (nregret 0.31 against 0.30; on every train experiment with seeds 0 and 1,
    `--experiments 99 --seeds 0 1`: 0.85 / 0.33 against 0.79 / 0.29)."""
    y, levels = np.asarray(y, float), np.asarray(levels)
    if len(y) and (levels == levels[0]).all():
        return ndtri((mean_ranks(y) - 0.5) / len(y))
    out = np.zeros(len(y))
    for lv in np.unique(levels):
        mask = levels == lv
        out[mask] = ndtri((mean_ranks(y[mask]) - 0.5) / mask.sum())
    return out


def mean_ranks(v: np.ndarray) -> np.ndarray:
    """Ranks 1..n of `v`, ties sharing their mean rank; all NaN if `v` holds a NaN: the values of
    `scipy.stats.rankdata(v)` without its per-call overhead (the policy computes normal scores for
    every state it reads; with scipy's rankdata and norm.ppf that overhead was a quarter of its
    training time)."""
    if np.isnan(v).any():
        return np.full(len(v), np.nan)
    order = np.argsort(v, kind="stable")
    ordered = v[order]
    starts = np.flatnonzero(np.r_[True, ordered[1:] != ordered[:-1]])
    counts = np.diff(np.r_[starts, len(v)])
    ranks = np.empty(len(v))
    ranks[order] = np.repeat(starts + (counts + 1) / 2, counts)
    return ranks


@contextmanager
def seeded_torch(seed: int):
    """Torch's global generator seeded for the block and restored after (fit restarts draw from it)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


@contextmanager
def torch_threads(n: int):
    """Torch intra-op threads set to `n` for the block. GP matrices here are small (<= a few
    thousand rows), where extra threads gain little and, with episodes running in parallel
    (`--jobs`) or a busy machine, oversubscription made element-wise ops ten times slower."""
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)
