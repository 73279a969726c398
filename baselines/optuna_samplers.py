"""Optuna samplers (TPE, CMA-ES, GP, QMC) through Optuna's ask/tell interface.

The ConfigSpace space becomes Optuna distributions (`to_distributions`); each sampler is built with
its documented defaults plus the preset's `sampler_params`, seeded with the episode seed, in a study
that minimises `objective.sign * value`. Optuna samples anywhere in the space; each proposal is
mapped to the nearest untried target candidate. When that changes the configuration, the asked
trial is closed as FAIL (every sampler ignores failed trials) and the configuration actually run is
recorded as a COMPLETE trial (`study.add_trial`) that carries the asked trial's system attributes
(CMA-ES keeps its generation and state there), so samplers learn only from real runs.

Warm start (`warm_start=k`): the k target candidates nearest the best cheap runs (most expensive
prior fidelity first, best first) are enqueued before the sampler's own proposals.
"""

from __future__ import annotations

import importlib.util
import warnings
from typing import Any

import optuna
from ConfigSpace import (
    CategoricalHyperparameter,
    ConfigurationSpace,
    Constant,
    UniformFloatHyperparameter,
    UniformIntegerHyperparameter,
)
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)
from optuna.trial import TrialState, create_trial

from bench.errors import BenchError
from bench.gym.problem import Outcome, Problem, Query
from bench.gym.space import Snapper, config_at
from bench.optimizer import Optimizer

SAMPLERS = {
    "tpe": optuna.samplers.TPESampler,
    "cmaes": optuna.samplers.CmaEsSampler,
    "gp": optuna.samplers.GPSampler,
    "qmc": optuna.samplers.QMCSampler,
}


def to_distributions(space: ConfigurationSpace) -> dict[str, BaseDistribution]:
    """Optuna distributions for a ConfigSpace space (a constant is a one-choice categorical)."""
    out: dict[str, BaseDistribution] = {}
    for name, hp in space.items():
        if isinstance(hp, UniformFloatHyperparameter):
            out[name] = FloatDistribution(float(hp.lower), float(hp.upper), log=hp.log)
        elif isinstance(hp, UniformIntegerHyperparameter):
            out[name] = IntDistribution(int(hp.lower), int(hp.upper), log=hp.log)
        elif isinstance(hp, CategoricalHyperparameter):
            out[name] = CategoricalDistribution(list(hp.choices))
        elif isinstance(hp, Constant):
            out[name] = CategoricalDistribution([hp.value])
        else:
            raise BenchError(f"Optuna adapter: unsupported hyperparameter {name} "
                             f"({type(hp).__name__}); use float, int, categorical or constant")
    return out


def to_params(distributions: dict[str, BaseDistribution], config: dict[str, Any]) -> dict[str, Any]:
    """Optuna parameters for a table configuration.

    ConfigSpace rounds float bounds to 13 decimals, so a table's extreme values can lie outside
    them by ~1e-13; they are clipped onto the bounds.
    """
    out = {}
    for name, dist in distributions.items():
        v = config[name]
        out[name] = min(max(float(v), dist.low), dist.high) if isinstance(dist, FloatDistribution) else v
    return out


def warm_start_configs(problem: Problem, k: int) -> list[dict[str, Any]]:
    """The k distinct target candidates nearest the best cheap runs, best first."""
    pool = problem.candidates()
    snapper = Snapper(problem.space, pool)
    prior, chosen = problem.prior, []
    ascending = problem.objective.direction == "minimize"
    for fid in reversed([f.name for f in problem.fidelities[:-1]]):
        rows = prior[prior.fidelity == fid].sort_values("value", ascending=ascending, kind="stable")
        for j in range(len(rows)):
            if len(chosen) >= min(k, len(pool)):
                break
            i, _ = snapper.nearest(config_at(rows, j, problem.params), exclude=chosen)
            chosen.append(i)
    return [config_at(snapper.pool, i) for i in chosen]


class OptunaSampler(Optimizer):
    """One Optuna sampler (`tpe`, `cmaes`, `gp`, `qmc`) over the target candidates."""

    def __init__(self, problem: Problem, seed: int, sampler: str = "tpe",
                 sampler_params: dict[str, Any] | None = None, warm_start: int = 0):
        super().__init__(problem, seed)
        if sampler not in SAMPLERS:
            raise BenchError(f"unknown Optuna sampler {sampler!r}; use one of {', '.join(SAMPLERS)}")
        if sampler == "cmaes" and importlib.util.find_spec("cmaes") is None:
            raise BenchError("optuna-cmaes needs the `cmaes` package: pip install cmaes")
        optuna.logging.set_verbosity(optuna.logging.ERROR)
        self.distributions = to_distributions(problem.space)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            built = SAMPLERS[sampler](seed=seed, **(sampler_params or {}))
        self.study = optuna.create_study(direction="minimize", sampler=built)
        for config in warm_start_configs(problem, warm_start) if warm_start else []:
            self.study.enqueue_trial(to_params(self.distributions, config))
        self._asked: tuple[optuna.trial.Trial, dict[str, Any]] | None = None

    def ask(self) -> Query:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            trial = self.study.ask(self.distributions)
        self._asked = (trial, dict(trial.params))
        return self.query(self.nearest_untried(trial.params))

    def tell(self, query: Query, outcome: Outcome) -> None:
        super().tell(query, outcome)
        if self._asked is None:
            raise RuntimeError("OptunaSampler.tell() without a pending ask()")
        (trial, asked), self._asked = self._asked, None
        value = self.problem.objective.sign * outcome.value
        if outcome.config == asked:
            self.study.tell(trial, value)
            return
        system_attrs = self.study.get_trials(deepcopy=False)[trial.number].system_attrs
        self.study.tell(trial, state=TrialState.FAIL)
        self.study.add_trial(create_trial(
            params=to_params(self.distributions, outcome.config),
            distributions=self.distributions, value=value, system_attrs=system_attrs,
            user_attrs={"asked_trial": trial.number},
        ))
