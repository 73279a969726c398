"""Tasks, experiments and outcome tables; the oracle that answers queries from the table."""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import pandas as pd
from ConfigSpace import ConfigurationSpace

from bench.errors import BenchError
from bench.gym.problem import Budget, Fidelity, Objective, Outcome, Pool, Problem, Query
from bench.gym.space import Encoder, nearest

PRIOR_STREAM, POOL_STREAM = 1, 2  # independent random streams of an episode seed


@dataclass(frozen=True)
class Prior:
    """What an episode is given up front (a suite's protocol).

    `kind`: the experiment's cheaper-fidelity runs (`cheaper`) or nothing (`none`).
    `gap` g: only fidelities whose cost is at most the target's / g (the extrapolation distance).
    `budget` k: a random subset of those runs worth at most k target runs of GPU-hours, drawn with
    the episode seed: runs are taken in a seeded random order, each kept if it still fits.
    """

    kind: Literal["cheaper", "none"] = "cheaper"
    gap: float | None = None
    budget: float | None = None

    @classmethod
    def of(cls, value: Prior | str) -> Prior:
        return value if isinstance(value, Prior) else cls(kind=value)  # type: ignore[arg-type]


PriorPolicy = Prior | Literal["cheaper", "none"]


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
    # Caches, built on first use (`dataclasses.replace(task, table=...)` starts them afresh):
    _pools: dict = field(default_factory=dict, init=False, repr=False)  # (exp, fid) -> outcomes
    _arrays: dict = field(default_factory=dict, init=False, repr=False)  # (exp, fid) -> (Pool, values)

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
        """Configurations and values at one (experiment, fidelity), index 0..n-1 (table order)."""
        if not self._pools:
            columns = [*self.space.keys(), "value"]
            for key, rows in self.table.groupby(["experiment", "fidelity"], sort=False):
                self._pools[key] = rows[columns].reset_index(drop=True)
        return self._pools.get((experiment, fidelity), pd.DataFrame(columns=[*self.space.keys(), "value"]))

    def arrays(self, experiment: str, fidelity: str) -> tuple[Pool, np.ndarray]:
        """The candidates of one (experiment, fidelity) as arrays, in table order, and their
        outcomes; built once and shared by every episode."""
        key = (experiment, fidelity)
        if key not in self._arrays:
            rows = self.outcomes(experiment, fidelity)
            configs = rows[list(self.space.keys())]
            self._arrays[key] = (Pool.of(configs, self.encoder(configs)), rows["value"].to_numpy(float))
        return self._arrays[key]

    @functools.cached_property
    def encoder(self) -> Encoder:
        return Encoder(self.space)

    def permutation(self, experiment: str, fidelity: str, seed: int) -> np.ndarray:
        """The episode's order of a fidelity's candidates: candidate id i is table row perm[i]."""
        level = [f.name for f in self.experiment(experiment).fidelities].index(fidelity)
        n = len(self.outcomes(experiment, fidelity))
        return np.random.default_rng([seed, POOL_STREAM, level]).permutation(n)

    def prior_fidelities(self, experiment: str, prior: PriorPolicy = "cheaper") -> list[Fidelity]:
        """The cheaper fidelities whose runs `prior` may hold (cheapest first)."""
        prior, exp = Prior.of(prior), self.experiment(experiment)
        if prior.kind == "none":
            return []
        limit = exp.target.cost / prior.gap if prior.gap else np.inf
        return [f for f in exp.fidelities[:-1] if f.cost <= limit * (1 + 1e-9)]

    def problem(self, experiment: str, budget: Budget, prior: PriorPolicy = "cheaper",
                seed: int = 0) -> Problem:
        """What an optimizer sees of one experiment in the episode with `seed`.

        Candidate pools and prior rows are shuffled with the seed: the source tables' row order
        (often sorted by run, grid position or outcome) must carry no information.
        """
        exp, prior = self.experiment(experiment), Prior.of(prior)
        params = list(self.space.keys())
        rng = np.random.default_rng([seed, PRIOR_STREAM])
        fids = self.prior_fidelities(experiment, prior)
        if fids:
            prior_df = pd.concat([self.outcomes(exp.name, f.name).assign(fidelity=f.name, cost=f.cost)
                                  for f in fids], ignore_index=True)
            prior_df = _shuffled(prior_df, rng)
            if prior.budget is not None:
                cap = prior.budget * exp.target.cost
                keep = np.zeros(len(prior_df), dtype=bool)
                spent = 0.0
                for i, c in enumerate(prior_df["cost"].to_numpy(float)):
                    if spent + c <= cap * (1 + 1e-9):
                        keep[i], spent = True, spent + c
                prior_df = prior_df[keep].reset_index(drop=True)
            prior_df = prior_df[["fidelity", *params, "value"]]
        else:
            prior_df = _empty_prior(params)
        pools = {f.name: self.arrays(exp.name, f.name)[0].take(self.permutation(exp.name, f.name, seed))
                 for f in exp.fidelities}
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

    def oracle(self, experiment: str, seed: int = 0) -> Oracle:
        """The oracle of the episode with `seed` (its candidate ids match `problem(..., seed)`)."""
        return Oracle(self, self.experiment(experiment), seed)

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
            + f". Prior: {len(prior)} runs at cheaper fidelities are given"
            + (f" (worth {_worth(exp, prior):.3g} target runs of GPU-hours)." if len(prior) else ".")
        )


