"""The policy network: target candidates attend to the episode's tokens and are scored.

Each candidate (its `features.CANDIDATE_COLUMNS`) is embedded, then attends, in `layers` blocks,
to the prior's and the episode's tokens, with each head's scores lowered by c_h x the mean
squared unit-cube distance between the candidate and the token (c_h >= 0 learned per head): a
kernel over configurations of any width. A learned null token is always attendable (an episode
without prior or runs). Three heads per candidate: the policy logit, a prediction of the
candidate's normal score among the target pool (mean and log-variance), and the logit of the
probability that its run diverges at the target (`risk`); the last two are trained as auxiliary
losses, the score is used in the rationale and the risk to avoid likely divergence. The whole
forward is batched: (B, H) tokens, (B, N) candidates.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from agents.policy.features import CANDIDATE_WIDTH, TOKEN_WIDTH


class CrossBlock(nn.Module):
    def __init__(self, d: int, heads: int, ff: int):
        super().__init__()
        self.heads = heads
        self.norm_c, self.norm_t, self.norm_f = nn.LayerNorm(d), nn.LayerNorm(d), nn.LayerNorm(d)
        self.q, self.kv, self.out = nn.Linear(d, d), nn.Linear(d, 2 * d), nn.Linear(d, d)
        self.ff = nn.Sequential(nn.Linear(d, ff), nn.ReLU(), nn.Linear(ff, d))
        self.log_locality = nn.Parameter(torch.linspace(0.0, float(np.log(200.0)), heads))

    def forward(self, cand, tokens, valid, dist):
        b, n, d = cand.shape
        h, w = self.heads, d // self.heads
        q = self.q(self.norm_c(cand)).reshape(b, n, h, w).transpose(1, 2)
        k, v = self.kv(self.norm_t(tokens)).chunk(2, dim=-1)
        k, v = (t.reshape(b, -1, h, w).transpose(1, 2) for t in (k, v))
        scores = (
            q @ k.transpose(-1, -2) * w**-0.5 - self.log_locality.exp()[None, :, None, None] * dist[:, None]
        )
        scores = scores.masked_fill(~valid[:, None, None, :], float("-inf")).softmax(-1)
        cand = cand + self.out((scores @ v).transpose(1, 2).reshape(b, n, d))
        return cand + self.ff(self.norm_f(cand))


class PolicyNet(nn.Module):
    def __init__(self, d_model: int = 32, heads: int = 4, layers: int = 2, ff: int = 64):
        super().__init__()
        self.embed_token = nn.Sequential(
            nn.Linear(TOKEN_WIDTH, d_model), nn.ReLU(), nn.Linear(d_model, d_model)
        )
        self.embed_cand = nn.Sequential(
            nn.Linear(CANDIDATE_WIDTH, d_model), nn.ReLU(), nn.Linear(d_model, d_model)
        )
        self.null = nn.Parameter(torch.zeros(1, 1, d_model))
        self.blocks = nn.ModuleList(CrossBlock(d_model, heads, ff) for _ in range(layers))
        self.norm = nn.LayerNorm(d_model)
        self.logit = nn.Sequential(nn.Linear(d_model, d_model), nn.ReLU(), nn.Linear(d_model, 1))
        self.value_head = nn.Sequential(nn.Linear(d_model, d_model), nn.ReLU(), nn.Linear(d_model, 2))
        self.risk_head = nn.Sequential(nn.Linear(d_model, d_model), nn.ReLU(), nn.Linear(d_model, 1))

    def forward(self, tokens, valid, dist, cand):
        """tokens (B, H, TOKEN_WIDTH), valid (B, H) bool, dist (B, N, H), cand (B, N,
        CANDIDATE_WIDTH) -> logits, predicted score means, log-variances and divergence logits,
        each (B, N)."""
        b = tokens.shape[0]
        t = torch.cat([self.null.expand(b, 1, -1), self.embed_token(tokens)], dim=1)
        valid = torch.cat([torch.ones(b, 1, dtype=torch.bool), valid], dim=1)
        dist = torch.cat([torch.zeros(b, dist.shape[1], 1), dist], dim=2)
        c = self.embed_cand(cand)
        for block in self.blocks:
            c = block(c, t, valid, dist)
        c = self.norm(c)
        mean, log_var = self.value_head(c).unbind(-1)
        return self.logit(c).squeeze(-1), mean, log_var.clamp(-6, 4), self.risk_head(c).squeeze(-1)


def batch(states: list[tuple[np.ndarray, np.ndarray, np.ndarray]]):
    """`EpisodeView.state` tuples of one episode (same candidates) -> padded tensors."""
    longest = max(len(s[0]) for s in states)
    b, n = len(states), states[0][2].shape[0]
    tokens = np.zeros((b, longest, TOKEN_WIDTH), np.float32)
    valid = np.zeros((b, longest), bool)
    dist = np.zeros((b, n, longest), np.float32)
    for i, (tok, d, _) in enumerate(states):
        tokens[i, : len(tok)], valid[i, : len(tok)], dist[i, :, : len(tok)] = tok, True, d
    cand = np.stack([s[2] for s in states])
    return tuple(torch.from_numpy(a) for a in (tokens, valid, dist, cand))


def gaussian_nll(mean, log_var, target) -> torch.Tensor:
    return 0.5 * (log_var + (target - mean) ** 2 * torch.exp(-log_var)).mean()
