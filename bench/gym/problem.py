"""What an optimizer sees (`Problem`), what it asks (`Query`) and what it is told (`Outcome`)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import pandas as pd
from ConfigSpace import ConfigurationSpace


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
    config: dict[str, Any]
    fidelity: str


@dataclass(frozen=True)
class Outcome:
    """The table's answer: the configuration actually run (after snapping) and its result."""

    value: float
    cost: float
    config: dict[str, Any]
    fidelity: str
    snapped: bool
    distance: float = 0.0


@dataclass(frozen=True)
class Problem:
    """Everything an optimizer may know about one experiment; never the target outcomes."""

    task: str
    experiment: str
    space: ConfigurationSpace
    fidelities: tuple[Fidelity, ...]  # cheapest first; the last one is the target
    objective: Objective
    budget: Budget
    prior: pd.DataFrame  # columns: fidelity, <config params>, value
    description: str
    pools: Mapping[str, pd.DataFrame] = field(repr=False)  # fidelity -> candidate configs

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

    def affordable(self, spent: float, trials: int) -> list[str]:
        """Fidelities a next query may use (cheapest first). Trial budgets: the target, while
        trials are left. Cost budgets: those whose cost fits what is left."""
        left = self.remaining(spent, trials)
        if self.budget.kind == "trials":
            return [self.target] if left >= 1 - 1e-9 else []
        return [f.name for f in self.fidelities if f.cost <= left * (1 + 1e-9) + 1e-12]

    def fidelity(self, name: str) -> Fidelity:
        for f in self.fidelities:
            if f.name == name:
                return f
        raise KeyError(f"{self.experiment} has no fidelity {name!r}")

    def candidates(self, fidelity: str | None = None) -> pd.DataFrame:
        """The configurations the table holds at `fidelity` (default: the target); no outcomes."""
        return self.pools[fidelity or self.target].copy()

    def descriptors(self) -> pd.DataFrame:
        """One row per fidelity (index: name): its descriptors and `cost` in GPU-hours."""
        return pd.DataFrame(
            [{**f.descriptors, "cost": f.cost} for f in self.fidelities],
            index=pd.Index([f.name for f in self.fidelities], name="fidelity"),
        )
