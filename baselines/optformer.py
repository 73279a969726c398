"""OptFormer (Chen et al., "Towards Learning Universal Hyperparameter Optimizers with Transformers",
NeurIPS 2022): a causal transformer over serialised, quantised trials, behaviour-cloned on optimiser
trajectories, that proposes like the paper's OptFormer-EI.

Serialisation. An episode is one token sequence: BOS, the prior context, then the target trials.
A trial is [F, x_1 .. x_d, y]: a fidelity slot F, each unit-cube coordinate quantised to Q bins,
then the outcome quantised to Q bins. A token embeds its value, its slot in the trial and its
trial's index among the target trials; every token of a trial also carries the trial's fidelity
features (log10 descriptors and GPU-hours, standardised on the fit experiments, and the same
relative to the target: a continuous stand-in for the paper's metadata tokens) and the coordinates
of the trial read so far (`Serialiser`). Outcomes are oriented to be maximised (`-objective.sign *
value`) and normalised within the episode per fidelity, never absolute: a prior run by its quantile
among the episode's prior runs at its fidelity; a target trial, as input, by its online rank among
the target trials so far, (#worse + #ties/2 + 1/2) / j (the paper's within-study normalisation in a
form that is fixed once observed, so training and asking see the same tokens).

Prior context. At most `context_trials` prior runs (and `context_tokens` tokens): per prior
fidelity, most expensive first, its best max(`min_per_fidelity`, context_trials / fidelities) runs,
so the model sees how the good region moves from cheap to expensive; cheapest first in the sequence.

Training. Offline trajectories on the fit experiments (`TrainingData.episodes`, the test protocols'
priors): per trajectory a teacher among `best-prior`, `extrapolate`, `random` (from the method
registry) and `CheapGPEI` (a fixed-hyperparameter multi-fidelity GP-EI) makes up to `max_trials - 1`
target trials after the context. Loss: next-token cross-entropy on the parameter tokens (the
teacher's choices) and on the outcome tokens. A target outcome's label is its quantile in the
experiment's target pool (known offline on fit experiments), the meaning a prior run's token has
at its fidelity, so a candidate's predicted outcome distribution is that of its pool quantile.
Changes for 2 CPU cores and a handful of training experiments (the paper has thousands of studies
and a T5-sized model), each stated where it lives:
- probes: `probes` target candidates per sequence and step, at a random cut of the trajectory (a
  share `probe_tried` among the trials already made), are scored through the prefix-sharing pass
  that asking uses, against their pool-quantile labels: outcomes are learnt for every candidate,
  not only for those a teacher chose, and the read-out of tried ones is taught;
- studies made from episodes (`augmentation`): a random shift of the coordinates (mixture
  weights: a permutation), fresh per step, so that memorising where the good candidates of the
  few fit experiments lie does not pay and the context must be read; dropout;
- the read-so-far coordinates embedded through a smooth basis, so one attention layer can compare
  whole trials.

Asking (OptFormer-EI). One batched pass: the history prefix (context + target trials) is encoded
once and every untried target candidate, and every tried one, is scored from its cached keys and
values. The threshold is the best expected quantile among the tried ones (at least `ei_floor`);
an untried candidate scores sum_b p(b) max(0, v_b - threshold) over the bin centres v_b; the
argmax is asked. Sizes are CPU-small (2 layers, d_model 64, Q = 64).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from scipy.stats import norm, rankdata
from torch import nn

from bench.gym.problem import Outcome, Problem, Query
from bench.numerics import seeded_torch, torch_threads
from bench.optimizer import Optimizer

IGNORE = -100
TEACHERS = ("best-prior", "extrapolate", "random", "cheap-gp-ei")
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


def smooth_basis(q: int, k: int) -> torch.Tensor:
    """(q + 1, k): Gaussian bumps at k centres over the bin centres; the last row (index -1, a
    coordinate not read yet) is zero."""
    centres = torch.linspace(0, 1, k) if k > 1 else torch.tensor([0.5])
    width = 1.0 / max(k - 1, 1)
    u = (torch.arange(q, dtype=torch.float32) + 0.5) / q
    phi = torch.exp(-0.5 * ((u[:, None] - centres[None]) / width) ** 2)
    return torch.cat([phi, torch.zeros(1, k)])


# The model ---------------------------------------------------------------------------------------
class Block(nn.Module):
    """Pre-norm transformer block whose attention may also read cached keys/values (a prefix)."""

    def __init__(self, d_model: int, heads: int, dropout: float = 0.0):
        super().__init__()
        self.heads, self.drop = heads, nn.Dropout(dropout)
        self.ln1, self.ln2 = nn.LayerNorm(d_model), nn.LayerNorm(d_model)
        self.qkv, self.proj = nn.Linear(d_model, 3 * d_model), nn.Linear(d_model, d_model)
        self.mlp = nn.Sequential(nn.Linear(d_model, 4 * d_model), nn.GELU(), nn.Linear(4 * d_model, d_model))

    def forward(self, h: torch.Tensor, mask: torch.Tensor, past: tuple | None = None):
        """h (B, T, d); mask (B, 1, T, P + T) True where attending, None for causal without a prefix;
        past: keys, values (B, H, P, dh)."""
        b, t, d = h.shape
        q, k, v = self.qkv(self.ln1(h)).view(b, t, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        own = (k, v)
        if past is not None:
            k, v = torch.cat([past[0], k], dim=2), torch.cat([past[1], v], dim=2)
        a = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=mask is None)
        h = h + self.drop(self.proj(a.transpose(1, 2).reshape(b, t, d)))
        return h + self.drop(self.mlp(self.ln2(h))), own


class TrialTransformer(nn.Module):
    """Decoder-only transformer over trial tokens; the head predicts one of Q value bins."""

    def __init__(self, q: int, width: int, n_fid: int, max_trials: int, d_model: int, layers: int,
                 heads: int, basis: int, dropout: float = 0.0):
        super().__init__()
        self.tok, self.role = nn.Embedding(q + 2, d_model), nn.Embedding(width + 3, d_model)
        self.trial = nn.Embedding(max_trials + 1, d_model)
        self.fid = nn.Linear(n_fid, d_model)
        self.register_buffer("basis", smooth_basis(q, basis), persistent=False)
        self.coord = nn.Linear(width * basis, d_model, bias=False)
        self.blocks = nn.ModuleList(Block(d_model, heads, dropout) for _ in range(layers))
        self.norm, self.head = nn.LayerNorm(d_model), nn.Linear(d_model, q)

    def embed(self, tok, role, trial, feat, coords) -> torch.Tensor:
        read = self.basis[coords].flatten(-2)  # index -1 is the zero row
        return (self.tok(tok) + self.role(role) + self.trial(trial) + self.coord(read)
                + self.fid(feat) * (role > 0).unsqueeze(-1))

    def encode(self, h: torch.Tensor, mask: torch.Tensor, past: list | None = None):
        """Hidden states after every block, and each block's own keys/values (to cache)."""
        cache = []
        for i, block in enumerate(self.blocks):
            h, own = block(h, mask, None if past is None else past[i])
            cache.append(own)
        return self.norm(h), cache


