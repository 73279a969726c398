"""SMAC3 facades behind the Optimizer interface, through SMAC's ask/tell interface.

`hpo`: HyperparameterOptimizationFacade (random forest, log EI); `bb`: BlackBoxFacade (Gaussian
process, EI); `mf`: MultiFidelityFacade (random forest, Hyperband). Each facade keeps its own
defaults but the initial design, and `hpo` refits its forest after every trial (`retrain_after=1`,
the BB facade's default; its own 8 would propose most of a 10-trial budget from one fit on the
initial design). The Scenario is deterministic, seeded with the episode seed, and its `n_trials`
is the most queries the budget allows. SMAC minimises `objective.sign * value`.
Its run files go to a temporary directory removed once the facade is built (tells do not save),
its logging is silenced.

Initial design: the facade's own (`get_initial_design`) with `n_configs=0` and, as
`additional_configs`, uniform draws without replacement (the episode's generator) from the
candidates the design will be run on: the target pool (`hpo`, `bb`), the cheapest rung's prior
runs or pool (`mf`). A Sobol or random design in the continuous space, snapped, would favour the
candidates with the largest Voronoi cells. Its size is `initial_design_size` of the trial budget
(a cost budget's amount, in target runs), about a third of it and at least 1; for `mf` at least
Hyperband's first bracket (eta**(rungs - 1) configurations at the cheapest rung), so the forest
first sees a full bracket. (The facades' own size, 10 per hyperparameter capped at a quarter of
`n_trials`, is 1 or 2 points at T <= 10, and for `mf`, whose `n_trials` counts the prior runs,
170 random configurations: Hyperband without a model for the whole episode.)

Snapping: a proposal is mapped to the nearest untried candidate at the asked fidelity and SMAC is
told a TrialInfo holding the configuration actually run (same seed and budget). The asked trial
stays RUNNING in SMAC's run history: the surrogate ignores running trials and the intensifier
skips them (SMAC supports telling configurations it did not ask for with its Intensifier).
Successive halving does not, so for `mf` the bracket tracker is pointed at the evaluated
configuration, and it is what gets compared and promoted.

Budget: a trial at a fidelity the budget no longer affords (`Optimizer.affordable`) is not
queried; it stays RUNNING and the adapter asks again. That is what SMAC's asynchronous
successive halving makes of a trial that never finishes: its stage is not compared or promoted,
the next brackets go on, and no cost is made up (a crash or timeout cost would be trained on at
the target budget; a run at a cheaper rung told as the asked one would mix fidelities). Once
nothing fits, `ask` returns a query the harness refuses.

Multi-fidelity (`mf`): up to four fidelities, spread in log cost (always the cheapest usable and
the target; no more than the cheapest rung can fill) are Hyperband's rungs: rung i is SMAC budget
eta**i. Trial budgets query the target only, so there the cheaper rungs are fidelities the prior
holds. Runs the prior already holds are not paid for twice: when SMAC asks for a fidelity that
has prior runs, the nearest prior run not used yet answers it without a query (once all are used,
the asked configuration is told its nearest run's value); only other fidelities become queries.
`recommend()` is the best target run, else the best run at the most expensive fidelity seen.

Acquisition (`acquisition`): `library` (presets `smac-hpo`, `smac-bb`, `smac-mf`) keeps the
facade's own maximiser (local and sorted random search over the continuous space: 10,000
challengers and a local search per ask, then snapped); `pool` (presets `smac-*-pool`, the ones
`--method all` runs) scores only the candidates the table holds (`PoolSearch`): the untried ones
at the rungs, sorted by the facade's acquisition function. A pool-based problem can only run
those, so the pool variant removes the snapping's bias toward candidates with large Voronoi cells,
and most of the cost; SMAC's interleaved random configurations (its random design) are still
sampled in the space and snapped, as in `library`. Measured on train experiments only (4 a task,
3 seeds, T = 3 and 10; data_mixture, grpo, pretrain_hparams, sft_lora; `benchmarks/method_speed.py
smac-hpo,smac-hpo-pool,smac-mf,smac-mf-pool,smac-bb,smac-bb-pool --split train --experiments 4
--seeds 3 --budget 3,10 --task ...`): mean pregret library vs pool, smac-hpo 0.146 vs 0.127,
smac-mf 0.058 vs 0.045, smac-bb 0.158 vs 0.153, at 13x, 5x and 1.9-17x less CPU (smac-bb: 17.7 vs
1.0 s an episode on data_mixture, whose 17 mixture weights make the local search costly). The sign
flips from cell to cell (sft_lora at T = 3 in the first measurement: 0.053 vs 0.157; smac-bb on
sft_lora: 0.070 vs 0.110), so neither maximiser is better everywhere; the pool one is not worse on
average, is the maximiser the other BO methods here use (BoTorch scores the pool), and makes the
`cv` suite affordable (issue 24). The library's defaults stay runnable by name.

Forest (`hpo`, `mf`): the facade's own random forest (`get_model`'s arguments) with two settings
that change no tree and no ask: one joblib thread (SMAC's `n_jobs=-1` starts a thread per core
to predict a few rows) and `max_leaf_nodes` = `MAX_LEAVES` instead of 2**20 (a bound on leaves
that never binds: a tree has at most one leaf per training run; sklearn's best-first builder
allocates room for the bound, 130 ms per tree at 2**20, 3 ms at 2**14). CPU seconds per episode
(`benchmarks/method_speed.py`, T = 3 and 10, same asks): smac-hpo 12.3 -> 5.8 on data_mixture,
6.7 -> 1.4 on sft_lora; smac-mf 5.8 -> 2.6 on data_mixture.
"""

