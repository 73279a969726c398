"""Stage 4, multi-turn RL: GRPO over whole episodes, starting from the distilled policy.

Each update samples `episodes_per_step` curated episodes and plays each `group` times with the
current policy (sampling). A copy's reward is minus its final target-fidelity nregret (clipped at
`REGRET_CLIP`) minus `shaping` x its mean nregret over the steps (reaching a good configuration
sooner is better); advantages are group-relative: (reward - group mean) / (group std + 1e-6), the
same for every step of the copy (GRPO, Shao et al. 2024). The loss is the policy gradient of the
summed log-probabilities, plus `kl` x the k3 estimate of KL(policy || distilled policy) on the
sampled actions, plus the auxiliary NLL. Every `eval_every` updates the greedy policy is scored on
the validation episodes and the best weights seen (the distilled ones included) are kept.
"""

from __future__ import annotations

import copy
from collections.abc import Callable

import numpy as np
import torch
from torch import nn

from agents.policy.episodes import TrainingEpisode, greedy_nregret, rollout
from agents.policy.model import PolicyNet


def grpo(
    net: PolicyNet,
    episodes: list[TrainingEpisode],
    validation: list[TrainingEpisode],
    steps: int,
    group: int,
    episodes_per_step: int,
    lr: float,
    kl: float,
    shaping: float,
    aux_weight: float,
    eval_every: int,
    rng: np.random.Generator,
    generator: torch.Generator,
    progress: Callable[[float], None] = lambda _: None,
) -> dict:
    """Train `net` in place (ending with the best validated weights, or the last ones without
    validation episodes); returns the curves."""
    reference = copy.deepcopy(net).eval()
    optimizer = torch.optim.Adam(net.parameters(), lr=lr)
    best_score, best_state = greedy_nregret(net, validation), copy.deepcopy(net.state_dict())
    curve, rewards = [(0, best_score)], []
    for step in range(1, steps + 1):
        loss = torch.zeros(())
        for k in rng.choice(len(episodes), size=min(episodes_per_step, len(episodes)), replace=False):
            logp, ref, nll, regrets = rollout(net, episodes[int(k)], group, generator, reference)
            reward = -regrets[:, -1] - shaping * regrets.mean(axis=1)
            rewards.append(float(reward.mean()))
            advantage = torch.as_tensor((reward - reward.mean()) / (reward.std() + 1e-6), dtype=torch.float32)
            log_ratio = ref - logp
            k3 = (log_ratio.exp() - log_ratio - 1).mean()
            loss = (
                loss - (advantage[:, None] * logp).sum(1).mean() / logp.shape[1] + kl * k3 + aux_weight * nll
            )
        optimizer.zero_grad()
        (loss / episodes_per_step).backward()
        nn.utils.clip_grad_norm_(net.parameters(), 1.0)
        optimizer.step()
        if step % eval_every == 0 or step == steps:
            score = greedy_nregret(net, validation)
            curve.append((step, score))
            if score < best_score - 1e-9 or not validation:
                best_score, best_state = score, copy.deepcopy(net.state_dict())
        progress(step / steps)
    net.load_state_dict(best_state)
    return {"validation": curve, "train_reward": rewards, "best_validation": best_score}
