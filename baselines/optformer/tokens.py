"""OptFormer's serialisation: normalised and quantised values, the prior context, fidelity
features and the token sequences of trials (`Serialiser`)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.stats import rankdata

from bench.gym.problem import Problem

IGNORE = -100
X_LABEL, Y_LABEL = 1, 2  # kinds of next-token labels


# Normalisation and quantisation ---------------------------------------------------------------
def quantise(u: np.ndarray, q: int) -> np.ndarray:
    """Values in [0, 1] (clipped) to bins 0..q-1."""
    return np.clip(np.floor(np.asarray(u, float) * q), 0, q - 1).astype(np.int64)


def bin_centres(q: int) -> np.ndarray:
    return (np.arange(q) + 0.5) / q


def quantiles(scores: np.ndarray) -> np.ndarray:
    """Each score's quantile (rank - 1/2) / n among `scores` (larger is better; ties share)."""
    scores = np.asarray(scores, float)
    return (rankdata(scores) - 0.5) / len(scores) if len(scores) else np.zeros(0)


def online_ranks(scores: np.ndarray) -> np.ndarray:
    """Score j's rank among scores 0..j: (#worse + #ties/2 + 1/2) / (j + 1)."""
    scores = np.asarray(scores, float)
    out = np.empty(len(scores))
    for j, s in enumerate(scores):
        before = scores[:j]
        out[j] = ((before < s).sum() + 0.5 * (before == s).sum() + 0.5) / (j + 1)
    return out


def per_level_quantiles(scores: np.ndarray, levels: np.ndarray) -> np.ndarray:
    out = np.zeros(len(scores))
    for lv in np.unique(levels):
        mask = levels == lv
        out[mask] = quantiles(scores[mask])
    return out


# What an episode holds, as arrays -----------------------------------------------------------------
def raw_fidelity_features(problem: Problem) -> np.ndarray:
    """(fidelities, 2 (D + 1)): log10 descriptors and GPU-hours, then the same relative to the target."""
    m = problem.descriptor_matrix().astype(np.float64)
    return np.hstack([m, m - m[-1]])


class FeatureScaler:
    """Standardises the absolute fidelity features with statistics of the fit experiments."""

    def __init__(self, mean: np.ndarray, scale: np.ndarray):
        self.mean, self.scale = np.asarray(mean, float), np.asarray(scale, float)

    @classmethod
    def fit(cls, raw: list[np.ndarray]) -> FeatureScaler:
        rows = np.vstack(raw)
        half = rows.shape[1] // 2
        mean = np.r_[rows[:, :half].mean(0), np.zeros(half)]
        scale = np.r_[rows[:, :half].std(0), np.abs(rows[:, half:]).max(0)]
        return cls(mean, np.where(scale > 1e-9, scale, 1.0))

    def __call__(self, problem: Problem) -> np.ndarray:
        return (raw_fidelity_features(problem) - self.mean) / self.scale


def maximised(problem: Problem, values: np.ndarray) -> np.ndarray:
    return -problem.objective.sign * np.asarray(values, float)


def context_rows(levels: np.ndarray, scores: np.ndarray, max_trials: int, min_per_fidelity: int,
                 top_share: float = 1.0) -> np.ndarray:
    """Indices of the prior runs in the context, at most `max_trials`, per fidelity (most expensive
    first) a quota: its best runs (a share `top_share` of the quota), the rest evenly spaced
    along the ranking of the others; ordered cheapest fidelity first, best last within one."""
    present = sorted(set(levels.tolist()), reverse=True)
    if not present or max_trials <= 0:
        return np.zeros(0, dtype=int)
    per = max(min_per_fidelity, math.ceil(max_trials / len(present)))
    blocks, total = [], 0
    for lv in present:
        idx = np.flatnonzero(levels == lv)
        ranked = idx[np.argsort(-scores[idx], kind="stable")]
        n = min(per, max_trials - total, len(ranked))
        if n <= 0:
            break
        top = math.ceil(top_share * n)
        rest = ranked[top:]
        spread = rest[np.linspace(0, len(rest) - 1, n - top).round().astype(int)] if n > top else rest[:0]
        blocks.append(np.concatenate([ranked[:top], spread])[::-1])
        total += len(blocks[-1])
    return np.concatenate(blocks[::-1])


@dataclass
class Context:
    """The prior context of one episode: encodings, fidelity feature rows and outcome quantiles."""

    x: np.ndarray  # (n, d)
    features: np.ndarray  # (n, n_fid) fidelity features
    quantile: np.ndarray  # (n,)


def prior_context(problem: Problem, features: np.ndarray, max_trials: int, min_per_fidelity: int,
                  top_share: float = 1.0) -> Context:
    x, levels, values = problem.prior_arrays
    scores = maximised(problem, values)
    q = per_level_quantiles(scores, levels)
    rows = context_rows(levels, scores, max_trials, min_per_fidelity, top_share)
    return Context(x[rows].astype(np.float64), features[levels[rows]], q[rows])


# Token sequences ---------------------------------------------------------------------------------
FIELDS = ("tok", "role", "trial", "feat", "coords", "label", "kind")