def causal_mask(valid: torch.Tensor) -> torch.Tensor:
    """(B, 1, L, L): causal and only valid keys (BOS at 0 keeps every row non-empty)."""
    n = valid.shape[1]
    tri = torch.ones(n, n, dtype=torch.bool).tril()
    return (tri.unsqueeze(0) & valid.unsqueeze(1)).unsqueeze(1)


def candidate_mask(prefix_valid: torch.Tensor, length: int) -> torch.Tensor:
    """(N, 1, T, P + T): the candidate tokens see the valid prefix and their own earlier tokens."""
    n = prefix_valid.shape[0]
    tri = torch.ones(length, length, dtype=torch.bool).tril().expand(n, length, length)
    return torch.cat([prefix_valid.unsqueeze(1).expand(n, length, -1), tri], dim=2).unsqueeze(1)


def as_tensors(t: Tokens) -> tuple[torch.Tensor, ...]:
    """The model's inputs: tok, role, trial, feat, coords."""
    return (torch.as_tensor(t.tok), torch.as_tensor(t.role), torch.as_tensor(t.trial),
            torch.as_tensor(t.feat, dtype=torch.float32), torch.as_tensor(t.coords))


def score_candidates(model: TrialTransformer, prefix: Tokens, cands: Tokens) -> torch.Tensor:
    """(N, Q) predicted outcome-bin probabilities of each candidate after the shared prefix."""
    valid = torch.ones(1, len(prefix), dtype=torch.bool)
    h = model.embed(*(x.unsqueeze(0) for x in as_tensors(prefix)))
    _, cache = model.encode(h, causal_mask(valid))
    n, t = cands.tok.shape
    past = [(k.expand(n, -1, -1, -1), v.expand(n, -1, -1, -1)) for k, v in cache]
    h = model.embed(*as_tensors(cands))
    out, _ = model.encode(h, candidate_mask(valid.expand(n, -1), t), past)
    return torch.softmax(model.head(out[:, -1]), dim=-1)


