"""OptFormer's model: a decoder-only transformer over trial tokens, and the prefix-sharing pass
that scores many candidates after one history."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from baselines.optformer.tokens import Tokens


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

