"""Training episodes of the policy and how it plays them (distillation, RL, validation).

A `TrainingEpisode` is a `Problem` of a train (or curated) experiment with its target outcomes in the
episode's candidate order: training needs them for rewards and targets, and only train
experiments are ever made into one. Rollouts play `group` copies of an episode in lockstep at the
target fidelity (trial budgets), batched through the network. Every score comes from the
experiment's `Scorer` (`bench.scores`), and it is the score the leaderboard reports: pregret
(the share of the target pool strictly better than the best value found), unclipped. A diverged
pick already holds the worst finite value of its rung, so it costs what the leaderboard charges
(pregret near 1) and no more. RL's reward is `episode_reward` of the pregret curve a rollout
returns; validation and model selection are the greedy policy's mean final pregret
(`greedy_pregret`) over `validation_set`: the validation experiments' real problems with the
priors the method is tested under (`paper`, `far`) and the `ladder` suite's distances, budgets 1
and 3, `VALIDATION_SEEDS` seeds each.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import torch
from torch import nn

from agents.policy.features import EpisodeView
from agents.policy.model import PolicyNet, batch, gaussian_nll
from bench.gym import rules
from bench.gym.problem import Budget, Outcome, Problem, Query
from bench.gym.suites import load_suite
from bench.gym.task import Prior
from bench.numerics import normal_scores_by_level
from bench.scores import Scorer
from bench.training import TrainingData

VALIDATION_SEEDS = 10  # episode seeds per (validation experiment, prior, budget)
VALIDATION_BUDGETS = (1, 3)  # target trials of the validation episodes
VALIDATION_SEED_BASE = 20_000


@dataclass
class TrainingEpisode:
    problem: Problem
    values: np.ndarray  # target outcomes, candidate id order
    view: EpisodeView
    key: tuple  # (task, experiment, prior, budget, seed): what rebuilds it (`Trajectory.episode`)
    scorer: Scorer  # the scores of the experiment's target pool (`Task.scorer`)
    diverged: np.ndarray  # target runs' divergence flags (`Task.diverged`), candidate id order

    @classmethod
    def of(
        cls, data: TrainingData, exp: str, prior: Prior, budget: int, seed: int, cross_fidelity: bool = True,
        risk: bool = True,
    ) -> TrainingEpisode:
        """The episode with `seed`, read with or without the cross-fidelity and risk features
        (`EpisodeView`, the ablations)."""
        task = data.task
        problem = task.problem(exp, Budget("trials", budget), prior, seed)
        target = task.experiment(exp).target.name
        order = task.permutation(exp, target, seed)
        return cls(
            problem, task.arrays(exp, target)[1][order], EpisodeView(problem, cross_fidelity, risk),
            (task.name, exp, prior, budget, seed), task.scorer(exp), task.diverged(exp, target)[order],
        )

    def oracle(self) -> EpisodeOracle:
        """Answers this episode's target queries from `values` (curated episodes have no table)."""
        return EpisodeOracle(self.problem, self.values, self.diverged)

    @property
    def horizon(self) -> int:
        return int(self.problem.budget.amount)

    def pregret(self, best: np.ndarray) -> np.ndarray:
        """pregret of best target values (the experiment's `Scorer`: the reported score)."""
        return self.scorer.pregret(best)

    def risks(self) -> torch.Tensor:
        """Each candidate's divergence flag as a float (the risk head's target)."""
        return torch.as_tensor(self.diverged, dtype=torch.float32)

    def scores(self) -> torch.Tensor:
        """Each candidate's normal score among the target pool (the auxiliary target)."""
        oriented = -self.problem.objective.sign * self.values
        return torch.as_tensor(normal_scores_by_level(oriented, np.zeros(len(oriented))), dtype=torch.float32)

    def states(self, prefixes: list[list[int]]):
        """Batched network inputs after each prefix of target candidate ids (a prefix repeated in
        the batch, as the empty one of every copy of a rollout group, is computed once)."""
        x, horizon = self.view.cand_x, self.horizon
        level = self.view.target_level
        made = {
            p: self.view.state(
                x[list(p)], np.full(len(p), level), self.values[list(p)], (horizon - len(p)) / horizon,
                horizon - len(p), self.diverged[list(p)],
            )
            for p in dict.fromkeys(map(tuple, prefixes))
        }
        return batch([made[tuple(p)] for p in prefixes])