@dataclass
class Tokens:
    """Token arrays: ids, slot in the trial, target-trial index, fidelity features (n_fid), the
    coordinates of the trial read so far (bins, -1 where not read), next-token labels and their kind."""

    tok: np.ndarray
    role: np.ndarray
    trial: np.ndarray
    feat: np.ndarray
    coords: np.ndarray
    label: np.ndarray
    kind: np.ndarray

    def __len__(self) -> int:
        return len(self.tok)

    def head(self, n: int) -> Tokens:
        return Tokens(*(getattr(self, f)[:n] for f in FIELDS))


def read_so_far(bins: np.ndarray, slots: int) -> np.ndarray:
    """(n, slots, d): at slot s of a trial, the bins of its coordinates x_1..x_s (slot 0 is F, slot
    d + 1 the outcome: all of them); -1 for the coordinates not read yet."""
    d = bins.shape[-1]
    seen = np.arange(d)[None, :] < np.arange(slots)[:, None]
    return np.where(seen, bins[..., None, :], -1)


class Serialiser:
    """Turns trials into tokens: Q value bins, then BOS and the fidelity-slot token.

    Besides its token, every position carries its trial's fidelity features and the coordinates of
    its trial read so far (`read_so_far`), which the model embeds through a smooth basis. That
    summary is causal within the trial (no parameter label leaks) and lets one attention layer
    compare whole trials: a CPU-scale addition, where the paper's far larger model, trained on far
    more studies, reads trials from the tokens alone."""

    def __init__(self, q: int, width: int, n_fid: int, max_trials: int):
        self.q, self.width, self.n_fid, self.max_trials = q, width, n_fid, max_trials
        self.bos, self.fid = q, q + 1

    def bos_tokens(self) -> Tokens:
        z = np.zeros(1, np.int64)
        return Tokens(np.array([self.bos]), z, z, np.zeros((1, self.n_fid), np.float32),
                      np.full((1, self.width), -1), z + IGNORE, z)

    def trials(self, x: np.ndarray, fid: np.ndarray, y_in: np.ndarray, y_label: np.ndarray,
               trial_index: np.ndarray) -> Tokens:
        """Trials [F, x_1..x_d, y] for rows of `x` with fidelity features `fid`; `y_in` the outcome
        tokens' values in [0, 1], `y_label` the label bins of the outcomes (IGNORE for none)."""
        n, d = len(x), self.width
        per = d + 2
        tok = np.empty((n, per), np.int64)
        tok[:, 0] = self.fid
        tok[:, 1:d + 1] = quantise(x, self.q)
        tok[:, d + 1] = quantise(y_in, self.q)
        label = np.full((n, per), IGNORE, np.int64)
        label[:, :d] = tok[:, 1:d + 1]
        label[:, d] = y_label
        kind = np.zeros((n, per), np.int64)
        kind[:, :d] = X_LABEL
        kind[:, d] = Y_LABEL
        role = np.broadcast_to(np.arange(1, per + 1), (n, per))
        trial = np.broadcast_to(np.minimum(trial_index, self.max_trials)[:, None], (n, per))
        feat = np.repeat(np.asarray(fid, np.float32)[:, None, :], per, axis=1)
        coords = read_so_far(tok[:, 1:d + 1], per)
        return Tokens(tok.ravel(), role.ravel().copy(), trial.ravel().copy(), feat.reshape(-1, self.n_fid),
                      coords.reshape(-1, d), label.ravel(), kind.ravel())

    def candidates(self, x: np.ndarray, fid: np.ndarray, trial_index: int) -> Tokens:
        """[F, x_1..x_d] per row of `x` (the outcome is read at the last slot), arrays (n, d + 1, ...)."""
        n, d = len(x), self.width
        tok = np.empty((n, d + 1), np.int64)
        tok[:, 0] = self.fid
        tok[:, 1:] = quantise(x, self.q)
        role = np.broadcast_to(np.arange(1, d + 2), (n, d + 1)).copy()
        trial = np.full((n, d + 1), min(trial_index, self.max_trials))
        feat = np.broadcast_to(np.asarray(fid, np.float32), (n, d + 1, self.n_fid)).copy()
        z = np.zeros((n, d + 1), np.int64)
        return Tokens(tok, role, trial, feat, read_so_far(tok[:, 1:], d + 1), z + IGNORE, z)

    def episode(self, context: Context, target_x: np.ndarray, target_feat: np.ndarray,
                target_scores: np.ndarray, target_labels: np.ndarray | None = None) -> Tokens:
        """BOS, the context trials (labels: their own bins), the target trials in order."""
        parts = [self.bos_tokens()]
        if len(context.x):
            bins = quantise(context.quantile, self.q)
            parts.append(self.trials(context.x, context.features, context.quantile, bins,
                                     np.zeros(len(context.x), np.int64)))
        if len(target_x):
            labels = np.full(len(target_x), IGNORE) if target_labels is None else target_labels
            parts.append(self.trials(target_x, np.repeat(target_feat[None], len(target_x), 0),
                                     online_ranks(target_scores), labels, np.arange(1, len(target_x) + 1)))
        return concat(parts)


def concat(parts: list[Tokens]) -> Tokens:
    return Tokens(*(np.concatenate([getattr(p, f) for p in parts]) for f in FIELDS))
