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
from smac.main.exceptions import ConfigurationSpaceExhaustedException
from smac.runhistory.dataclasses import TrialInfo, TrialValue

from bench.errors import BenchError
from bench.gym.problem import Outcome, Problem, Query
from bench.gym.space import Snapper, config_at
from bench.optimizer import NoRecommendation, Optimizer

FACADES = {"hpo": HyperparameterOptimizationFacade, "bb": BlackBoxFacade, "mf": MultiFidelityFacade}
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


class SmacFacade(Optimizer):
    """One SMAC3 facade (`hpo`, `bb` or `mf`) over the table's candidates."""

    def __init__(self, problem: Problem, seed: int, facade: str = "hpo"):
        super().__init__(problem, seed)
        if facade not in FACADES:
            raise BenchError(f"unknown SMAC facade {facade!r}; use one of {', '.join(FACADES)}")
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
            # No target function: the harness evaluates, SMAC is driven through ask/tell.
            self.smac = cls(scenario, None, initial_design=initial, config_selector=selector,
                            logging_level=False, overwrite=True)
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
        self.smac.tell(info, TrialValue(cost=value), save=False)

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
        self.smac.tell(info, TrialValue(cost=self.problem.objective.sign * value), save=False)

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
