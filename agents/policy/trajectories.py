"""Trajectories: the episodes the teachers played (stage 2), as the policy and the LLM backend
learn from them.

A trajectory is replayable: `curated.problem(experiment, Budget("trials", budget), prior, seed)`
rebuilds exactly what the teacher saw (`curated` is the curated task of stage 1), and each step
names the candidate id it asked in that episode, with the rationale of the cross-fidelity
reasoning behind it. `nregret` is the episode's final normalised regret (target outcomes are
known for train experiments only; a trajectory never comes from a test experiment).
"""

from __future__ import annotations

from dataclasses import dataclass

from bench.gym.task import Prior


@dataclass(frozen=True)
class Step:
    candidate: int  # target candidate id in the episode's (shuffled) order
    value: float  # its outcome, in the objective's units
    rationale: str


@dataclass(frozen=True)
class Trajectory:
    experiment: str  # of the curated task
    prior: Prior
    budget: int  # target trials
    seed: int  # the episode seed (pool order, prior draw)
    teacher: str
    steps: tuple[Step, ...]
    nregret: float  # final normalised regret (best target value found vs the pool's optimum)
    task: str = ""  # the (curated) task's name

    @property
    def episode(self) -> tuple:
        """What identifies the episode it was played in."""
        return (self.task, self.experiment, self.prior, self.budget, self.seed)

    def to_dict(self) -> dict:
        return {
            "experiment": self.experiment,
            "prior": [self.prior.kind, self.prior.gap, self.prior.budget],
            "budget": self.budget,
            "seed": self.seed,
            "teacher": self.teacher,
            "steps": [[s.candidate, s.value, s.rationale] for s in self.steps],
            "nregret": self.nregret,
            "task": self.task,
        }

    @classmethod
    def from_dict(cls, d: dict) -> Trajectory:
        kind, gap, budget = d["prior"]
        return cls(
            d["experiment"],
            Prior(kind, gap, budget),
            int(d["budget"]),
            int(d["seed"]),
            d["teacher"],
            tuple(Step(int(c), float(v), str(r)) for c, v, r in d["steps"]),
            float(d["nregret"]),
            d.get("task", ""),
        )
