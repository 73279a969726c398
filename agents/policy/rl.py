"""Stage 4, multi-turn RL: GRPO over whole episodes, starting from the distilled policy.

Each update samples `episodes_per_step` curated episodes (`balanced`: on several tasks, the
cross-family preset, a task uniformly and then an episode of it, so a task with many episodes
does not dominate) and plays each `group` times with the current policy (sampling). A copy's
reward is `episode_reward` of its pregret curve: minus its final pregret (exactly the score the
leaderboard reports, unclipped: a diverged pick costs what it costs there) minus `shaping` x its
mean pregret over the steps (the presets set `shaping` to 0, so the reward is minus the reported
score); advantages are group-relative: (reward - group mean) / (group std + 1e-6), the same for
every step of the copy (GRPO, Shao et al. 2024). The loss is the policy gradient of the summed
log-probabilities, plus `kl` x the k3 estimate of KL(policy || distilled policy) on the sampled
actions, plus the auxiliary losses: `aux_weight` x the score NLL and `risk_weight` x the
divergence BCE (`episodes.risk_loss`). Every `eval_every` updates the greedy policy is scored on
the validation episodes (`greedy_pregret`, the reported score) and the best weights seen (the
distilled ones included) are kept.
"""

from __future__ import annotations

import copy
from collections.abc import Callable

import numpy as np
import torch
from torch import nn

from agents.policy.episodes import TrainingEpisode, episode_reward, greedy_pregret, rollout
from agents.policy.model import PolicyNet


def by_task(episodes: list[TrainingEpisode]) -> list[list[TrainingEpisode]]:
    """`episodes` grouped by task (`key[0]`), tasks in order of first appearance."""
    groups: dict[str, list[TrainingEpisode]] = {}
    for ep in episodes:
        groups.setdefault(ep.key[0], []).append(ep)
    return list(groups.values())


def balanced(tasks: list[list[TrainingEpisode]], k: int, rng: np.random.Generator) -> list[TrainingEpisode]:
    """`k` episodes: for each a task drawn uniformly, then an episode of it (no episode twice in
    one draw while its task has others). One task: `k` distinct episodes of it."""
    counts = np.bincount(rng.integers(len(tasks), size=k), minlength=len(tasks)) if len(tasks) > 1 else [k]
    return [tasks[t][int(i)] for t, c in enumerate(counts) if c
            for i in rng.choice(len(tasks[t]), size=min(int(c), len(tasks[t])), replace=False)]


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
    *,
    risk_weight: float = 0.0,
) -> dict:
    """Train `net` in place (ending with the best validated weights, or the last ones without
    validation episodes); returns the curves (validation: mean final pregret of the greedy
    policy)."""
    reference = copy.deepcopy(net).eval()
    optimizer = torch.optim.Adam(net.parameters(), lr=lr)
    tasks = by_task(episodes)
    best_score, best_state = greedy_pregret(net, validation), copy.deepcopy(net.state_dict())
    curve, rewards = [(0, best_score)], []
    for step in range(1, steps + 1):
        loss, sampled = torch.zeros(()), balanced(tasks, episodes_per_step, rng)
        for ep in sampled:
            played = rollout(net, ep, group, generator, reference)
            reward = episode_reward(played.pregret, shaping)
            rewards.append(float(reward.mean()))
            advantage = torch.as_tensor((reward - reward.mean()) / (reward.std() + 1e-6), dtype=torch.float32)
            log_ratio = played.ref - played.logp
            k3 = (log_ratio.exp() - log_ratio - 1).mean()
            loss = (
                loss
                - (advantage[:, None] * played.logp).sum(1).mean() / played.logp.shape[1]
                + kl * k3
                + aux_weight * played.nll
                + risk_weight * played.risk
            )
        optimizer.zero_grad()
        (loss / len(sampled)).backward()
        nn.utils.clip_grad_norm_(net.parameters(), 1.0)
        optimizer.step()
        if step % eval_every == 0 or step == steps:
            score = greedy_pregret(net, validation)
            curve.append((step, score))
            if score < best_score - 1e-9 or not validation:
                best_score, best_state = score, copy.deepcopy(net.state_dict())
        progress(step / steps)
    net.load_state_dict(best_state)
    return {"validation": curve, "train_reward": rewards, "best_validation": best_score}
