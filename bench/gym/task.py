"""Tasks, experiments and outcome tables; the oracle that answers queries from the table."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import pandas as pd
from ConfigSpace import ConfigurationSpace

from bench.errors import BenchError
from bench.gym.problem import Budget, Fidelity, Objective, Outcome, Problem, Query
from bench.gym.space import Snapper, config_at

PriorPolicy = Literal["cheaper", "none"]


@dataclass(frozen=True)
class Experiment:
    name: str
    split: Literal["train", "test"]
    fidelities: tuple[Fidelity, ...]  # cheapest first; the last one is the target

    @property
    def target(self) -> Fidelity:
        return self.fidelities[-1]


@dataclass
class Task:
    """A family of problems sharing one search space, backed by a long outcome table.

    `table` has one row per (experiment, fidelity, configuration) with columns `experiment`,
    `fidelity`, one per parameter of `space`, and `value` (the objective).
    """

    name: str
    description: str
    space: ConfigurationSpace
    objective: Objective
    experiments: dict[str, Experiment]
    table: pd.DataFrame
    sources: tuple[str, ...] = ()
    simulated: bool = False
    notes: str = ""
    _pools: dict = field(default_factory=dict, repr=False)

    def fidelities(self) -> list[Fidelity]:
        """Every fidelity level of the task's experiments, cheapest first."""
        levels = {f.name: f for e in self.experiments.values() for f in e.fidelities}
        return sorted(levels.values(), key=lambda f: (f.cost, f.name))

    def split(self, split: str) -> list[str]:
        return [e.name for e in self.experiments.values() if e.split == split]

    def experiment(self, name: str) -> Experiment:
        try:
            return self.experiments[name]
        except KeyError:
            raise BenchError(
                f"task {self.name} has no experiment {name!r}; known: {sorted(self.experiments)}"
            ) from None

    def outcomes(self, experiment: str, fidelity: str) -> pd.DataFrame:
        """Configurations and values at one (experiment, fidelity), index 0..n-1."""
        key = (experiment, fidelity)
        if key not in self._pools:
            rows = self.table[(self.table.experiment == experiment) & (self.table.fidelity == fidelity)]
            self._pools[key] = rows[[*self.space.keys(), "value"]].reset_index(drop=True)
        return self._pools[key]

    def problem(self, experiment: str, budget: Budget, prior: PriorPolicy = "cheaper",
                seed: int = 0) -> Problem:
        """What an optimizer sees of one experiment in the episode with `seed`.

        Candidate pools and prior rows are shuffled with the seed: the source tables' row order
        (often sorted by run, grid position or outcome) must carry no information.
        """
        exp = self.experiment(experiment)
        params = list(self.space.keys())
        rng = np.random.default_rng([seed, 0x5EED])
        if prior == "cheaper" and len(exp.fidelities) > 1:
            prior_df = pd.concat(
                [self.outcomes(exp.name, f.name).assign(fidelity=f.name) for f in exp.fidelities[:-1]],
                ignore_index=True)[["fidelity", *params, "value"]]
            prior_df = _shuffled(prior_df, rng)
        else:
            prior_df = _empty_prior(params)
        pools = {f.name: _shuffled(self.outcomes(exp.name, f.name)[params], rng) for f in exp.fidelities}
        return Problem(
            task=self.name,
            experiment=exp.name,
            space=self.space,
            fidelities=exp.fidelities,
            objective=self.objective,
            budget=budget,
            prior=prior_df,
            description=self._describe(exp, budget, prior_df),
            pools=pools,
        )

    def oracle(self, experiment: str) -> Oracle:
        return Oracle(self, self.experiment(experiment))

    def _describe(self, exp: Experiment, budget: Budget, prior: pd.DataFrame) -> str:
        fids = "; ".join(
            f"{f.name} ({', '.join(f'{k}={v:.4g}' for k, v in f.descriptors.items())}; "
            f"{f.cost:.3g} GPU-hours/run)"
            for f in exp.fidelities
        )
        return (
            f"{self.description}\nExperiment: {exp.name}. Objective: {self.objective.direction} "
            f"{self.objective.name}{f' ({self.objective.unit})' if self.objective.unit else ''}.\n"
            f"Fidelities, cheapest first (the last is the target): {fids}.\n"
            f"Budget: {budget}"
            + (" at the target fidelity" if budget.kind == "trials" else ", at any fidelity")
            + f". Prior: {len(prior)} runs at cheaper fidelities are given."
        )


def _shuffled(df: pd.DataFrame, rng: np.random.Generator) -> pd.DataFrame:
    return df.iloc[rng.permutation(len(df))].reset_index(drop=True)


def _empty_prior(params: list[str]) -> pd.DataFrame:
    return pd.DataFrame(columns=["fidelity", *params, "value"])


class Oracle:
    """Answers queries for one experiment by exact lookup, snapping to the nearest candidate."""

    def __init__(self, task: Task, experiment: Experiment):
        self.task, self.experiment = task, experiment
        self._snappers: dict[str, Snapper] = {}

    def _snapper(self, fidelity: str) -> Snapper:
        if fidelity not in self._snappers:
            if fidelity not in {f.name for f in self.experiment.fidelities}:
                raise ValueError(f"{self.experiment.name} has no fidelity {fidelity!r}")
            pool = self.task.outcomes(self.experiment.name, fidelity)
            self._snappers[fidelity] = Snapper(self.task.space, pool)
        return self._snappers[fidelity]

    def evaluate(self, query: Query) -> Outcome:
        snapper = self._snapper(query.fidelity)
        i, dist = snapper.nearest(query.config)
        config = config_at(snapper.pool, i, list(self.task.space.keys()))
        cost = next(f.cost for f in self.experiment.fidelities if f.name == query.fidelity)
        value = float(snapper.pool["value"].iat[i])
        return Outcome(value, cost, config, query.fidelity, dist > 1e-9, dist)

    def target_values(self) -> np.ndarray:
        return self.task.outcomes(self.experiment.name, self.experiment.target.name)["value"].to_numpy()

    def optimum(self) -> float:
        return self.task.objective.best(self.target_values())

    def median(self) -> float:
        return float(np.median(self.target_values()))

    def worst(self) -> float:
        """The worst target outcome: the score of a failed episode."""
        return self.task.objective.worst(self.target_values())