from __future__ import annotations

import copy
import logging
import math
import tempfile
import warnings
from typing import Any

import numpy as np
from ConfigSpace import (
    Configuration,
    ConfigurationSpace,
    UniformFloatHyperparameter,
    UniformIntegerHyperparameter,
)
from smac import BlackBoxFacade, HyperparameterOptimizationFacade, MultiFidelityFacade, Scenario
from smac.acquisition.maximizer import AbstractAcquisitionMaximizer
from smac.main.exceptions import ConfigurationSpaceExhaustedException
from smac.model.random_forest import RandomForest
from smac.runhistory.dataclasses import TrialInfo, TrialValue

from bench.errors import BenchError
from bench.gym.problem import Outcome, Problem, Query
from bench.gym.space import Snapper, config_at
from bench.optimizer import NoRecommendation, Optimizer

FACADES = {"hpo": HyperparameterOptimizationFacade, "bb": BlackBoxFacade, "mf": MultiFidelityFacade}
ACQUISITIONS = ("library", "pool")
MAX_LEAVES = 2**14  # more than the runs any episode tells SMAC (see `forest`)
MAX_RUNGS = 4
ETA = 3  # MultiFidelityFacade's default Hyperband eta


def to_configuration(space: ConfigurationSpace, config: dict[str, Any]) -> Configuration:
    """The configuration as SMAC builds its own (from the vector form).

    SMAC keys its run history by `hash(repr(config))`; a configuration built from Python values
    would print categoricals as `str` where SMAC's own print as `numpy.str_`, and hash apart.
    ConfigSpace rounds float bounds to 13 decimals, so extreme table values are clipped onto them.
    """
    values = {}
    for name, hp in space.items():
        v = config[name]
        if isinstance(hp, UniformIntegerHyperparameter):
            v = int(v)
        elif isinstance(hp, UniformFloatHyperparameter):
            v = min(max(float(v), hp.lower), hp.upper)
        values[name] = v
    return Configuration(space, vector=Configuration(space, values=values).get_array())


def initial_design_size(trials: int) -> int:
    """Configurations before the surrogate takes over: about a third of the budget, at least 1."""
    return max(1, round(trials / 3))


def rung_fidelities(problem: Problem, max_rungs: int = MAX_RUNGS) -> list[str]:
    """Fidelities used as Hyperband rungs, cheapest first, spread evenly in log cost.

    On trial budgets (target queries only) the cheaper rungs are fidelities the prior holds. No
    more rungs than the cheapest one can fill: Hyperband's first bracket starts eta**(rungs - 1)
    configurations there.
    """
    held = problem.prior.fidelity.value_counts()
    usable = [f for f in problem.fidelities[:-1] if problem.budget.kind == "cost" or held.get(f.name, 0)]
    usable.append(problem.fidelities[-1])
    first = usable[0].name
    fits = 1 + int(math.log(held.get(first, 0) or len(problem.candidates(first)), ETA) + 1e-9)
    n = min(max_rungs, fits, len(usable))
    if n == 1:
        return [problem.target]
    if n == len(usable):
        return [f.name for f in usable]
    costs = np.log([f.cost for f in usable])
    picks = {int(np.argmin(np.abs(costs - c))) for c in np.linspace(costs[0], costs[-1], n)}
    return [usable[i].name for i in sorted(picks)]


def forest(scenario: Scenario) -> RandomForest:
    """`HyperparameterOptimizationFacade.get_model(scenario)` (also the multi-fidelity facade's),
    with one joblib thread and `max_leaf_nodes=MAX_LEAVES` (see the module docstring)."""
    return RandomForest(scenario.configspace, instance_features=scenario.instance_features, log_y=True,
                        n_trees=10, ratio_features=1.0, min_samples_split=2, min_samples_leaf=1,
                        max_depth=2**20, bootstrapping=True, seed=scenario.seed,
                        max_leaf_nodes=MAX_LEAVES, n_jobs=1)


