"""OptFormer's meta-training: the settings, teacher runs generated offline, augmented training
sequences, batches and probes, the loss and the training loop."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from baselines.optformer.model import TrialTransformer
from baselines.optformer.teacher import TEACHERS, TeacherRun, record_run
from baselines.optformer.tokens import (
    FIELDS,
    IGNORE,
    X_LABEL,
    Y_LABEL,
    Context,
    FeatureScaler,
    Serialiser,
    Tokens,
    quantise,
    raw_fidelity_features,
    read_so_far,
)
from bench.gym.problem import Budget


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
    trajectories: int = 800  # teacher runs generated offline
    train_steps: int = 1500  # at most; fewer where `train_budget` is spent first
    train_budget: float = 2.8e6  # training compute, in units of L (1 + L / 256) per sequence of L tokens
    batch_size: int = 16  # at most; fewer where `batch_tokens` is reached first
    batch_tokens: int = 2048
    probes: int = 8  # probe candidates per sequence and step
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
    raw = [raw_fidelity_features(data.task.problem(e, Budget("trials", 1), "none", 0)) for e in data.fit]
    return FeatureScaler.fit(raw)


def generate(data, s: Settings, width: int, scaler: FeatureScaler, rng: np.random.Generator,
             progress) -> list[TeacherRun]:
    """`s.trajectories` teacher runs over episodes of the fit experiments."""
    episodes = data.episodes(rng)
    weights = np.asarray(s.teacher_weights, float) / np.sum(s.teacher_weights)
    out = []
    for i in range(s.trajectories):
        problem, oracle = next(episodes)
        name = TEACHERS[int(rng.choice(len(TEACHERS), p=weights))]
        out.append(record_run(problem, oracle, scaler, name, int(rng.integers(2**31)), s.max_trials,
                              context_size(s, width), s.min_per_fidelity, s.context_top_share))
        progress(0.2 * (i + 1) / s.trajectories)
    return out


@dataclass
class Augment:
    """A training study made from a teacher run: coordinates reordered by `perm`, then shifted."""

    perm: np.ndarray
    shift: np.ndarray

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return x[:, self.perm] + self.shift


def augmentation(run: TeacherRun, width: int, permute_share: float, shift_share: float, shift_scale: float,
                 rng: np.random.Generator) -> Augment:
    """With probability `permute_share` the mixture weights permuted; with `shift_share` every other
    coordinate shifted by U(-shift_scale, shift_scale): the good region moves, the relation between
    the cheap and the expensive runs does not, so the model must read it from the context."""
    perm, shift = np.arange(width), np.zeros(width)
    if len(run.mixture) and rng.random() < permute_share:
        perm[run.mixture] = rng.permutation(run.mixture)
    if rng.random() < shift_share:
        shift = rng.uniform(-shift_scale, shift_scale, width)
        shift[run.mixture] = 0.0  # weights on a simplex: a shift would not be a mixture
    return Augment(perm, shift)


@dataclass
class TokenSequence:
    """One training sequence and what its probes are drawn from."""

    tokens: Tokens
    prefix_ends: np.ndarray  # (k + 1,): sequence length after the context and after each target trial
    tried: np.ndarray  # (k,) pool ids of the target trials, in order
    cand_tok: np.ndarray  # (pool, d + 1) candidate tokens [F, x] of every target candidate
    cand_feat: np.ndarray  # (n_fid,) target fidelity features
    pool_bins: np.ndarray  # (pool,) quantile bin of every target candidate's outcome


def serialise(run: TeacherRun, ser: Serialiser, aug: Augment | None = None) -> TokenSequence:
    """The training sequence of a teacher run (augmented by `aug`)."""
    ctx, pool_x = run.context, run.pool_x
    if aug is not None:
        ctx, pool_x = Context(aug(ctx.x), ctx.features, ctx.quantile), aug(pool_x)
    pool_bins = quantise(run.pool_quantile, ser.q)
    tokens = ser.episode(ctx, pool_x[run.tried], run.target_feat, run.tried_scores, pool_bins[run.tried])
    trial_len = ser.width + 2
    ends = 1 + len(ctx.x) * trial_len + trial_len * np.arange(len(run.tried) + 1)
    cand = ser.candidates(pool_x, run.target_feat, 0).tok
    return TokenSequence(tokens, ends, run.tried, cand, run.target_feat, pool_bins)


# Batches -----------------------------------------------------------------------------------------
def pad_batch(seqs: list[TokenSequence]) -> dict[str, torch.Tensor]:
    """Sequences padded to the longest (invalid keys are masked, labels ignored)."""
    n, b = max(len(seq.tokens) for seq in seqs), len(seqs)
    first = seqs[0].tokens
    out = {f: np.zeros((b, n, *getattr(first, f).shape[1:]), getattr(first, f).dtype) for f in FIELDS}
    out["label"][:], out["coords"][:] = IGNORE, -1
    out["valid"] = np.zeros((b, n), bool)
    for i, seq in enumerate(seqs):
        m = len(seq.tokens)
        for f in FIELDS:
            out[f][i, :m] = getattr(seq.tokens, f)
        out["valid"][i, :m] = True
    return {k: torch.as_tensor(v) for k, v in out.items()}


def draw_probes(seqs: list[TokenSequence], probes: int, tried_share: float, max_trials: int,
                rng: np.random.Generator) -> dict[str, torch.Tensor]:
    """`probes` (cut, candidate, label) per sequence, as (B, M) arrays: a cut after j target
    trials, j uniform; a candidate among the j tried (share `tried_share`, when j > 0) or else a
    uniform untried one."""
    b = len(seqs)
    cut, trial, label = (np.zeros((b, probes), np.int64) for _ in range(3))
    tok = np.zeros((b, probes, seqs[0].cand_tok.shape[1]), np.int64)
    for i, seq in enumerate(seqs):
        for m in range(probes):
            j = int(rng.integers(len(seq.prefix_ends)))
            if j > 0 and rng.random() < tried_share:
                c = int(seq.tried[int(rng.integers(j))])
            else:
                c = int(rng.integers(len(seq.pool_bins)))
                while c in seq.tried[:j]:
                    c = int(rng.integers(len(seq.pool_bins)))
            cut[i, m], trial[i, m], label[i, m] = seq.prefix_ends[j], min(j + 1, max_trials), seq.pool_bins[c]
            tok[i, m] = seq.cand_tok[c]
    t = tok.shape[2]
    fid = np.stack([seq.cand_feat for seq in seqs])
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


def schedule(runs: list[TeacherRun], width: int, s: Settings) -> tuple[int, int]:
    """Batch size and steps: at most `batch_tokens` tokens a batch, at most `train_budget` of
    compute (attention makes long sequences, e.g. data_mixture's 17 tokens a trial, dearer)."""
    length = float(np.mean([run.length(width) for run in runs]))
    batch = int(np.clip(s.batch_tokens // length, min(4, s.batch_size), s.batch_size))
    steps = min(s.train_steps, int(s.train_budget / (batch * length * (1 + length / 256))))
    return batch, max(steps, 1)


def train_model(model: TrialTransformer, runs: list[TeacherRun], ser: Serialiser, s: Settings,
                rng: np.random.Generator, progress) -> dict[str, list[float]]:
    """AdamW with warm-up and cosine decay; the mean loss and its parts over every 50 steps."""
    opt = torch.optim.AdamW(model.parameters(), lr=s.lr, weight_decay=s.weight_decay)
    batch, steps = schedule(runs, ser.width, s)
    warmup = max(1, steps // 20)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda i: min(1.0, (i + 1) / warmup) * (
        0.55 + 0.45 * math.cos(math.pi * min(i, steps) / steps)))
    losses: dict[str, list[float]] = {}
    window: list[dict[str, float]] = []
    for step in range(steps):
        chosen = []
        for i in rng.integers(len(runs), size=batch):
            aug = augmentation(runs[i], ser.width, s.permute_share, s.shift_share, s.shift_scale, rng)
            chosen.append(serialise(runs[i], ser, aug))
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

