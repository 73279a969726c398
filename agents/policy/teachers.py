"""Stage 2, trajectory simulation: teachers play the curated episodes; the best trajectories are kept.

Teachers (`TEACHERS`): the strong non-learned baselines `extrapolate` (Step-Law-style optimum
location) and `best-prior`, the `TrendExpert` below greedily and at two sampling temperatures
(diversity the selection can exploit), and `random` for coverage. Each curated episode is played
by every teacher; the `keep` trajectories with the lowest final nregret (then the lowest mean
nregret over the steps: reaching the optimum sooner) are kept. Every step carries the rationale
`EpisodeView.explain` writes for its candidate: the cheap-fidelity trend it extrapolates and the
prediction at the target.
"""

from __future__ import annotations

import numpy as np

from agents.policy.episodes import TrainingEpisode
from agents.policy.features import CANDIDATE_COLUMNS, EpisodeView
from agents.policy.trajectories import Step, Trajectory
from bench.gym.problem import Query
from bench.loop import run
from bench.methods import method
from bench.optimizer import Optimizer

TREND, TO_OPTIMUM = CANDIDATE_COLUMNS.index("trend"), CANDIDATE_COLUMNS.index("to_optimum")
OWN, OWN_SUPPORT = CANDIDATE_COLUMNS.index("own"), CANDIDATE_COLUMNS.index("own_support")


class TrendExpert(Optimizer):
    """The extrapolating expert: each candidate's cheap-fidelity score trend extrapolated to the
    target, minus its distance to the extrapolated optimum, blended with the episode's own target
    runs as they arrive (weight = their kernel support / (support + 1)); greedy at temperature 0,
    else a softmax draw at `temperature`."""

    def __init__(self, problem, seed, temperature: float = 0.0, view: EpisodeView | None = None):
        super().__init__(problem, seed)
        self.view, self.temperature = view or EpisodeView(problem), temperature

    def scores(self) -> np.ndarray:
        _, _, f = self.view.state_after([o for _, o in self.history], 1.0, 1.0)
        prior = f[:, TREND] - 2.0 * f[:, TO_OPTIMUM]
        support = np.expm1(f[:, OWN_SUPPORT])
        weight = support / (support + 1.0)
        return (1 - weight) * prior + weight * 2.0 * f[:, OWN]

    def ask(self) -> Query:
        ids, s = self.pool_ids(), self.scores()
        if self.temperature > 0:
            p = np.exp((s[ids] - s[ids].max()) / self.temperature)
            return self.query_candidate(int(ids[self.rng.choice(len(ids), p=p / p.sum())]))
        return self.query_candidate(int(ids[int(np.argmax(s[ids]))]))


TEACHERS: tuple[tuple[str, dict, int], ...] = (  # (name, parameters, seeds)
    ("extrapolate", {}, 1),
    ("best-prior", {}, 1),
    ("trend-expert", {"temperature": 0.0}, 1),
    ("trend-expert", {"temperature": 0.3}, 2),
    ("trend-expert", {"temperature": 1.0}, 2),
    ("random", {}, 2),
)


def teacher(name: str, params: dict, ep: TrainingEpisode, seed: int) -> Optimizer:
    if name == "trend-expert":  # shares the episode's view when it has every feature
        return TrendExpert(ep.problem, seed, **params, view=ep.view if ep.view.cross_fidelity else None)
    return method(name).make(ep.problem, seed)


def play(ep: TrainingEpisode, optimizer: Optimizer) -> list[int]:
    """The candidate ids `optimizer` runs in `ep` (the harness's loop, `bench.loop`)."""
    return [o.candidate for o in run(optimizer, ep.oracle(), ep.problem).outcomes]


def simulate(episodes: list[TrainingEpisode], seed: int, keep: int = 2) -> list[Trajectory]:
    """Every teacher on every episode; the best `keep` trajectories of each episode."""
    out = []
    for e, ep in enumerate(episodes):
        played = []
        for name, params, seeds in TEACHERS:
            for s in range(seeds):
                chosen = play(ep, teacher(name, params, ep, seed + 1000 * e + s))
                regrets = np.minimum.accumulate(ep.nregret(ep.values[chosen]))
                label = name + "".join(f"@{v}" for v in params.values())
                played.append((float(regrets[-1]), float(regrets.mean()), label, chosen))
        played.sort(key=lambda p: (p[0], p[1]))
        _, exp, prior, budget, episode_seed = ep.key
        for final, _, label, chosen in played[:keep]:
            steps = tuple(
                Step(c, float(ep.values[c]), rationale(ep.view, chosen[:t], ep.values, c))
                for t, c in enumerate(chosen)
            )
            out.append(Trajectory(exp, prior, budget, episode_seed, label, steps, final, ep.problem.task))
    return out


def rationale(view: EpisodeView, before: list[int], values: np.ndarray, candidate: int) -> str:
    """The rationale of asking `candidate` after the target runs `before`, its predicted score
    being the extrapolated trend."""
    x = view.cand_x[before]
    _, _, f = view.state(x, np.full(len(before), view.target_level), values[before], 1.0, 1.0)
    return view.explain(candidate, float(f[candidate, TREND] if view.cross_fidelity else f[candidate, 0]))