class PoolSearch(AbstractAcquisitionMaximizer):
    """Acquisition maximiser over a fixed set of configurations: those not evaluated yet, sorted
    by acquisition value (SMAC's own sort, ties broken by its seeded generator). Once all are
    evaluated it returns them all: SMAC skips them and samples random configurations, its own
    way out of an exhausted space (an empty list would break SMAC 2.4.1's `ChallengerList`)."""

    def __init__(self, configspace: ConfigurationSpace, pool: list[Configuration], seed: int):
        super().__init__(configspace, challengers=len(pool), seed=seed)
        self.pool = pool

    def _maximize(self, previous_configs: list[Configuration],
                  n_points: int) -> list[tuple[float, Configuration]]:
        seen = set(previous_configs)
        untried = [c for c in self.pool if c not in seen]
        return self._sort_by_acquisition_value(untried or self.pool)


class SmacFacade(Optimizer):
    """One SMAC3 facade (`hpo`, `bb` or `mf`) over the table's candidates."""

    def __init__(self, problem: Problem, seed: int, facade: str = "hpo", acquisition: str = "library"):
        super().__init__(problem, seed)
        if facade not in FACADES:
            raise BenchError(f"unknown SMAC facade {facade!r}; use one of {', '.join(FACADES)}")
        if acquisition not in ACQUISITIONS:
            raise BenchError(f"unknown SMAC acquisition {acquisition!r}; "
                             f"use one of {', '.join(ACQUISITIONS)}")
        self.space = copy.deepcopy(problem.space)  # SMAC seeds and samples the space it is given
        self.multi_fidelity = facade == "mf"
        self.rungs = rung_fidelities(problem) if self.multi_fidelity else [problem.target]
        self._free = self._prior_runs() if self.multi_fidelity else {}
        design = self._initial_design()
        logging.getLogger("smac").setLevel(logging.ERROR)
        cls = FACADES[facade]
        with tempfile.TemporaryDirectory(prefix="smac-") as out, warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # SMAC's own meta of additional_configs
            scenario = Scenario(self.space, name="episode", output_directory=out, deterministic=True,
                                n_trials=max(self._max_trials(), len(design)), seed=seed,
                                **self._budget_range())
            initial = cls.get_initial_design(scenario, n_configs=0, additional_configs=design)
            # Target trials come one at a time: refit the forest after each (the BB facade's default).
            selector = cls.get_config_selector(scenario, retrain_after=1) if facade == "hpo" else None
            maximizer = PoolSearch(self.space, self._pool(), seed) if acquisition == "pool" else None
            model = forest(scenario) if facade != "bb" else None
            # No target function: the harness evaluates, SMAC is driven through ask/tell.
            self.smac = cls(scenario, None, initial_design=initial, config_selector=selector, model=model,
                            acquisition_maximizer=maximizer, logging_level=False, overwrite=True)
        self._asked: TrialInfo | None = None

    # Set-up ------------------------------------------------------------------------------
    def _budget_range(self) -> dict[str, float]:
        if not self.multi_fidelity:
            return {}
        return {"min_budget": 1.0, "max_budget": float(ETA ** (len(self.rungs) - 1))}

    def _max_trials(self) -> int:
        budget, p = self.problem.budget, self.problem
        if budget.kind == "trials":
            queries = budget.amount
        else:
            cheapest = min(p.fidelity(f).cost for f in self.rungs)
            queries = budget.amount * p.fidelity(p.target).cost / cheapest
        return max(1, math.floor(queries + 1e-9)) + sum(len(s.pool) for s, _ in self._free.values())

    def _prior_runs(self) -> dict[str, tuple[Snapper, list[int]]]:
        """Per rung with prior runs: a snapper over those runs and the indices used so far."""
        prior = self.problem.prior
        out = {}
        for fid in self.rungs:
            rows = prior[prior.fidelity == fid].reset_index(drop=True)
            if len(rows):
                out[fid] = (Snapper(self.problem.space, rows), [])
        return out

    def _pool(self) -> list[Configuration]:
        """Every configuration a rung can run: its prior runs where it has them, else its pool."""
        pools = [self._free[f][0].pool if f in self._free else self.problem.candidates(f) for f in self.rungs]
        configs = (to_configuration(self.space, config_at(pool, i, self.problem.params))
                   for pool in pools for i in range(len(pool)))
        return list(dict.fromkeys(configs))

    def _initial_design(self) -> list[Configuration]:
        """Uniform draws without replacement from what the first rung is run on (see module)."""
        first = self.rungs[0]
        pool = self._free[first][0].pool if first in self._free else self.problem.candidates(first)
        size = initial_design_size(max(1, math.floor(self.problem.budget.amount + 1e-9)))
        if self.multi_fidelity:
            size = max(size, ETA ** (len(self.rungs) - 1))
        left = list(range(len(pool)))
        picks = [left.pop(int(self.rng.integers(len(left)))) for _ in range(min(size, len(pool)))]
        return [to_configuration(self.space, config_at(pool, i, self.problem.params)) for i in picks]

    # Ask / tell --------------------------------------------------------------------------
    def _fidelity(self, info: TrialInfo) -> str:
        if not self.multi_fidelity:
            return self.problem.target
        return self.rungs[round(math.log(info.budget, ETA))]

    def ask(self) -> Query:
        affordable = self.affordable()
        while affordable:
            try:
                info = self.smac.ask()
            except (StopIteration, ConfigurationSpaceExhaustedException):  # a small discrete space
                break
            fidelity = self._fidelity(info)
            if fidelity in self._free:
                self._answer_from_prior(info, *self._free[fidelity])
            elif fidelity in affordable:
                self._asked = info
                return Query(self.nearest_untried(dict(info.config), fidelity), fidelity)
            # else: a trial the budget cannot finish stays RUNNING (see the module docstring)
        # SMAC has nothing left to ask, or nothing fits (then the harness refuses this query).
        self._asked = None
        fidelity = affordable[-1] if affordable else self.problem.target
        return Query(self.random_candidate(fidelity), fidelity)

    def _answer_from_prior(self, info: TrialInfo, snapper: Snapper, used: list[int]) -> None:
        """Tell SMAC the nearest prior run not used yet; once all are used, tell the asked
        configuration the value of its nearest prior run (a table lookup, as the oracle's)."""
        if len(used) < len(snapper.pool):
            i, _ = snapper.nearest(dict(info.config), exclude=used)
            used.append(i)
            self._tell_smac(info, *self._prior_run(snapper, i))
            return
        i, _ = snapper.nearest(dict(info.config))
        value = self.problem.objective.sign * self._prior_run(snapper, i)[1]
        self._tell(info, value)

    def tell(self, query: Query, outcome: Outcome) -> None:
        super().tell(query, outcome)
        if self._asked is not None:
            self._tell_smac(self._asked, outcome.config, outcome.value)
            self._asked = None

    def _tell_smac(self, asked: TrialInfo, config: dict[str, Any], value: float) -> None:
        ran = to_configuration(self.space, config)
        if ran == asked.config:
            ran = asked.config
        elif self.multi_fidelity:
            _follow_evaluated(self.smac.intensifier, asked.config, ran)
        info = TrialInfo(ran, instance=asked.instance, seed=asked.seed, budget=asked.budget)
        self._tell(info, self.problem.objective.sign * value)

    def _tell(self, info: TrialInfo, cost: float) -> None:
        if len(self.smac.runhistory) >= MAX_LEAVES:  # the forest's leaf bound would start to bind
            raise BenchError(f"SMAC was told {MAX_LEAVES} runs in one episode; raise MAX_LEAVES")
        self.smac.tell(info, TrialValue(cost=cost), save=False)

    def _prior_run(self, snapper: Snapper, i: int) -> tuple[dict[str, Any], float]:
        return config_at(snapper.pool, i, self.problem.params), float(snapper.pool["value"].iat[i])

    def recommend(self) -> dict[str, Any]:
        if not self.multi_fidelity or any(o.fidelity == self.problem.target for _, o in self.history):
            return super().recommend()
        seen = [(o.fidelity, o.config, o.value) for _, o in self.history]
        for fid, (snapper, used) in self._free.items():
            seen += [(fid, *self._prior_run(snapper, i)) for i in used]
        if not seen:
            raise NoRecommendation("smac-mf has not seen a run at any fidelity yet")
        order = {f.name: k for k, f in enumerate(self.problem.fidelities)}
        top = max(order[f] for f, _, _ in seen)
        at_top = [(c, v) for f, c, v in seen if order[f] == top]
        return min(at_top, key=lambda cv: self.problem.objective.sign * cv[1])[0]


def _follow_evaluated(intensifier, asked: Configuration, ran: Configuration) -> None:
    """Point successive halving's bracket tracker (smac 2.4.1) at the configuration actually run.

    SMAC's generator holds the same lists, so they are changed in place. SMAC has no public way to
    change what a bracket tracks; the public alternatives would tell the forest a value for a
    configuration never run (the asked one), or leave the stage waiting forever (no promotions).
    """
    for pairs in intensifier._tracker.values():
        for _, configs in pairs:
            for i, config in enumerate(configs):
                if config == asked:
                    configs[i] = ran
