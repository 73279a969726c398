"""Stage 3, policy distillation: behaviour cloning on the selected teacher trajectories.

For every step of every kept trajectory, the state after the trajectory's earlier steps is fed
to the network and the teacher's candidate is the label: cross-entropy over the untried target
candidates, plus the auxiliary Gaussian NLL of the predicted normal scores against the pool's
true ones (both from train experiments only). Steps are batched per episode (all kept
trajectories of one episode share its candidates), episodes shuffled each epoch.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from torch import nn

from agents.policy.episodes import TrainingEpisode
from agents.policy.model import PolicyNet, gaussian_nll
from agents.policy.trajectories import Trajectory


def distill(
    net: PolicyNet,
    episodes: dict[tuple, TrainingEpisode],
    trajectories: list[Trajectory],
    epochs: int,
    lr: float,
    aux_weight: float,
    rng: np.random.Generator,
    progress: Callable[[float], None] = lambda _: None,
) -> list[float]:
    """Train `net` in place; returns the mean loss of each epoch."""
    by_episode: dict[tuple, list[Trajectory]] = {}
    for tr in trajectories:
        by_episode.setdefault(tr.episode, []).append(tr)
    keys = list(by_episode)
    optimizer = torch.optim.Adam(net.parameters(), lr=lr)
    losses = []
    for epoch in range(epochs):
        total = 0.0
        for k in rng.permutation(len(keys)):
            ep = episodes[keys[k]]
            prefixes, labels = [], []
            for tr in by_episode[keys[k]]:
                ids = [s.candidate for s in tr.steps]
                prefixes += [ids[:t] for t in range(len(ids))]
                labels += ids
            logit, mean, log_var = net(*ep.states(prefixes))
            tried = torch.zeros_like(logit, dtype=torch.bool)
            for row, p in enumerate(prefixes):
                tried[row, p] = True
            logp = logit.masked_fill(tried, float("-inf")).log_softmax(-1)
            loss = -logp[torch.arange(len(labels)), torch.tensor(labels)].mean()
            loss = loss + aux_weight * gaussian_nll(mean, log_var, ep.scores().expand_as(mean))
            optimizer.zero_grad()
            loss.backward()
            nn.utils.clip_grad_norm_(net.parameters(), 1.0)
            optimizer.step()
            total += float(loss.detach())
        losses.append(total / max(len(keys), 1))
        progress((epoch + 1) / epochs)
    return losses