def expected_improvement(probs: np.ndarray, threshold: float) -> np.ndarray:
    """sum_b p(b) max(0, v_b - threshold) over the bin centres v_b."""
    return probs @ np.maximum(bin_centres(probs.shape[1]) - threshold, 0.0)


# A cheap teacher ---------------------------------------------------------------------------------
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


# Trajectories --------------------------------------------------------------------------------------
@dataclass
class Episode:
    """A teacher's trajectory as raw arrays: the context, its target trials, the target pool."""

    context: Context
    tried: np.ndarray  # (k,) pool ids of the target trials, in order
    tried_scores: np.ndarray  # (k,) their outcomes, to maximise
    pool_x: np.ndarray  # (pool, d) target candidates
    pool_quantile: np.ndarray  # (pool,) every target candidate's outcome quantile in the pool
    target_feat: np.ndarray  # (n_fid,) target fidelity features
    mixture: np.ndarray  # exchangeable columns (`mixture_columns`)

    def length(self, width: int) -> int:
        return 1 + (len(self.context.x) + len(self.tried)) * (width + 2)


@dataclass
class Augment:
    """A training study made from an episode: coordinates reordered by `perm`, then shifted."""

    perm: np.ndarray
    shift: np.ndarray

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return x[:, self.perm] + self.shift


def augmentation(ep: Episode, width: int, permute_share: float, shift_share: float, shift_scale: float,
                 rng: np.random.Generator) -> Augment:
    """With probability `permute_share` the mixture weights permuted; with `shift_share` every other
    coordinate shifted by U(-shift_scale, shift_scale): the good region moves, the relation between
    the cheap and the expensive runs does not, so the model must read it from the context."""
    perm, shift = np.arange(width), np.zeros(width)
    if len(ep.mixture) and rng.random() < permute_share:
        perm[ep.mixture] = rng.permutation(ep.mixture)
    if rng.random() < shift_share:
        shift = rng.uniform(-shift_scale, shift_scale, width)
        shift[ep.mixture] = 0.0  # weights on a simplex: a shift would not be a mixture
    return Augment(perm, shift)


@dataclass
class Trajectory:
    """One training sequence and what its probes are drawn from."""

    tokens: Tokens
    prefix_ends: np.ndarray  # (k + 1,): sequence length after the context and after each target trial
    tried: np.ndarray  # (k,) pool ids of the target trials, in order
    cand_tok: np.ndarray  # (pool, d + 1) candidate tokens [F, x] of every target candidate
    cand_feat: np.ndarray  # (n_fid,) target fidelity features
    pool_bins: np.ndarray  # (pool,) quantile bin of every target candidate's outcome


def serialise(ep: Episode, ser: Serialiser, aug: Augment | None = None) -> Trajectory:
    """The training sequence of an episode (augmented by `aug`)."""
    ctx, pool_x = ep.context, ep.pool_x
    if aug is not None:
        ctx, pool_x = Context(aug(ctx.x), ctx.features, ctx.quantile), aug(pool_x)
    pool_bins = quantise(ep.pool_quantile, ser.q)
    tokens = ser.episode(ctx, pool_x[ep.tried], ep.target_feat, ep.tried_scores, pool_bins[ep.tried])
    trial_len = ser.width + 2
    ends = 1 + len(ctx.x) * trial_len + trial_len * np.arange(len(ep.tried) + 1)
    cand = ser.candidates(pool_x, ep.target_feat, 0).tok
    return Trajectory(tokens, ends, ep.tried, cand, ep.target_feat, pool_bins)


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


def teacher(name: str, problem: Problem, seed: int) -> Optimizer:
    if name == "cheap-gp-ei":
        return CheapGPEI(problem, seed)
    from bench.methods import methods

    return methods()[name].make(problem, seed)


