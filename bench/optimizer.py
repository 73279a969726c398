"""The `Optimizer` contract: ask/tell/recommend; the loop that drives it is `bench.loop`."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import pandas as pd

from bench.gym import rules
from bench.gym.problem import Outcome, Problem, Query
from bench.gym.space import nearest


class NoRecommendation(Exception):
    """`recommend()` has nothing to recommend (e.g. no target-fidelity observation yet).

    The harness scores such an episode as a failure; it is the only exception it catches there.
    """


class Optimizer(ABC):
    """Proposes configurations for one `Problem`; every random choice flows from `seed`.

    Subclasses implement `ask`; `tell` records the history (call `super().tell`), and
    `recommend` defaults to the best configuration seen at the target fidelity.
    """

    def __init__(self, problem: Problem, seed: int):
        self.problem = problem
        self.seed = seed
        self.rng = np.random.default_rng(seed)
        self.history: list[tuple[Query, Outcome]] = []
        self._tried = {f: np.zeros(len(pool), dtype=bool) for f, pool in problem.pools.items()}

    @classmethod
    def unavailable(cls, **params) -> list[str]:
        """What stops this optimizer, with these preset parameters, from running here (an API
        key, a checkpoint); empty when it can run."""
        return []

    @abstractmethod
    def ask(self) -> Query: ...

    def tell(self, query: Query, outcome: Outcome) -> None:
        self.history.append((query, outcome))
        if outcome.candidate is not None:
            self._tried[outcome.fidelity][outcome.candidate] = True

    def mark_pending(self, candidate: int, fidelity: str | None = None) -> None:
        """Treat candidate `candidate` as taken without an outcome (a suggestion awaiting its
        run, `bench suggest`): pool helpers stop offering it."""
        self._tried[fidelity or self.problem.target][candidate] = True

    def recommend(self) -> dict[str, Any]:
        at_target = [o for _, o in self.history if o.fidelity == self.problem.target]
        if not at_target:
            raise NoRecommendation(f"{type(self).__name__} has no target-fidelity observation yet")
        best = min(at_target, key=lambda o: self.problem.objective.sign * o.value)
        return best.config

    def predict(self, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
        """The method's prediction of the target outcome of target candidates `ids`, from what
        it has been told: (mean, standard deviation) in the objective's units (std NaN when it
        has no uncertainty), or None when it does not predict outcomes (the default)."""
        return None

    # Budget ---------------------------------------------------------------------------------
    def spent(self) -> float:
        """GPU-hours spent so far in this episode (every evaluated query)."""
        return sum(o.cost for _, o in self.history)

    def remaining(self) -> float:
        """What is left of the budget: GPU-hours on cost budgets, trials on trial budgets."""
        return self.problem.remaining(self.spent(), len(self.history))

    def affordable(self) -> list[str]:
        """Fidelities the next query may use, cheapest first; the harness refuses any other."""
        return rules.affordable(self.problem, self.spent(), len(self.history))

    # Helpers for pool-based methods --------------------------------------------------------
    def observations(self, fidelity: str | None = None) -> pd.DataFrame:
        """Evaluated (snapped) configurations and values at `fidelity` (default: the target)."""
        fidelity = fidelity or self.problem.target
        rows = [{**o.config, "value": o.value} for _, o in self.history if o.fidelity == fidelity]
        return pd.DataFrame(rows, columns=[*self.problem.params, "value"])

    def untried_ids(self, fidelity: str | None = None) -> np.ndarray:
        """Ids of the candidates at `fidelity` (default: the target) not evaluated yet."""
        return np.flatnonzero(~self._tried[fidelity or self.problem.target])

    def pool_ids(self, fidelity: str | None = None) -> np.ndarray:
        """Untried candidate ids, or all of them once every one was tried (re-asks cost budget)."""
        ids = self.untried_ids(fidelity)
        return ids if len(ids) else np.arange(len(self._tried[fidelity or self.problem.target]))

    def untried(self, fidelity: str | None = None) -> pd.DataFrame:
        """Candidates at `fidelity` (default: the target) not evaluated yet; the index holds their ids."""
        pool = self.problem.arrays(fidelity).configs
        return pool.iloc[self.untried_ids(fidelity)]

    def pool(self, fidelity: str | None = None) -> pd.DataFrame:
        """Untried candidates, or all of them once every one was tried; the index holds their ids."""
        return self.problem.arrays(fidelity).configs.iloc[self.pool_ids(fidelity)]

    def random_candidate(self, fidelity: str | None = None) -> dict:
        """A uniform draw among the untried candidates (all once every one was tried)."""
        ids = self.pool_ids(fidelity)
        return dict(self.problem.arrays(fidelity).records[ids[int(self.rng.integers(len(ids)))]])

    def nearest_untried(self, config: dict, fidelity: str | None = None) -> dict:
        """The untried candidate nearest `config` (unit-cube distance) — for snapping proposals."""
        arrays, ids = self.problem.arrays(fidelity), self.pool_ids(fidelity)
        i, _ = nearest(arrays.x[ids], self.problem.encoder.one(config))
        return dict(arrays.records[ids[i]])

    def query(self, config: dict) -> Query:
        """A query at the target fidelity."""
        return Query(dict(config), self.problem.target)

    def query_candidate(self, candidate: int, fidelity: str | None = None) -> Query:
        """A query naming candidate id `candidate` at `fidelity` (default: the target): no snapping."""
        fidelity = fidelity or self.problem.target
        return Query(dict(self.problem.arrays(fidelity).records[candidate]), fidelity, int(candidate))


@dataclass(frozen=True)
class Checkpoint:
    """A learned method's trained state (tensors and plain values) and what it was trained on."""

    state: dict
    meta: dict


class LearnedOptimizer(Optimizer):
    """An optimizer meta-trained before its episodes (`bench.training` trains it and files its
    checkpoint; the harness hands the checkpoint to every episode).

    Subclasses provide
        VERSION      bump when training changes: older checkpoints are not reused
        meta_train   the trained state from `data` (`bench.training.TrainingData`: one task's train
                     experiments, or a tuple of them for a preset with `trains_on: builtin`), as
                     tensors and plain values (`torch.save`-able with `weights_only=True`); it calls
                     `progress(fraction)` as it goes; an optional "report" entry (plain values) is
                     copied to the checkpoint's meta and printed by `bench train`
    and are built as `cls(problem, seed, checkpoint=..., **params)`.
    """

    VERSION: ClassVar[int] = 0

    def __init__(self, problem: Problem, seed: int, *, checkpoint: Checkpoint):
        super().__init__(problem, seed)
        self.checkpoint = checkpoint

    @classmethod
    @abstractmethod
    def meta_train(cls, data, seed: int, progress: Callable[[float], None], **params) -> dict: ...