@dataclass(frozen=True)
class EpisodeOracle:
    """An oracle for target queries (`bench.loop.run`) from the target outcomes and divergence
    flags in candidate id order, snapping a configuration as the harness's oracle does (`rules.snap`)."""

    problem: Problem
    values: np.ndarray
    diverged: np.ndarray

    def evaluate(self, query: Query) -> Outcome:
        if query.fidelity != self.problem.target:
            raise ValueError(f"an episode's oracle answers target queries only, not {query.fidelity}")
        pool = self.problem.arrays()
        i, distance = rules.snap(query, pool.x, self.problem.encoder)
        return Outcome(float(self.values[i]), self.problem.fidelities[-1].cost, dict(pool.records[i]),
                       query.fidelity, distance > rules.SNAP_TOLERANCE, distance, i, bool(self.diverged[i]))


def draw(
    data: TrainingData,
    rng: np.random.Generator,
    n: int,
    cross_fidelity: bool = True,
    experiments: list[str] | None = None,
    risk: bool = True,
) -> list[TrainingEpisode]:
    """`n` episodes drawn as `TrainingData.draw` does (experiment, protocol, budget, seed)."""
    out = []
    for _ in range(n):
        exp, prior, budget = data.draw(rng, experiments)
        seed = int(rng.integers(2**31))
        out.append(TrainingEpisode.of(data, exp, prior, budget, seed, cross_fidelity, risk))
    return out


def validation_priors(data: TrainingData, exp: str) -> list[Prior]:
    """The priors `exp`'s validation episodes get: the ones the method is tested under
    (`data.priors`) and the `ladder` suite's distances, those `exp` offers; a prior giving the
    same runs as an earlier one (a distance every cheaper fidelity meets, without a budget, is
    the `paper` prior) is left out."""
    task, seen, out = data.task, set(), []
    ladder = load_suite("ladder")
    for prior in (*data.priors, *(Prior(ladder.prior, gap=g) for g in ladder.gaps or ())):
        if not task.offers(exp, prior):
            continue
        key = (prior.kind, tuple(f.name for f in task.prior_fidelities(exp, prior)), prior.budget)
        if key not in seen:
            seen.add(key)
            out.append(prior)
    return out


def validation_set(
    data: TrainingData, budgets=VALIDATION_BUDGETS, seeds=VALIDATION_SEEDS, cross_fidelity: bool = True,
    risk: bool = True,
) -> list[TrainingEpisode]:
    """Fixed episodes of the validation experiments (real, unshifted problems) for model
    selection: every `validation_priors` prior, every budget of `budgets` that is at most half
    the target pool (else 1), `seeds` episode seeds."""
    out = []
    for exp in data.validation:
        pool = len(data.task.arrays(exp, data.task.experiment(exp).target.name)[1])
        for prior in validation_priors(data, exp):
            for budget in [b for b in budgets if b <= pool / 2] or [1]:
                out += [TrainingEpisode.of(data, exp, prior, budget, VALIDATION_SEED_BASE + s,
                                           cross_fidelity, risk) for s in range(seeds)]
    return out


def episode_reward(pregret: np.ndarray, shaping: float) -> np.ndarray:
    """The reward of played episodes from their pregret after each step (..., T): minus the
    final pregret (the reported score, `Scorer.episode`) minus `shaping` x the mean over the
    steps (reaching a good configuration sooner). With `shaping` 0 (the presets' setting) it is
    exactly minus the reported score."""
    pregret = np.asarray(pregret, float)
    return -pregret[..., -1] - shaping * pregret.mean(axis=-1)


