"""NAP: Neural Acquisition Processes (Maraval et al., "End-to-End Meta-Bayesian Optimisation with
Transformer Neural Processes", NeurIPS 2023), on the benchmark's candidate pools.

A small transformer reads the episode as a set of tokens:
  history    every observation: the prior's cheaper runs (capped, see `select_prior`) and the
             episode's own target runs; features [unit-cube x | log10 descriptors of its fidelity
             minus the target's | normal score of its value among the values seen at that fidelity
             | observed = 1 | at target | budget left | trials left / 10]
  candidates the target pool: the same features with the value masked (0, observed = 0).
NAP's attention mask: history tokens attend to history tokens, each candidate attends to the
history and to itself only (not to other candidates), so a candidate's output is a function of
the history and its own features. Per candidate two heads give (a) the acquisition logit, a
policy over the untried candidates, and (b) a predicted value (mean and log-variance of the
candidate's normal score in the target pool).

Meta-training is end to end on the `fit` experiments through `bench.gym.env.EpisodeBatch` (batches
of episodes of one experiment in lockstep): REINFORCE with a leave-one-out baseline (the paper
uses PPO; one on-policy pass per batch is what fits the CPU budget) on the improvement of the
normalised regret (the experiment's `Scorer`, `EpisodeBatch.scores`; clipped at `reward_clip`, so one
diverged run does not dominate a batch; before any target run the worst candidate's), plus the
paper's auxiliary loss: the Gaussian NLL of the predicted values against the candidates' true
normal scores. An ask is the argmax of the acquisition over the untried candidates; no randomness.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
import torch
from scipy.special import ndtri
from scipy.stats import rankdata
from torch import nn

from bench.gym.env import EpisodeBatch
from bench.gym.problem import Budget, Query
from bench.numerics import normal_scores_by_level, seeded_torch, torch_threads
from bench.optimizer import LearnedOptimizer
from bench.training import TrainingData

EXTRA = 5  # score, observed, at target, budget left, trials left / 10


@dataclass(frozen=True)
class Settings:
    """Every parameter of the preset (all have defaults)."""

    d_model: int = 32
    heads: int = 4
    layers: int = 2
    ff: int = 64
    prior_cap: int = 128  # prior runs given to the model as history tokens
    best_share: float = 0.25  # of the cap: the best prior runs; the rest: the most expensive
    train_steps: int = 300  # gradient steps, one batch of episodes each
    batch: int = 16  # episodes of one experiment per step
    lr: float = 2e-3
    aux_weight: float = 1.0
    entropy: float = 0.01
    reward_clip: float = 3.0  # nregret above this counts as this in the reward


# Features (numpy; the same code for training and asking) -----------------------------------

def normal_scores(values: np.ndarray) -> np.ndarray:
    """Rank-based normal scores along the last axis (ties share their mean rank); 0 for one value."""
    values = np.asarray(values, float)
    n = values.shape[-1]
    if n == 0:
        return values.copy()
    return ndtri((rankdata(values, axis=-1) - 0.5) / n)


def select_prior(levels: np.ndarray, scores: np.ndarray, cap: int, best_share: float) -> np.ndarray:
    """Rows of the prior to keep: the `best_share` of `cap` with the best scores, then the rest
    from the most expensive fidelities down (ties in the episode's prior order)."""
    if len(levels) <= cap:
        return np.arange(len(levels))
    order = np.arange(len(levels))
    best = np.lexsort((order, -levels, -scores))[: round(cap * best_share)]
    rest = np.setdiff1d(order, best)
    rest = rest[np.lexsort((rest, -levels[rest]))][: cap - len(best)]
    return np.concatenate([best, rest])


def tokens(x: np.ndarray, levels: np.ndarray, scores: np.ndarray, observed: bool,
           descriptors: np.ndarray) -> np.ndarray:
    """Token features without the budget columns: [x | descriptors - target's | score | observed |
    at target | 0 | 0]."""
    n = len(x)
    relative = descriptors[levels] - descriptors[-1] if n else np.zeros((0, descriptors.shape[1]))
    flags = np.column_stack([scores, np.full(n, float(observed)), levels == len(descriptors) - 1,
                             np.zeros((n, 2))])
    return np.hstack([x, relative, flags]).astype(np.float32)


def prior_tokens(x, levels, values, descriptors, settings: Settings) -> np.ndarray:
    """History tokens of an episode's prior (values oriented larger-is-better)."""
    levels = np.asarray(levels, int)
    scores = normal_scores_by_level(np.asarray(values, float), levels)
    keep = select_prior(levels, scores, settings.prior_cap, settings.best_share)
    return tokens(np.asarray(x, np.float32)[keep], levels[keep], scores[keep], True, descriptors)


def observation_tokens(x, levels, values, descriptors) -> np.ndarray:
    """History tokens of the episode's own runs, scored among its runs at the same fidelity."""
    levels = np.asarray(levels, int)
    scores = normal_scores_by_level(np.asarray(values, float), levels)
    return tokens(np.asarray(x, np.float32), levels, scores, True, descriptors)


def candidate_tokens(x, descriptors) -> np.ndarray:
    n = len(x)
    return tokens(np.asarray(x, np.float32), np.full(n, len(descriptors) - 1), np.zeros(n), False,
                  descriptors)


def with_budget(features: torch.Tensor, left: torch.Tensor, trials_left: torch.Tensor) -> torch.Tensor:
    """`features` (B, L, w) with the two budget columns set per episode (B,)."""
    out = features.clone()
    out[..., -2] = left[:, None]
    out[..., -1] = trials_left[:, None] / 10.0
    return out


# Model ---------------------------------------------------------------------------------------

class MaskedBlock(nn.Module):
    """A pre-norm transformer layer with NAP's mask: history attends to (valid) history,
    candidates attend to history and themselves. Each head adds -c_h * (mean squared unit-cube
    distance between the two tokens' configurations) to its attention scores, c_h >= 0 learned:
    a kernel-like locality prior that a plain transformer would have to learn from far more data."""

    def __init__(self, d_model: int, heads: int, ff: int):
        super().__init__()
        self.heads = heads
        self.norm1, self.norm2 = nn.LayerNorm(d_model), nn.LayerNorm(d_model)
        self.qkv = nn.Linear(d_model, 3 * d_model)
        self.out = nn.Linear(d_model, d_model)
        self.ff = nn.Sequential(nn.Linear(d_model, ff), nn.ReLU(), nn.Linear(ff, d_model))
        self.log_locality = nn.Parameter(torch.linspace(0.0, np.log(300.0), heads))

    def _split(self, z: torch.Tensor):
        b, n, _ = z.shape
        q, k, v = self.qkv(z).chunk(3, dim=-1)
        return [t.reshape(b, n, self.heads, t.shape[-1] // self.heads).transpose(1, 2) for t in (q, k, v)]

    def _merge(self, z: torch.Tensor) -> torch.Tensor:
        b, heads, n, width = z.shape
        return self.out(z.transpose(1, 2).reshape(b, n, heads * width))

    def forward(self, hist, cand, valid, dist_hh, dist_ch):
        """`dist_hh` (B, H, H) and `dist_ch` (B, N, H): squared configuration distances."""
        qh, kh, vh = self._split(self.norm1(hist))
        qc, kc, vc = self._split(self.norm1(cand))
        scale, locality = qh.shape[-1] ** -0.5, self.log_locality.exp()[None, :, None, None]
        n_hist = hist.shape[1]
        allowed = valid[:, None, None, :] | torch.eye(n_hist, dtype=torch.bool)[None, None]
        hh = qh @ kh.transpose(-1, -2) * scale - locality * dist_hh[:, None]
        hh = hh.masked_fill(~allowed, float("-inf")).softmax(-1)
        ch = qc @ kh.transpose(-1, -2) * scale - locality * dist_ch[:, None]
        ch = ch.masked_fill(~valid[:, None, None, :], float("-inf"))
        cc = (qc * kc).sum(-1, keepdim=True) * scale  # distance 0 to itself
        weights = torch.cat([ch, cc], dim=-1).softmax(-1)
        hist = hist + self._merge(hh @ vh)
        cand = cand + self._merge(weights[..., :n_hist] @ vh + weights[..., n_hist:] * vc)
        return hist + self.ff(self.norm2(hist)), cand + self.ff(self.norm2(cand))


def mean_square_distance(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """(B, n, d) and (B, m, d) -> (B, n, m) mean over dimensions of squared differences."""
    return ((a[:, :, None, :] - b[:, None, :, :]) ** 2).mean(-1)


class NAPNet(nn.Module):
    """Tokens in, per-candidate (acquisition logit, predicted mean, predicted log-variance) out;
    the first `x_width` token features are the configuration's unit-cube encoding."""

    def __init__(self, width: int, x_width: int, s: Settings):
        super().__init__()
        self.x_width = x_width
        self.embed = nn.Sequential(nn.Linear(width, s.d_model), nn.ReLU(), nn.Linear(s.d_model, s.d_model))
        self.blocks = nn.ModuleList(MaskedBlock(s.d_model, s.heads, s.ff) for _ in range(s.layers))
        self.norm = nn.LayerNorm(s.d_model)
        self.policy = nn.Sequential(nn.Linear(s.d_model, s.d_model), nn.ReLU(), nn.Linear(s.d_model, 1))
        self.value_head = nn.Sequential(nn.Linear(s.d_model, s.d_model), nn.ReLU(), nn.Linear(s.d_model, 2))

    def forward(self, hist: torch.Tensor, valid: torch.Tensor, cand: torch.Tensor):
        """hist (B, H, w) with `valid` (B, H) bool, cand (B, N, w) -> three (B, N) tensors."""
        xh, xc = hist[..., : self.x_width], cand[..., : self.x_width]
        dist_hh, dist_ch = mean_square_distance(xh, xh), mean_square_distance(xc, xh)
        h, c = self.embed(hist), self.embed(cand)
        for block in self.blocks:
            h, c = block(h, c, valid, dist_hh, dist_ch)
        c = self.norm(c)
        mean, log_var = self.value_head(c).unbind(-1)
        return self.policy(c).squeeze(-1), mean, log_var.clamp(-6, 4)


def gaussian_nll(mean, log_var, target) -> torch.Tensor:
    return 0.5 * (log_var + (target - mean) ** 2 * torch.exp(-log_var)).mean()


# Training --------------------------------------------------------------------------------------

def _padded(rows: list[np.ndarray], width: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Stack token arrays of different lengths: (B, max, width) and the valid mask."""
    longest = max((len(r) for r in rows), default=0)
    out = np.zeros((len(rows), longest, width), np.float32)
    valid = np.zeros((len(rows), longest), bool)
    for i, r in enumerate(rows):
        out[i, : len(r)], valid[i, : len(r)] = r, True
    return torch.from_numpy(out), torch.from_numpy(valid)


def rollout_loss(net: NAPNet, episodes: EpisodeBatch, s: Settings,
                 generator: torch.Generator) -> torch.Tensor:
    """Play the (freshly reset) episodes to the end with the sampled policy; the REINFORCE loss
    with a leave-one-out baseline, minus an entropy bonus, plus the auxiliary NLL."""
    o, num, horizon = episodes.obs, episodes.num, episodes.horizon
    desc, n, target = episodes.descriptors, int(episodes.sizes[-1]), len(episodes.fids) - 1
    width = o["candidates"].shape[-1] + desc.shape[1] + EXTRA
    prior = [prior_tokens(o["prior_x"][i][m], o["prior_fidelity"][i][m].astype(int), o["prior_value"][i][m],
                          desc, s) for i, m in enumerate(o["prior_mask"].astype(bool))]
    prior_hist, prior_valid = _padded(prior, width)
    cand_x = o["candidates"][:, target, :n]
    cand = torch.from_numpy(np.stack([candidate_tokens(x, desc) for x in cand_x]))
    truth = normal_scores(-episodes.sign * episodes.values[:, target, :n])
    truth = torch.as_tensor(truth, dtype=torch.float32)
    log_probs, entropies, rewards, nll = [], [], [], []
    for t in range(horizon):
        own = [observation_tokens(o["history_x"][i, :t], np.full(t, target), o["history_value"][i, :t], desc)
               for i in range(num)]
        hist = torch.cat([prior_hist, torch.from_numpy(np.stack(own).reshape(num, t, width))], dim=1)
        valid = torch.cat([prior_valid, torch.ones(num, t, dtype=torch.bool)], dim=1)
        left = torch.full((num,), (horizon - t) / horizon)
        trials_left = torch.full((num,), float(horizon - t))
        logit, mean, log_var = net(with_budget(hist, left, trials_left), valid,
                                   with_budget(cand, left, trials_left))
        tried = torch.from_numpy(o["tried"][:, target, :n].astype(bool))
        logp = logit.masked_fill(tried, float("-inf")).log_softmax(-1)
        action = torch.multinomial(logp.exp(), 1, generator=generator).squeeze(-1)
        log_probs.append(logp.gather(1, action[:, None]).squeeze(1))
        entropies.append(-(logp.exp() * logp.masked_fill(tried, 0.0)).sum(-1))
        nll.append(gaussian_nll(mean, log_var, truth))
        before = np.minimum(episodes.scores(episodes.best)["nregret"], s.reward_clip)
        _, _, _, info = episodes.step(np.full(num, target), action.numpy(), np.ones(num, bool))
        rewards.append(before - np.minimum(info["nregret"], s.reward_clip))
    to_go = np.cumsum(np.array(rewards)[::-1], axis=0)[::-1]  # (T, B)
    baseline = (to_go.sum(1, keepdims=True) - to_go) / max(num - 1, 1)
    advantage = torch.as_tensor((to_go - baseline).T.copy(), dtype=torch.float32)  # (B, T)
    policy = -(advantage * torch.stack(log_probs, 1)).mean()
    return policy - s.entropy * torch.stack(entropies).mean() + s.aux_weight * torch.stack(nll).mean()


class NAP(LearnedOptimizer):
    """NAP over the target pool: argmax of the learned acquisition among the untried candidates."""

    VERSION = 2

    @classmethod
    def meta_train(cls, data: TrainingData, seed: int, progress, **params) -> dict:
        s = Settings(**params)
        width = data.task.encoder.width + len(_descriptor_keys(data)) + 1 + EXTRA
        rng = np.random.default_rng(seed)
        generator = torch.Generator().manual_seed(seed)
        with torch_threads(1), seeded_torch(seed):
            net = NAPNet(width, data.task.encoder.width, s)
            optimizer = torch.optim.Adam(net.parameters(), lr=s.lr)
            cache: dict[tuple, EpisodeBatch] = {}
            for step in range(s.train_steps):
                exp, prior, horizon = data.draw(rng)
                key = (exp, prior, horizon)
                if key not in cache:
                    cache[key] = EpisodeBatch(data.task, exp, Budget("trials", horizon), prior, s.batch)
                episodes = cache[key]
                episodes.reset(np.arange(s.batch), rng.integers(2**31, size=s.batch))
                loss = rollout_loss(net, episodes, s, generator)
                optimizer.zero_grad()
                loss.backward()
                nn.utils.clip_grad_norm_(net.parameters(), 1.0)
                optimizer.step()
                progress((step + 1) / s.train_steps)
        return {"width": width, "x_width": data.task.encoder.width, "settings": dataclasses.asdict(s),
                "weights": {k: v.detach().clone() for k, v in net.state_dict().items()}}

    def __init__(self, problem, seed, *, checkpoint, **params):
        super().__init__(problem, seed, checkpoint=checkpoint)
        Settings(**params)  # an unknown parameter is an error; the architecture is the checkpoint's
        state = checkpoint.state
        self.settings = Settings(**state["settings"])
        self.net = NAPNet(int(state["width"]), int(state["x_width"]), self.settings)
        self.net.load_state_dict(state["weights"])
        self.net.eval()
        self.descriptors = problem.descriptor_matrix()
        x, levels, values = problem.prior_arrays
        values = -problem.objective.sign * values
        self.prior = prior_tokens(x, levels, values, self.descriptors, self.settings)
        self.candidates = candidate_tokens(problem.arrays().x, self.descriptors)
        self.level = {f.name: i for i, f in enumerate(problem.fidelities)}

    def acquisition(self) -> np.ndarray:
        """The acquisition logit of every target candidate given the history so far."""
        done = [o for _, o in self.history]
        x = np.array([self.problem.arrays(o.fidelity).x[o.candidate] if o.candidate is not None
                      else self.problem.encoder.one(o.config) for o in done])
        x = x.reshape(len(done), self.problem.encoder.width)
        levels = np.array([self.level[o.fidelity] for o in done], int)
        values = -self.problem.objective.sign * np.array([o.value for o in done], float)
        hist = np.concatenate([self.prior, observation_tokens(x, levels, values, self.descriptors)])
        budget = self.problem.budget
        scale = 1.0 if budget.kind == "trials" else self.problem.fidelities[-1].cost
        trials_left = max(self.remaining(), 0.0) / scale
        left = torch.tensor([trials_left / max(budget.amount, 1e-9)], dtype=torch.float32)
        trials = torch.tensor([trials_left], dtype=torch.float32)
        with torch_threads(1), torch.no_grad():
            logit, _, _ = self.net(with_budget(torch.from_numpy(hist)[None], left, trials),
                                   torch.ones(1, len(hist), dtype=torch.bool),
                                   with_budget(torch.from_numpy(self.candidates)[None], left, trials))
        return logit[0].numpy()

    def ask(self) -> Query:
        ids = self.pool_ids()
        logit = self.acquisition()
        return self.query_candidate(int(ids[int(np.argmax(logit[ids]))]))


def _descriptor_keys(data: TrainingData) -> list[str]:
    return list(data.task.experiment(data.fit[0]).fidelities[0].descriptors)
