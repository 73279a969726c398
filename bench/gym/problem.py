"""What an optimizer sees (`Problem`), what it asks (`Query`) and what it is told (`Outcome`)."""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import pandas as pd
from ConfigSpace import ConfigurationSpace

from bench.gym.space import Encoder


@dataclass(frozen=True)
class Objective:
    name: str
    direction: Literal["minimize", "maximize"]
    unit: str = ""

    @property
    def sign(self) -> float:
        """Multiply a value by this to get a quantity to minimise."""
        return 1.0 if self.direction == "minimize" else -1.0

    def best(self, values) -> float:
        values = np.asarray(values, float)
        return float(values.min() if self.direction == "minimize" else values.max())

    def worst(self, values) -> float:
        values = np.asarray(values, float)
        return float(values.max() if self.direction == "minimize" else values.min())

    def is_better(self, a: float, b: float) -> bool:
        return self.sign * a < self.sign * b


@dataclass(frozen=True)
class Fidelity:
    """A level of cost: numeric descriptors (params, tokens, ...) and GPU-hours per run."""

    name: str
    descriptors: Mapping[str, float]
    cost: float


@dataclass(frozen=True)
class Budget:
    """`trials`: number of queries (each counts one, whatever its fidelity).

    `cost`: GPU-hours, in units of one target-fidelity run (amount 3 = three target runs' worth),
    so one suite fits tasks of any scale. A query that does not fit what is left is refused (not
    run, not charged); the episode ends once no fidelity fits.
    """

    kind: Literal["trials", "cost"]
    amount: float

    def __str__(self) -> str:
        unit = "trials" if self.kind == "trials" else "target-run equivalents of GPU-hours"
        return f"{self.amount:g} {unit}"


@dataclass(frozen=True)
class Query:
    """A configuration to run at a fidelity; `candidate` may name it by its id in the episode's
    pool at that fidelity (`Problem.arrays`), which skips snapping. `info`: what the optimizer
    wants logged with the trial (an LLM's reasoning and token counts, a policy's rationale)."""

    config: dict[str, Any]
    fidelity: str
    candidate: int | None = None
    info: Mapping[str, Any] = field(default_factory=dict, compare=False)


@dataclass(frozen=True)
class Outcome:
    """The table's answer: the configuration actually run (after snapping), its candidate id in
    the episode's pool, and its result (`diverged`: the run diverged, by the task's rule)."""

    value: float
    cost: float
    config: dict[str, Any]
    fidelity: str
    snapped: bool
    distance: float = 0.0
    candidate: int | None = None
    diverged: bool = False


@dataclass(frozen=True)
class Pool:
    """The candidates at one fidelity as arrays, in one order: configurations (plain dicts, and a
    frame built on first use) and their unit-cube encodings. Candidate id i is row i. Holds no
    outcomes, and nothing that maps its rows to another order (the oracle keeps that)."""

    records: tuple[dict[str, Any], ...] = field(repr=False)
    x: np.ndarray = field(repr=False)  # (n, d) encodings
    columns: tuple[str, ...] = ()

    @classmethod
    def of(cls, configs: pd.DataFrame, x: np.ndarray) -> Pool:
        columns = {c: configs[c].tolist() for c in configs.columns}  # Python scalars, column types
        records = tuple(dict(zip(columns, row, strict=True)) for row in zip(*columns.values(), strict=True))
        return cls(records, x, tuple(configs.columns))

    def take(self, order: np.ndarray) -> Pool:
        """The same candidates, in `order` (new id i is old id order[i])."""
        order = np.asarray(order)
        return Pool(tuple(map(self.records.__getitem__, order.tolist())), self.x[order], self.columns)

    @functools.cached_property
    def configs(self) -> pd.DataFrame:
        return pd.DataFrame.from_records(list(self.records), columns=list(self.columns))

    def __len__(self) -> int:
        return len(self.x)


def descriptor_matrix(fidelities) -> np.ndarray:
    """One row per fidelity: log10 of each descriptor, then of the GPU-hours per run (the
    features the Gymnasium observation carries)."""
    keys = list(fidelities[0].descriptors)
    return np.array([[np.log10(max(f.descriptors.get(k, 1.0), 1e-30)) for k in keys]
                     + [np.log10(max(f.cost, 1e-30))] for f in fidelities], np.float32)


@dataclass(frozen=True)
class Problem:
    """Everything an optimizer may know about one experiment; never the target outcomes."""

    task: str
    experiment: str
    space: ConfigurationSpace
    fidelities: tuple[Fidelity, ...]  # cheapest first; the last one is the target
    objective: Objective
    budget: Budget
    prior: pd.DataFrame  # columns: fidelity, <config params>, value, diverged (the task's rule)
    description: str
    # fidelity -> candidates, in the episode's order: the target and the fidelities the suite gives
    # (the prior's on trial budgets, every one on cost budgets); a rung withheld by a gap is absent
    pools: Mapping[str, Pool] = field(repr=False)

    @functools.cached_property
    def encoder(self) -> Encoder:
        return Encoder(self.space)

    @property
    def target(self) -> str:
        return self.fidelities[-1].name

    @property
    def params(self) -> list[str]:
        return list(self.space.keys())

    def budget_gpu_hours(self) -> float:
        """GPU-hours the budget buys (cost budgets; trial budgets: `amount` target runs' worth)."""
        return self.budget.amount * self.fidelities[-1].cost

    def remaining(self, spent: float, trials: int) -> float:
        """What is left after `trials` queries costing `spent` GPU-hours: GPU-hours on cost
        budgets, trials on trial budgets."""
        if self.budget.kind == "cost":
            return self.budget_gpu_hours() - spent
        return self.budget.amount - trials

    def fidelity(self, name: str) -> Fidelity:
        for f in self.fidelities:
            if f.name == name:
                return f
        raise KeyError(f"{self.experiment} has no fidelity {name!r}")

    def candidates(self, fidelity: str | None = None) -> pd.DataFrame:
        """The configurations the table holds at `fidelity` (default: the target), row i being
        candidate id i; no outcomes."""
        return self.pools[fidelity or self.target].configs.copy()

    def arrays(self, fidelity: str | None = None) -> Pool:
        """The candidates at `fidelity` (default: the target) as arrays, for the per-trial path."""
        return self.pools[fidelity or self.target]

    def descriptor_matrix(self) -> np.ndarray:
        """(fidelities, descriptors + 1), cheapest first (`descriptor_matrix`)."""
        return descriptor_matrix(self.fidelities)

    @functools.cached_property
    def prior_arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The prior as arrays: unit-cube encodings (P, d), fidelity index (P,) into
        `fidelities`, values (P,) in the objective's units."""
        levels = {f.name: i for i, f in enumerate(self.fidelities)}
        level = np.array([levels[f] for f in self.prior["fidelity"].tolist()], dtype=int)
        x = self.encoder(self.prior[self.params]) if len(self.prior) else np.zeros((0, self.encoder.width))
        return x, level, self.prior["value"].to_numpy(float)

    def descriptors(self) -> pd.DataFrame:
        """One row per fidelity (index: name): its descriptors and `cost` in GPU-hours."""
        return pd.DataFrame(
            [{**f.descriptors, "cost": f.cost} for f in self.fidelities],
            index=pd.Index([f.name for f in self.fidelities], name="fidelity"),
        )
