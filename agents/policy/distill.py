"""Stage 3, policy distillation: behaviour cloning on the selected teacher trajectories.

For every step of every kept trajectory, the state after the trajectory's earlier steps is fed
to the network and the teacher's candidate is the label: cross-entropy over the untried target
candidates, plus the auxiliary losses (both from train experiments only): `aux_weight` x the
Gaussian NLL of the predicted normal scores against the pool's true ones, and `risk_weight` x the
binary cross-entropy of the divergence logits against the candidates' divergence flags
(`episodes.risk_loss`). Steps are batched per episode (all kept trajectories of one episode share
its candidates), one update per episode. Each epoch visits every task (the cross-family preset
trains on several) equally often (`epoch_order`).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from torch import nn

from agents.policy.episodes import TrainingEpisode, risk_loss
from agents.policy.model import PolicyNet, gaussian_nll
from agents.policy.trajectories import Trajectory


def epoch_order(keys: list[tuple], rng: np.random.Generator) -> list[tuple]:
    """One epoch's episodes (keys `(task, ...)`), the same number of each task: every task's
    episodes shuffled and, for a task with fewer than the largest, reshuffled and repeated up to
    the largest's count (each episode once before any twice); then dealt round-robin over the
    tasks, in a shuffled task order, so consecutive updates alternate tasks. One task: a
    shuffle of its episodes."""
    tasks: dict[str, list[tuple]] = {}
    for key in keys:
        tasks.setdefault(key[0], []).append(key)
    if len(tasks) == 1:
        return [keys[i] for i in rng.permutation(len(keys))]
    most = max(len(v) for v in tasks.values())
    dealt = []
    for members in tasks.values():
        order: list[tuple] = []
        while len(order) < most:
            order += [members[i] for i in rng.permutation(len(members))]
        dealt.append(order[:most])
    turn = rng.permutation(len(dealt))
    return [dealt[t][i] for i in range(most) for t in turn]


def distill(
    net: PolicyNet,
    episodes: dict[tuple, TrainingEpisode],
    trajectories: list[Trajectory],
    epochs: int,
    lr: float,
    aux_weight: float,
    rng: np.random.Generator,
    progress: Callable[[float], None] = lambda _: None,
    *,
    risk_weight: float = 0.0,
) -> list[float]:
    """Train `net` in place; returns the mean loss of each epoch."""
    by_episode: dict[tuple, list[Trajectory]] = {}
    for tr in trajectories:
        by_episode.setdefault(tr.episode, []).append(tr)
    steps = {key: _steps(episodes[key], trs) for key, trs in by_episode.items()}
    optimizer = torch.optim.Adam(net.parameters(), lr=lr)
    losses = []
    for epoch in range(epochs):
        total, order = 0.0, epoch_order(list(steps), rng)
        for key in order:
            inputs, tried, labels, scores, risks = steps[key]
            logit, mean, log_var, risk = net(*inputs)
            logp = logit.masked_fill(tried, float("-inf")).log_softmax(-1)
            loss = -logp[torch.arange(len(labels)), labels].mean()
            loss = (loss + aux_weight * gaussian_nll(mean, log_var, scores.expand_as(mean))
                    + risk_weight * risk_loss(risk, risks))
            optimizer.zero_grad()
            loss.backward()
            nn.utils.clip_grad_norm_(net.parameters(), 1.0)
            optimizer.step()
            total += float(loss.detach())
        losses.append(total / max(len(order), 1))
        progress((epoch + 1) / epochs)
    return losses


def _steps(ep: TrainingEpisode, trajectories: list[Trajectory]):
    """One episode's batch, the same every epoch (so built once): the network's inputs after each
    step's prefix, the mask of candidates tried before it, the teachers' picks, and the auxiliary
    targets."""
    prefixes, labels = [], []
    for tr in trajectories:
        ids = [s.candidate for s in tr.steps]
        prefixes += [ids[:t] for t in range(len(ids))]
        labels += ids
    inputs = ep.states(prefixes)
    tried = torch.zeros(len(prefixes), len(ep.values), dtype=torch.bool)
    for row, p in enumerate(prefixes):
        tried[row, p] = True
    return inputs, tried, torch.tensor(labels), ep.scores(), ep.risks()