def play_teacher(name: str, problem: Problem, oracle, steps: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Candidate ids and values of `steps` target trials of the teacher."""
    opt = teacher(name, problem, seed)
    ids, values = [], []
    for _ in range(steps):
        query = opt.ask()
        outcome = oracle.evaluate(query)
        opt.tell(query, outcome)
        ids.append(outcome.candidate)
        values.append(outcome.value)
    return np.array(ids, int), np.array(values, float)


def pool_scores(problem: Problem, oracle) -> np.ndarray:
    """The target outcomes (to maximise) in the episode's candidate order: training only, on fit
    experiments, for the outcome labels."""
    order = oracle.task.permutation(problem.experiment, problem.target, oracle.seed)
    return maximised(problem, oracle.target_values()[order])


def record_episode(problem: Problem, oracle, scaler: FeatureScaler, teacher_name: str, seed: int,
                   max_trials: int, context_trials: int, min_per_fidelity: int,
                   top_share: float = 1.0) -> Episode:
    """The context, then up to `max_trials - 1` target trials of the teacher."""
    features = scaler(problem)
    context = prior_context(problem, features, context_trials, min_per_fidelity, top_share)
    pool_x = problem.arrays().x
    steps = min(max_trials - 1, len(pool_x) - 1)
    ids, values = play_teacher(teacher_name, problem, oracle, steps, seed)
    return Episode(context, ids, maximised(problem, values), pool_x, quantiles(pool_scores(problem, oracle)),
                   features[-1].astype(np.float32), mixture_columns(problem))


# Batches -----------------------------------------------------------------------------------------
def pad_batch(trajs: list[Trajectory]) -> dict[str, torch.Tensor]:
    """Sequences padded to the longest (invalid keys are masked, labels ignored)."""
    n, b = max(len(t.tokens) for t in trajs), len(trajs)
    first = trajs[0].tokens
    out = {f: np.zeros((b, n, *getattr(first, f).shape[1:]), getattr(first, f).dtype) for f in FIELDS}
    out["label"][:], out["coords"][:] = IGNORE, -1
    out["valid"] = np.zeros((b, n), bool)
    for i, t in enumerate(trajs):
        m = len(t.tokens)
        for f in FIELDS:
            out[f][i, :m] = getattr(t.tokens, f)
        out["valid"][i, :m] = True
    return {k: torch.as_tensor(v) for k, v in out.items()}


def draw_probes(trajs: list[Trajectory], probes: int, tried_share: float, max_trials: int,
                rng: np.random.Generator) -> dict[str, torch.Tensor]:
    """`probes` (cut, candidate, label) per trajectory, as (B, M) arrays: a cut after j target
    trials, j uniform; a candidate among the j tried (share `tried_share`, when j > 0) or else a
    uniform untried one."""
    b = len(trajs)
    cut, trial, label = (np.zeros((b, probes), np.int64) for _ in range(3))
    tok = np.zeros((b, probes, trajs[0].cand_tok.shape[1]), np.int64)
    for i, t in enumerate(trajs):
        for m in range(probes):
            j = int(rng.integers(len(t.prefix_ends)))
            if j > 0 and rng.random() < tried_share:
                c = int(t.tried[int(rng.integers(j))])
            else:
                c = int(rng.integers(len(t.pool_bins)))
                while c in t.tried[:j]:
                    c = int(rng.integers(len(t.pool_bins)))
            cut[i, m], trial[i, m], label[i, m] = t.prefix_ends[j], min(j + 1, max_trials), t.pool_bins[c]
            tok[i, m] = t.cand_tok[c]
    t = tok.shape[2]
    fid = np.stack([t.cand_feat for t in trajs])
    feat = np.broadcast_to(fid[:, None, :], (b, probes * t, fid.shape[1]))
    coords = read_so_far(tok[..., 1:], t).reshape(b, probes * t, -1)
    return {"cut": torch.as_tensor(cut), "trial": torch.as_tensor(trial), "tok": torch.as_tensor(tok),
            "feat": torch.as_tensor(np.ascontiguousarray(feat)), "coords": torch.as_tensor(coords),
            "label": torch.as_tensor(label)}


def probe_mask(valid: torch.Tensor, cut: torch.Tensor, length: int) -> torch.Tensor:
    """(B, 1, M T, L + M T): probe m of row b sees row b's valid tokens before its cut, and its own
    earlier tokens (a block-diagonal causal mask over the probes)."""
    b, m = cut.shape
    positions = torch.arange(valid.shape[1])
    prefix = valid.unsqueeze(1) & (positions.view(1, 1, -1) < cut.unsqueeze(2))  # (B, M, L)
    prefix = prefix.repeat_interleave(length, dim=1)
    own = torch.block_diag(*[torch.ones(length, length).tril()] * m).bool().expand(b, -1, -1)
    return torch.cat([prefix, own], dim=2).unsqueeze(1)


def batch_loss(model: TrialTransformer, batch: dict, probes: dict | None, probe_weight: float = 1.0,
               x_weight: float = 1.0) -> tuple[torch.Tensor, dict[str, float]]:
    """Mean next-token cross-entropy of the parameter tokens (weighted) + of the outcome tokens
    (+ weighted, of the probes' outcomes)."""
    h = model.embed(batch["tok"], batch["role"], batch["trial"], batch["feat"], batch["coords"])
    out, cache = model.encode(h, None)  # causal: right padding is never attended by valid tokens
    logits = model.head(out)
    parts = {}
    for name, kind in (("x", X_LABEL), ("y", Y_LABEL)):
        sel = (batch["kind"] == kind) & (batch["label"] != IGNORE)
        parts[name] = F.cross_entropy(logits[sel], batch["label"][sel]) if sel.any() else logits.sum() * 0
    loss = x_weight * parts["x"] + parts["y"]
    if probes is not None:
        b, m, t = probes["tok"].shape
        role = torch.arange(1, t + 1).repeat(m).expand(b, -1)
        trial = probes["trial"].repeat_interleave(t, dim=1)
        h = model.embed(probes["tok"].view(b, m * t), role, trial, probes["feat"], probes["coords"])
        ph, _ = model.encode(h, probe_mask(batch["valid"], probes["cut"], t), cache)
        last = ph.view(b, m, t, -1)[:, :, -1]
        parts["probe"] = F.cross_entropy(model.head(last).reshape(b * m, -1), probes["label"].view(-1))
        loss = loss + probe_weight * parts["probe"]
    return loss, {k: float(v.detach()) for k, v in parts.items()}


# The optimizer -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Settings:
    """Every parameter of the preset, with its default (architecture, data, training, asking)."""

    q: int = 64  # quantisation bins of parameters and outcomes
    d_model: int = 64
    layers: int = 2
    heads: int = 4
    coord_basis: int = 8  # smooth basis functions per coordinate for the read-so-far embedding
    context_trials: int = 24  # prior runs in the context, at most
    context_tokens: int = 200  # ... and at most this many tokens of them (17-dim data_mixture: 10 runs)
    min_per_fidelity: int = 4  # prior runs per prior fidelity, at least
    context_top_share: float = 1.0  # of a fidelity's runs in the context, the share that are its best
    max_trials: int = 10  # target trials a sequence is built for (the largest budget)
    trajectories: int = 800  # teacher trajectories generated offline
    train_steps: int = 1500  # at most; fewer where `train_budget` is spent first
    train_budget: float = 2.8e6  # training compute, in units of L (1 + L / 256) per sequence of L tokens
    batch_size: int = 16  # at most; fewer where `batch_tokens` is reached first
    batch_tokens: int = 2048
    probes: int = 8  # probe candidates per trajectory and step
    probe_tried: float = 0.25  # share of probes among the trials already made
    probe_weight: float = 1.0
    x_weight: float = 1.0  # of the parameter tokens' (behaviour-cloning) cross-entropy
    lr: float = 2e-3
    weight_decay: float = 0.01
    permute_share: float = 0.75  # of training sequences whose mixture weights are permuted
    shift_share: float = 0.5  # of training sequences whose coordinates are shifted (`augmentation`)
    shift_scale: float = 0.15
    dropout: float = 0.1
    teacher_weights: tuple[float, ...] = (0.3, 0.2, 0.2, 0.3)  # over TEACHERS
    ei_floor: float = 0.5  # the EI threshold (a pool quantile) is at least this

    @classmethod
    def of(cls, params: dict) -> Settings:
        s = cls(**params)
        if len(s.teacher_weights) != len(TEACHERS):
            raise ValueError(f"teacher_weights needs one weight per teacher {TEACHERS}")
        return s


def context_size(s: Settings, width: int) -> int:
    """Prior runs in the context: `context_trials`, fewer where their tokens pass `context_tokens`."""
    return max(1, min(s.context_trials, s.context_tokens // (width + 2)))


def build_model(config: dict, dropout: float = 0.0) -> TrialTransformer:
    return TrialTransformer(config["q"], config["width"], config["n_fid"], config["max_trials"],
                            config["d_model"], config["layers"], config["heads"], config["basis"], dropout)


def fit_scaler(data) -> FeatureScaler:
    from bench.gym.problem import Budget

    raw = [raw_fidelity_features(data.task.problem(e, Budget("trials", 1), "none", 0)) for e in data.fit]
    return FeatureScaler.fit(raw)


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


def generate(data, s: Settings, width: int, scaler: FeatureScaler, rng: np.random.Generator,
             progress) -> list[Episode]:
    """`s.trajectories` teacher trajectories over episodes of the fit experiments."""
    episodes = data.episodes(rng)
    weights = np.asarray(s.teacher_weights, float) / np.sum(s.teacher_weights)
    out = []
    for i in range(s.trajectories):
        problem, oracle = next(episodes)
        name = TEACHERS[int(rng.choice(len(TEACHERS), p=weights))]
        out.append(record_episode(problem, oracle, scaler, name, int(rng.integers(2**31)), s.max_trials,
                                  context_size(s, width), s.min_per_fidelity, s.context_top_share))
        progress(0.2 * (i + 1) / s.trajectories)
    return out


def schedule(eps: list[Episode], width: int, s: Settings) -> tuple[int, int]:
    """Batch size and steps: at most `batch_tokens` tokens a batch, at most `train_budget` of
    compute (attention makes long sequences, e.g. data_mixture's 17 tokens a trial, dearer)."""
    length = float(np.mean([ep.length(width) for ep in eps]))
    batch = int(np.clip(s.batch_tokens // length, min(4, s.batch_size), s.batch_size))
    steps = min(s.train_steps, int(s.train_budget / (batch * length * (1 + length / 256))))
    return batch, max(steps, 1)


def train_model(model: TrialTransformer, eps: list[Episode], ser: Serialiser, s: Settings,
                rng: np.random.Generator, progress) -> dict[str, list[float]]:
    """AdamW with warm-up and cosine decay; the mean loss and its parts over every 50 steps."""
    opt = torch.optim.AdamW(model.parameters(), lr=s.lr, weight_decay=s.weight_decay)
    batch, steps = schedule(eps, ser.width, s)
    warmup = max(1, steps // 20)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda i: min(1.0, (i + 1) / warmup) * (
        0.55 + 0.45 * math.cos(math.pi * min(i, steps) / steps)))
    losses: dict[str, list[float]] = {}
    window: list[dict[str, float]] = []
    for step in range(steps):
        chosen = []
        for i in rng.integers(len(eps), size=batch):
            aug = augmentation(eps[i], ser.width, s.permute_share, s.shift_share, s.shift_scale, rng)
            chosen.append(serialise(eps[i], ser, aug))
        probes = draw_probes(chosen, s.probes, s.probe_tried, s.max_trials, rng) if s.probes else None
        loss, parts = batch_loss(model, pad_batch(chosen), probes, s.probe_weight, s.x_weight)
        opt.zero_grad()
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        window.append({"loss": float(loss.detach()), **parts})
        if len(window) == 50 or step == steps - 1:
            for key in window[0]:
                losses.setdefault(key, []).append(float(np.mean([w[key] for w in window])))
            window = []
        progress(0.2 + 0.8 * (step + 1) / steps)
    return losses


class OptFormer(Optimizer):
    """OptFormer-EI over the target pool with a behaviour-cloned trial transformer (module docstring)."""

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
            eps = generate(data, s, width, scaler, rng, progress)
            model = build_model(config, s.dropout)
            losses = train_model(model, eps, ser, s, rng, progress)
        return {"model": {k: v.detach().clone() for k, v in model.state_dict().items()}, "config": config,
                "scaler_mean": torch.as_tensor(scaler.mean), "scaler_scale": torch.as_tensor(scaler.scale),
                "losses": losses}

    def __init__(self, problem: Problem, seed: int, *, checkpoint, **params):
        super().__init__(problem, seed)
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