def _worth(exp: Experiment, prior: pd.DataFrame) -> float:
    costs = {f.name: f.cost for f in exp.fidelities}
    return float(prior["fidelity"].map(costs).sum() / exp.target.cost)


def _shuffled(df: pd.DataFrame, rng: np.random.Generator) -> pd.DataFrame:
    return df.iloc[rng.permutation(len(df))].reset_index(drop=True)


def _empty_prior(params: list[str]) -> pd.DataFrame:
    return pd.DataFrame(columns=["fidelity", *params, "value"])


class Oracle:
    """Answers the queries of one episode of an experiment by exact lookup.

    Candidate ids are those of the episode with `seed` (`Task.problem(..., seed=seed)`); a query
    without an id is snapped to the nearest candidate in the unit-cube encoding (ties go to the
    lowest id, an order the seed shuffles)."""

    def __init__(self, task: Task, experiment: Experiment, seed: int = 0):
        self.task, self.experiment, self.seed = task, experiment, seed
        self._levels: dict[str, tuple[Pool, np.ndarray, float]] = {}

    def _level(self, fidelity: str) -> tuple[Pool, np.ndarray, float]:
        if fidelity not in self._levels:
            fid = next((f for f in self.experiment.fidelities if f.name == fidelity), None)
            if fid is None:
                raise ValueError(f"{self.experiment.name} has no fidelity {fidelity!r}")
            pool, values = self.task.arrays(self.experiment.name, fidelity)
            order = self.task.permutation(self.experiment.name, fidelity, self.seed)
            self._levels[fidelity] = (pool.take(order), values[order], fid.cost)
        return self._levels[fidelity]

    def evaluate(self, query: Query) -> Outcome:
        pool, values, cost = self._level(query.fidelity)
        if query.candidate is not None:
            i, dist = int(query.candidate), 0.0
            if not 0 <= i < len(pool):
                raise ValueError(f"candidate {i} is not in the pool of {len(pool)} at {query.fidelity}")
        else:
            i, dist = nearest(pool.x, self.task.encoder.one(query.config))
        return Outcome(float(values[i]), cost, dict(pool.records[i]), query.fidelity, dist > 1e-9, dist, i)

    def target_values(self) -> np.ndarray:
        return self.task.arrays(self.experiment.name, self.experiment.target.name)[1]

    def optimum(self) -> float:
        return self.task.objective.best(self.target_values())

    def median(self) -> float:
        return float(np.median(self.target_values()))

    def worst(self) -> float:
        """The worst target outcome: the score of a failed episode."""
        return self.task.objective.worst(self.target_values())