def risk_loss(risk: torch.Tensor, diverged: torch.Tensor) -> torch.Tensor:
    """The divergence auxiliary loss: binary cross-entropy of the risk logits (B, N) against
    the candidates' divergence flags (N,), mean over every entry. No `pos_weight`: divergence is
    rare (none in most experiments), and up-weighting it would make the head's probabilities
    uncalibrated, while what the policy needs from it is the actual chance that a pick diverges
    (a diverged pick costs pregret near 1, so even a small calibrated probability matters)."""
    return nn.functional.binary_cross_entropy_with_logits(risk, diverged.expand_as(risk))


class Rollout(NamedTuple):
    logp: torch.Tensor  # (G, T) log-probabilities of the actions, with grad
    ref: torch.Tensor | None  # (G, T) the reference policy's, or None
    nll: torch.Tensor  # auxiliary Gaussian NLL of the predicted scores, mean over steps
    pregret: np.ndarray  # (G, T) each copy's pregret after every step
    risk: torch.Tensor  # auxiliary BCE of the divergence logits (`PolicyNet`), mean over steps
    actions: np.ndarray  # (G, T) the candidate ids each copy asked, in order


def rollout(
    net: PolicyNet,
    ep: TrainingEpisode,
    group: int,
    generator: torch.Generator | None,
    reference: PolicyNet | None = None,
) -> Rollout:
    """Play `group` copies of `ep` with the policy (sampling from `generator`; greedy when it is
    None): log-probabilities, the reference's, the auxiliary losses and each copy's pregret after
    every step, and the candidates asked (`Rollout`)."""
    n, horizon = len(ep.values), ep.horizon
    chosen = [[] for _ in range(group)]
    logps, refs, nll, bce = [], [], 0.0, 0.0
    truth, diverged = ep.scores(), ep.risks()
    sign = ep.problem.objective.sign
    best = np.full(group, np.inf * sign)
    pregret = np.zeros((group, horizon))
    for t in range(horizon):
        inputs = ep.states(chosen)
        logit, mean, log_var, risk = net(*inputs)
        tried = torch.zeros(group, n, dtype=torch.bool)
        for g, c in enumerate(chosen):
            tried[g, c] = True
        logp = logit.masked_fill(tried, float("-inf")).log_softmax(-1)
        if generator is None:
            action = logp.argmax(-1)
        else:
            action = torch.multinomial(logp.detach().exp(), 1, generator=generator).squeeze(-1)
        logps.append(logp.gather(1, action[:, None]).squeeze(1))
        if reference is not None:
            with torch.no_grad():
                ref_logit = reference(*inputs)[0].masked_fill(tried, float("-inf")).log_softmax(-1)
            refs.append(ref_logit.gather(1, action[:, None]).squeeze(1))
        nll = nll + gaussian_nll(mean, log_var, truth.expand_as(mean))
        bce = bce + risk_loss(risk, diverged)
        for g, a in enumerate(action.tolist()):
            chosen[g].append(a)
        values = ep.values[action.numpy()]
        best = np.where(sign * values < sign * best, values, best)
        pregret[:, t] = ep.pregret(best)
    return Rollout(
        torch.stack(logps, 1), torch.stack(refs, 1) if refs else None, nll / horizon, pregret, bce / horizon,
        np.array(chosen, int).reshape(group, horizon),
    )


def final_pregrets(net: PolicyNet, episodes: list[TrainingEpisode]) -> dict[str, list[float]]:
    """Per task, the greedy policy's final pregret on each of `episodes` (the harness's primary
    score of the same episodes)."""
    finals: dict[str, list[float]] = {}
    with torch.no_grad():
        for ep in episodes:
            finals.setdefault(ep.key[0], []).append(float(rollout(net, ep, 1, None).pregret[0, -1]))
    return finals


def greedy_pregret(net: PolicyNet, episodes: list[TrainingEpisode]) -> float:
    """Mean final pregret of the greedy policy over `episodes` (validation, model selection); over
    several tasks, the mean of the per-task means (each task weighs the same, as in
    `bench.training.train`)."""
    if not episodes:
        return float("nan")
    return float(np.mean([np.mean(v) for v in final_pregrets(net, episodes).values()]))
