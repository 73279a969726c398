"""Optuna samplers (TPE, CMA-ES, GP, QMC) through Optuna's ask/tell interface.

The ConfigSpace space becomes Optuna distributions (`to_distributions`); each sampler is built with
its documented defaults plus the preset's `sampler_params`, seeded with the episode seed, in a study
that minimises `objective.sign * value`. Optuna samples anywhere in the space; each proposal is
mapped to the nearest untried target candidate. When that changes the configuration, the asked
trial is closed as FAIL (every sampler ignores failed trials) and the configuration actually run is
recorded as a COMPLETE trial (`study.add_trial`) that carries the asked trial's system attributes
(CMA-ES keeps its generation and state there), so samplers learn only from real runs.

Initial design (TPE, GP, CMA-ES): the sampler's `n_startup_trials` is `initial_design_size` of the
trial budget, about a third of it and at least 1 (Optuna's default of 10 would make a budget of
at most 10 trials pure random search), unless the preset sets it. Those first trials are enqueued
(`study.enqueue_trial`), not sampled in the continuous space and snapped, which would favour the
candidates with the largest Voronoi cells: each is a uniform draw from the untried target
candidates (`Optimizer.random_candidate`, the episode's generator), the draws random search makes.
QMC has no startup: its scrambled Sobol sequence is the method.

Warm start (`warm_start=True`): the initial design is instead the target candidates nearest the
best cheap runs (most expensive prior fidelity first, best first), then the sampler takes over.

Threads: the GP sampler (its kernel fit and acquisition search, on a handful of trials) runs with
`threads` torch and BLAS threads, one by default, as MetaBO does (`torch_threads`,
`threadpool_limits`). NumPy's and SciPy's OpenBLAS otherwise start a thread per core, and on
many tiny arrays the second one only costs: with two, an episode took 1.6 to 4.7 times the CPU
time, the more the busier the machine (`benchmarks/method_speed.py` on 2 cores, issue 24). The
proposals do not change.
"""

from __future__ import annotations

import contextlib
import importlib.util
import math
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
from threadpoolctl import threadpool_limits

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
STARTUP = {"tpe", "gp", "cmaes"}  # samplers with `n_startup_trials`


def initial_design_size(trials: int) -> int:
    """Trials before the sampler's model takes over: about a third of the budget, at least 1."""
    return max(1, round(trials / 3))


def trial_budget(problem: Problem) -> int:
    """Target trials the budget buys (a cost budget's amount is in target runs), at least 1."""
    return max(1, math.floor(problem.budget.amount + 1e-9))


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
                 sampler_params: dict[str, Any] | None = None, warm_start: bool = False, threads: int = 1):
        super().__init__(problem, seed)
        self.threads = threads if sampler == "gp" else None  # the others spend milliseconds an ask
        if sampler not in SAMPLERS:
            raise BenchError(f"unknown Optuna sampler {sampler!r}; use one of {', '.join(SAMPLERS)}")
        if sampler == "cmaes" and importlib.util.find_spec("cmaes") is None:
            raise BenchError("optuna-cmaes needs the `cmaes` package: pip install cmaes")
        optuna.logging.set_verbosity(optuna.logging.ERROR)
        self.distributions = to_distributions(problem.space)
        params = dict(sampler_params or {})
        if sampler in STARTUP:
            size = min(initial_design_size(trial_budget(problem)), len(problem.candidates()))
            params.setdefault("n_startup_trials", size)
        self.n_startup = params.get("n_startup_trials", 0)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            built = SAMPLERS[sampler](seed=seed, **params)
        self.study = optuna.create_study(direction="minimize", sampler=built)
        self._warm = warm_start_configs(problem, self.n_startup) if warm_start else []
        self._designed = 0  # initial-design trials enqueued so far
        self._asked: tuple[optuna.trial.Trial, dict[str, Any]] | None = None

    def _library_threads(self) -> contextlib.AbstractContextManager:
        stack = contextlib.ExitStack()
        if self.threads is not None:
            from bench.numerics import torch_threads  # imports torch: only for the GP sampler

            stack.enter_context(torch_threads(self.threads))
            stack.enter_context(threadpool_limits(self.threads))
        return stack

    def ask(self) -> Query:
        if self._designed < self.n_startup:
            config = self._warm.pop(0) if self._warm else self.random_candidate()
            self.study.enqueue_trial(to_params(self.distributions, config))
            self._designed += 1
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            with self._library_threads():
                trial = self.study.ask(self.distributions)
        self._asked = (trial, dict(trial.params))
        return self.query(self.nearest_untried(trial.params))

    def tell(self, query: Query, outcome: Outcome) -> None:
        super().tell(query, outcome)
        if self._asked is None:
            raise RuntimeError("OptunaSampler.tell() without a pending ask()")
        (trial, asked), self._asked = self._asked, None
        value = self.problem.objective.sign * outcome.value
        ran = to_params(self.distributions, outcome.config)
        if ran == asked:
            self.study.tell(trial, value)
            return
        system_attrs = self.study.get_trials(deepcopy=False)[trial.number].system_attrs
        self.study.tell(trial, state=TrialState.FAIL)
        self.study.add_trial(create_trial(
            params=ran, distributions=self.distributions, value=value, system_attrs=system_attrs,
            user_attrs={"asked_trial": trial.number},
        ))
