"""Trajectories: the episodes the teachers played (stage 2), as the policy and the LLM backend
learn from them.

A trajectory is replayable: `curated.problem(experiment, Budget("trials", budget), prior, seed)`
rebuilds exactly what the teacher saw (`curated` is the curated task of stage 1), and each step
names the candidate id it asked in that episode, with the rationale of the cross-fidelity
reasoning behind it. `pregret` is the episode's final pregret (the share of the target pool
strictly better than the best run found; target outcomes are known for train experiments only: a
trajectory never comes from a test experiment); `expected` is its teacher configuration's expected
score, the mean final pregret over the episode's siblings (`teachers.simulate`).
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
    pregret: float  # final pregret (`Scorer.pregret` of the best target value found)
    task: str = ""  # the (curated) task's name
    expected: float = float("nan")  # the teacher configuration's mean final pregret on siblings

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
            "pregret": self.pregret,
            "task": self.task,
            "expected": self.expected,
        }

    @classmethod
    def from_dict(cls, d: dict) -> Trajectory:
        if "pregret" not in d:
            raise ValueError("a trajectory without `pregret` (an older format, scored by nregret): "
                             "simulate its episodes again")
        kind, gap, budget = d["prior"]
        return cls(
            d["experiment"],
            Prior(kind, gap, budget),
            int(d["budget"]),
            int(d["seed"]),
            d["teacher"],
            tuple(Step(int(c), float(v), str(r)) for c, v, r in d["steps"]),
            float(d["pregret"]),
            d.get("task", ""),
            float(d.get("expected", "nan")),
        )
