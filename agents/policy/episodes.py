"""Training episodes of the policy and how it plays them (distillation, RL, validation).

A `TrainingEpisode` is a `Problem` of a train (or curated) experiment with its target outcomes in the
episode's candidate order: training needs them for rewards and targets, and only train
experiments are ever made into one. Rollouts play `group` copies of an episode in lockstep at the
target fidelity (trial budgets), batched through the network. Every score comes from the
experiment's `Scorer` (`bench.scores`): the policy trains on nregret, capped at `REGRET_CLIP`,
and is selected on it (`greedy_nregret`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from agents.policy.features import EpisodeView
from agents.policy.model import PolicyNet, batch
from bench.gym import rules
from bench.gym.problem import Budget, Outcome, Problem, Query
from bench.gym.task import Prior
from bench.numerics import normal_scores_by_level
from bench.scores import Scorer
from bench.training import TrainingData

REGRET_CLIP = 3.0  # nregret above this counts as this in rewards (a diverged run must not dominate)


@dataclass
class TrainingEpisode:
    problem: Problem
    values: np.ndarray  # target outcomes, candidate id order
    view: EpisodeView
    key: tuple  # (task, experiment, prior, budget, seed): what rebuilds it (`Trajectory.episode`)
    scorer: Scorer  # the scores of the experiment's target pool (`Task.scorer`)

    @classmethod
    def of(
        cls, data: TrainingData, exp: str, prior: Prior, budget: int, seed: int, cross_fidelity: bool = True
    ) -> TrainingEpisode:
        task = data.task
        problem = task.problem(exp, Budget("trials", budget), prior, seed)
        target = task.experiment(exp).target.name
        values = task.arrays(exp, target)[1][task.permutation(exp, target, seed)]
        return cls(
            problem, values, EpisodeView(problem, cross_fidelity), (task.name, exp, prior, budget, seed),
            task.scorer(exp),
        )

    def oracle(self) -> EpisodeOracle:
        """Answers this episode's target queries from `values` (curated episodes have no table)."""
        return EpisodeOracle(self.problem, self.values)

    @property
    def horizon(self) -> int:
        return int(self.problem.budget.amount)

    def nregret(self, best: np.ndarray) -> np.ndarray:
        """nregret of best target values (the experiment's `Scorer`)."""
        return self.scorer.nregret(best)

    def scores(self) -> torch.Tensor:
        """Each candidate's normal score among the target pool (the auxiliary target)."""
        oriented = -self.problem.objective.sign * self.values
        return torch.as_tensor(normal_scores_by_level(oriented, np.zeros(len(oriented))), dtype=torch.float32)

    def states(self, prefixes: list[list[int]]):
        """Batched network inputs after each prefix of target candidate ids."""
        x, horizon = self.view.cand_x, self.horizon
        level = self.view.target_level
        out = [
            self.view.state(
                x[p], np.full(len(p), level), self.values[p], (horizon - len(p)) / horizon, horizon - len(p)
            )
            for p in prefixes
        ]
        return batch(out)


@dataclass(frozen=True)
class EpisodeOracle:
    """An oracle for target queries (`bench.loop.run`) from the target outcomes in candidate id
    order, snapping a configuration as the harness's oracle does (`rules.snap`)."""

    problem: Problem
    values: np.ndarray

    def evaluate(self, query: Query) -> Outcome:
        if query.fidelity != self.problem.target:
            raise ValueError(f"an episode's oracle answers target queries only, not {query.fidelity}")
        pool = self.problem.arrays()
        i, distance = rules.snap(query, pool.x, self.problem.encoder)
        return Outcome(float(self.values[i]), self.problem.fidelities[-1].cost, dict(pool.records[i]),
                       query.fidelity, distance > rules.SNAP_TOLERANCE, distance, i)


def draw(
    data: TrainingData,
    rng: np.random.Generator,
    n: int,
    cross_fidelity: bool = True,
    experiments: list[str] | None = None,
) -> list[TrainingEpisode]:
    """`n` episodes drawn as `TrainingData.draw` does (experiment, protocol, budget, seed)."""
    out = []
    for _ in range(n):
        exp, prior, budget = data.draw(rng, experiments)
        out.append(TrainingEpisode.of(data, exp, prior, budget, int(rng.integers(2**31)), cross_fidelity))
    return out


def validation_set(
    data: TrainingData, budgets=(1, 3, 5), seeds=(0, 1), cross_fidelity: bool = True
) -> list[TrainingEpisode]:
    """Fixed episodes of the validation experiments (real, unshifted problems) for model selection."""
    out = []
    for exp in data.validation:
        pool = len(data.task.arrays(exp, data.task.experiment(exp).target.name)[1])
        for prior in data.priors:
            if not data.task.offers(exp, prior):
                continue
            for budget in [b for b in budgets if b <= pool / 2] or [1]:
                out += [TrainingEpisode.of(data, exp, prior, budget, 20_000 + s, cross_fidelity)
                        for s in seeds]
    return out


def rollout(
    net: PolicyNet,
    ep: TrainingEpisode,
    group: int,
    generator: torch.Generator | None,
    reference: PolicyNet | None = None,
):
    """Play `group` copies of `ep` with the policy (sampling from `generator`; greedy when it is
    None). Returns log-probabilities (G, T) with grad, the reference policy's (G, T) or None,
    the auxiliary NLL summed over steps, and each copy's nregret after every step (G, T)."""
    n, horizon = len(ep.values), ep.horizon
    chosen = [[] for _ in range(group)]
    logps, refs, nll = [], [], 0.0
    truth = ep.scores()
    best = np.full(group, np.inf * ep.problem.objective.sign)
    regrets = np.zeros((group, horizon))
    for t in range(horizon):
        inputs = ep.states(chosen)
        logit, mean, log_var = net(*inputs)
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
        nll = nll + 0.5 * (log_var + (truth - mean) ** 2 * torch.exp(-log_var)).mean()
        for g, a in enumerate(action.tolist()):
            chosen[g].append(a)
        values = ep.values[action.numpy()]
        best = np.where(ep.problem.objective.sign * values < ep.problem.objective.sign * best, values, best)
        regrets[:, t] = ep.nregret(best)
    return (
        torch.stack(logps, 1),
        torch.stack(refs, 1) if refs else None,
        nll / horizon,
        np.minimum(regrets, REGRET_CLIP),
    )


def greedy_nregret(net: PolicyNet, episodes: list[TrainingEpisode]) -> float:
    """Mean final nregret of the greedy policy over `episodes` (model selection)."""
    if not episodes:
        return float("nan")
    with torch.no_grad():
        return float(np.mean([rollout(net, ep, 1, None)[3][0, -1] for ep in episodes]))
