"""Tasks, experiments and outcome tables; the oracle that answers queries from the table."""

from __future__ import annotations

import dataclasses
import functools
import hashlib
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import pandas as pd
from ConfigSpace import ConfigurationSpace

from bench.errors import BenchError
from bench.gym import rules
from bench.gym.problem import Budget, Fidelity, Objective, Outcome, Pool, Problem, Query
from bench.gym.space import Encoder
from bench.scores import Scorer

PRIOR_STREAM, POOL_STREAM = 1, 2  # independent random streams of an episode seed
METHOD_SALT = b"llmconfig-bench/method-seed/v1"
CV_FOLDS = 5  # grouped cross-validation: at most this many folds (leave-one-group-out below)


def _splitmix64(x: np.ndarray) -> np.ndarray:
    """SplitMix64's finaliser (Steele, Lea & Flood 2014): a bijective 64-bit mix, vectorised."""
    with np.errstate(over="ignore"):
        x = x + np.uint64(0x9E3779B97F4A7C15)
        x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return x ^ (x >> np.uint64(31))


def shuffles(seeds, stream: int, level: int, n: int) -> np.ndarray:
    """One pseudo-random permutation of range(n) per seed (rows), a pure function of (seed,
    stream, level): the argsort of hashed (key, index) pairs. Vectorised over seeds, so a batch
    of episodes (`bench.gym.env`) is shuffled exactly as the harness shuffles each one."""
    seeds = np.atleast_1d(np.asarray(seeds, dtype=np.int64)).astype(np.uint64)
    key = _splitmix64(_splitmix64(seeds) ^ np.uint64((stream << 56) | (level << 40)))
    hashed = _splitmix64(key[:, None] ^ np.arange(n, dtype=np.uint64)[None, :])
    return np.argsort(hashed, axis=1)  # distinct keys (the mix is a bijection): no ties to break


def method_seed(episode_seed: int) -> int:
    """The seed an optimizer gets in the episode with `episode_seed`: a salted BLAKE2b hash of it,
    so that a method cannot recompute the episode's candidate and prior shuffles (`shuffles`)
    from its own seed."""
    digest = hashlib.blake2b(str(int(episode_seed)).encode(), digest_size=4, salt=METHOD_SALT[:16],
                             person=METHOD_SALT[16:32]).digest()
    return int.from_bytes(digest, "little") & 0x7FFFFFFF  # 31 bits: a valid seed for every library


@dataclass(frozen=True)
class Prior:
    """What an episode is given up front (a suite's protocol).

    `kind`: the experiment's cheaper-fidelity runs (`cheaper`) or nothing (`none`).
    `gap` g: only fidelities whose cost is at most the target's / g (the extrapolation distance).
    `budget` k: a random subset of those runs worth at most k target runs of GPU-hours, drawn with
    the episode seed: the first runs, in a seeded random order, whose total cost fits (as if
    the researcher ran random small experiments until the compute ran out).
    """

    kind: Literal["cheaper", "none"] = "cheaper"
    gap: float | None = None
    budget: float | None = None

    @classmethod
    def of(cls, value: Prior | str) -> Prior:
        return value if isinstance(value, Prior) else cls(kind=value)  # type: ignore[arg-type]

    def levels(self, costs, target_cost: float) -> np.ndarray:
        """Which of the cheaper fidelities (`costs`: their GPU-hours per run, cheapest first) the
        prior may hold runs of: those within the gap (indices, cheapest first)."""
        costs = np.asarray(costs, float)
        if self.kind == "none":
            return np.zeros(0, int)
        limit = target_cost / self.gap if self.gap else np.inf
        return np.flatnonzero(costs <= limit * (1 + 1e-9))

    def runs(self, costs, target_cost: float) -> np.ndarray:
        """How many of the runs costing `costs` (..., runs), in the order they are given, the
        prior holds: the first ones whose cumulative cost fits `budget` target runs (all of them
        without a budget)."""
        costs = np.asarray(costs, float)
        if self.budget is None:
            return np.full(costs.shape[:-1], costs.shape[-1])
        return (np.cumsum(costs, axis=-1) <= self.budget * target_cost * (1 + 1e-9)).sum(axis=-1)


PriorPolicy = Prior | Literal["cheaper", "none"]


def canonical_table(table: pd.DataFrame, params: list[str], objective: Objective) -> pd.DataFrame:
    """`table` sorted by (experiment, fidelity, configuration), index 0..n-1, with a boolean
    `diverged` column; NaN or infinite values are diverged runs and take the worst finite value
    of their (experiment, fidelity) (see `Task`)."""
    values = table["value"].astype(float)
    bad = ~np.isfinite(values.to_numpy())
    flags = table["diverged"].to_numpy(bool) if "diverged" in table else np.zeros(len(table), bool)
    if bad.any():
        worst = "max" if objective.direction == "minimize" else "min"
        fill = values.where(~bad).groupby([table["experiment"], table["fidelity"]]).transform(worst)
        empty = bad & fill.isna().to_numpy()
        if empty.any():
            row = table[empty].iloc[0]
            raise BenchError(f"{row.experiment} at {row.fidelity}: no run has a finite objective; "
                             "every run diverged, so nothing can be scored there")
        values = values.where(~bad, fill)
    table = table.assign(value=values.to_numpy(), diverged=flags | bad)
    return table.sort_values(["experiment", "fidelity", *params], kind="mergesort", ignore_index=True)


@dataclass(frozen=True)
class Experiment:
    """One problem of a task. `group`: experiments that share runs or rungs are one group (default:
    the experiment alone); no split, fold or training set divides a group."""

    name: str
    split: Literal["train", "test"]
    fidelities: tuple[Fidelity, ...]  # cheapest first; the last one is the target
    group: str = ""

    def __post_init__(self):
        if not self.group:
            object.__setattr__(self, "group", self.name)

    @property
    def target(self) -> Fidelity:
        return self.fidelities[-1]


SHARED = 0.5  # experiments A, B share runs when this share of A's target runs are rows of B


def shared_runs(table: pd.DataFrame, params: list[str], experiments: dict[str, Experiment]
                ) -> list[tuple[str, str]]:
    """Pairs (a, b) where at least `SHARED` of a's finished target runs (fidelity, configuration
    and value) are rows of b: b holds a's target outcomes (a's target is b's rung, or both read
    the same runs), so a and b must be one group. Diverged runs are left out: their placeholder
    values (a threshold, the pool's worst) coincide between unrelated experiments."""
    keys = pd.util.hash_pandas_object(table[["fidelity", *params, "value"]], index=False).to_numpy()
    finished = ~table["diverged"].to_numpy(bool)
    names = table["experiment"].to_numpy()
    rows = {e: set(keys[names == e]) for e in experiments}
    targets = {e: set(keys[(names == e) & (table["fidelity"].to_numpy() == x.target.name) & finished])
               for e, x in experiments.items()}
    return [(a, b) for a in experiments for b in experiments
            if a != b and targets[a] and len(targets[a] & rows[b]) >= SHARED * len(targets[a])]


def merge_groups(experiments: dict[str, Experiment], links: list[tuple[str, str]]) -> dict[str, Experiment]:
    """`experiments` with the groups of each linked pair merged (union-find; a merged group is
    named after its alphabetically first group)."""
    parent = {e.group: e.group for e in experiments.values()}

    def root(g: str) -> str:
        while parent[g] != g:
            g = parent[g]
        return g

    for a, b in links:
        ra, rb = sorted((root(experiments[a].group), root(experiments[b].group)))
        parent[rb] = ra
    return {n: dataclasses.replace(e, group=root(e.group)) for n, e in experiments.items()}


@dataclass
class Task:
    """A family of problems sharing one search space, backed by a long outcome table.

    `table` has one row per (experiment, fidelity, configuration) with columns `experiment`,
    `fidelity`, one per parameter of `space`, `value` (the objective) and, optionally,
    `diverged` (bool). On construction the table is put in its canonical order, sorted by
    (experiment, fidelity, configuration), so that no row order of a source (often sorted by
    outcome) survives; a run whose value is NaN or infinite is diverged, and reports the worst
    finite value of its (experiment, fidelity) (a researcher records it as no better than any
    run that finished). Diverged runs are outcomes: kept, scored, counted.
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
    fold: str = ""  # the cross-validation fold whose split this copy carries ("": the fixed split)
    # Caches, built on first use (`dataclasses.replace(task, table=...)` starts them afresh):
    _pools: dict = field(default_factory=dict, init=False, repr=False)  # (exp, fid) -> outcomes
    _arrays: dict = field(default_factory=dict, init=False, repr=False)  # (exp, fid) -> (Pool, values)
    _priors: dict = field(default_factory=dict, init=False, repr=False)  # exp -> (runs, offsets)
    _diverged: dict = field(default_factory=dict, init=False, repr=False)  # (exp, fid) -> flags, with _pools
    _scorers: dict = field(default_factory=dict, init=False, repr=False)  # exp -> Scorer
    _folds: dict = field(default_factory=dict, init=False, repr=False)  # most -> fold tasks

    def __post_init__(self):
        self.table = canonical_table(self.table, list(self.space.keys()), self.objective)

    def fidelities(self) -> list[Fidelity]:
        """Every fidelity level of the task's experiments, cheapest first."""
        levels = {f.name: f for e in self.experiments.values() for f in e.fidelities}
        return sorted(levels.values(), key=lambda f: (f.cost, f.name))

    def split(self, split: str) -> list[str]:
        return [e.name for e in self.experiments.values() if e.split == split]

    def groups(self) -> dict[str, list[str]]:
        """Experiment groups (experiments that share runs or rungs): group -> its experiments."""
        out: dict[str, list[str]] = {}
        for e in self.experiments.values():
            out.setdefault(e.group, []).append(e.name)
        return dict(sorted(out.items()))

    def folds(self, most: int = CV_FOLDS) -> list[list[str]]:
        """Grouped cross-validation: the test experiments of each fold, every group in exactly one
        fold. Leave-one-group-out up to `most` groups; beyond, `most` folds, groups dealt largest
        first to the fold with the fewest experiments (ties: the lower fold, then group names)."""
        groups = sorted(self.groups().items(), key=lambda kv: (-len(kv[1]), kv[0]))
        folds: list[list[str]] = [[] for _ in range(min(most, len(groups)))]
        for _, members in groups:
            min(folds, key=len).extend(members)
        return [sorted(f) for f in folds]

    def with_test(self, experiments: list[str], fold: str) -> Task:
        """This task with `experiments` as its test split and every other one train (a fold named
        `fold`); it shares this task's table and caches."""
        chosen = set(experiments)
        relabelled = {n: dataclasses.replace(e, split="test" if n in chosen else "train")
                      for n, e in self.experiments.items()}
        view = dataclasses.replace(self, experiments=relabelled, fold=fold)
        for cache in ("_pools", "_arrays", "_priors", "_diverged", "_scorers"):
            setattr(view, cache, getattr(self, cache))
        return view

    def cv_folds(self, most: int = CV_FOLDS) -> list[Task]:
        """The cross-validation folds (`folds`) as tasks, fold k named `cv<k>of<K>`; built once."""
        if most not in self._folds:
            folds = self.folds(most)
            self._folds[most] = [self.with_test(f, f"cv{k + 1}of{len(folds)}") for k, f in enumerate(folds)]
        return self._folds[most]

    def cv_fold(self, experiment: str, most: int = CV_FOLDS) -> Task:
        """The cross-validation fold in which `experiment` is tested; its train split is every
        other group."""
        return next(f for f in self.cv_folds(most) if f.experiments[experiment].split == "test")

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
                self._diverged[key] = rows["diverged"].to_numpy(bool)
        key = (experiment, fidelity)
        if key not in self._pools:
            return pd.DataFrame(columns=[*self.space.keys(), "value"])
        return self._pools[key]

    def arrays(self, experiment: str, fidelity: str) -> tuple[Pool, np.ndarray]:
        """The candidates of one (experiment, fidelity) as arrays, in table order, and their
        outcomes; built once and shared by every episode."""
        key = (experiment, fidelity)
        if key not in self._arrays:
            rows = self.outcomes(experiment, fidelity)
            configs = rows[list(self.space.keys())]
            self._arrays[key] = (Pool.of(configs, self.encoder(configs)), rows["value"].to_numpy(float))
        return self._arrays[key]

    def diverged(self, experiment: str, fidelity: str) -> np.ndarray:
        """Which runs of one (experiment, fidelity) diverged, in table order (`arrays`)."""
        self.outcomes(experiment, fidelity)  # fills the flags with the pools, from one pass
        return self._diverged.get((experiment, fidelity), np.zeros(0, bool))

    def scorer(self, experiment: str) -> Scorer:
        """The scores of target outcomes of `experiment` (`bench.scores`)."""
        if experiment not in self._scorers:
            values = self.arrays(experiment, self.experiment(experiment).target.name)[1]
            self._scorers[experiment] = Scorer(values, self.objective.direction)
        return self._scorers[experiment]

    @functools.cached_property
    def encoder(self) -> Encoder:
        return Encoder(self.space)

    def permutations(self, experiment: str, fidelity: str, seeds) -> np.ndarray:
        """Each episode's order of a fidelity's candidates, one row per seed: candidate id i of
        the episode with seed s is table row `permutations(..., [s])[0, i]`."""
        level = [f.name for f in self.experiment(experiment).fidelities].index(fidelity)
        return shuffles(seeds, POOL_STREAM, level, len(self.outcomes(experiment, fidelity)))

    def permutation(self, experiment: str, fidelity: str, seed: int) -> np.ndarray:
        return self.permutations(experiment, fidelity, [seed])[0]

    def prior_fidelities(self, experiment: str, prior: PriorPolicy = "cheaper") -> list[Fidelity]:
        """The cheaper fidelities whose runs `prior` may hold (cheapest first)."""
        cheaper = self.experiment(experiment).fidelities
        levels = Prior.of(prior).levels([f.cost for f in cheaper[:-1]], cheaper[-1].cost)
        return [cheaper[i] for i in levels]

    def offers(self, experiment: str, prior: PriorPolicy) -> bool:
        """Can an episode of `experiment` have `prior`? Not a `cheaper` prior whose gap no cheaper
        fidelity meets (suites skip such cells; training draws another protocol)."""
        prior = Prior.of(prior)
        return prior.kind == "none" or bool(self.prior_fidelities(experiment, prior))

    def given_fidelities(self, experiment: str, budget: Budget, prior: PriorPolicy = "cheaper"
                         ) -> list[Fidelity]:
        """The fidelities an episode is given candidates at (`Problem.pools`), cheapest first:
        every one on a cost budget; the prior's and the target on a trial budget (a rung withheld
        by a gap is not given)."""
        exp = self.experiment(experiment)
        if budget.kind == "cost":
            return list(exp.fidelities)
        return [*self.prior_fidelities(experiment, prior), exp.target]

    def prior_rows(self, experiment: str, prior: PriorPolicy, seeds
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The prior of the episodes with `seeds`, as (fidelity level, table row) pairs in the
        order the optimizer sees them, one row per seed, and how many pairs each episode has:
        every run of `prior_fidelities` in a seeded random order, cut at the last run whose
        cumulative cost fits `prior.budget` target runs (pairs past the cut are padding)."""
        prior, exp = Prior.of(prior), self.experiment(experiment)
        fids = self.prior_fidelities(experiment, prior)
        seeds = np.atleast_1d(np.asarray(seeds, dtype=np.int64))
        sizes = [len(self.outcomes(exp.name, f.name)) for f in fids]
        total = int(sum(sizes))
        levels = np.repeat(np.arange(len(fids)), sizes)
        rows = np.concatenate([np.arange(n) for n in sizes]) if fids else np.zeros(0, int)
        order = shuffles(seeds, PRIOR_STREAM, 0, total)
        levels, rows = levels[order], rows[order]
        counts = prior.runs(np.array([f.cost for f in fids])[levels], exp.target.cost)
        return levels, rows, counts

    def problem(self, experiment: str, budget: Budget, prior: PriorPolicy = "cheaper",
                seed: int = 0) -> Problem:
        """What an optimizer sees of one experiment in the episode with `seed`.

        Candidate pools and prior rows are shuffled with the seed (the table is in canonical
        order already); `pools` holds the target and the fidelities the episode may use or is
        given runs of: every fidelity on a cost budget, the prior's on a trial budget.
        """
        exp, prior = self.experiment(experiment), Prior.of(prior)
        levels, rows, counts = self.prior_rows(experiment, prior, [seed])
        levels, rows = levels[0, : counts[0]], rows[0, : counts[0]]
        table, offsets = self._prior_table(exp.name)
        prior_df = table.iloc[offsets[levels] + rows].reset_index(drop=True)
        worth = float(np.array([f.cost for f in exp.fidelities])[levels].sum() / exp.target.cost)
        pools = {f.name: self.arrays(exp.name, f.name)[0].take(self.permutation(exp.name, f.name, seed))
                 for f in self.given_fidelities(experiment, budget, prior)}
        return Problem(
            task=self.name,
            experiment=exp.name,
            space=self.space,
            fidelities=exp.fidelities,
            objective=self.objective,
            budget=budget,
            prior=prior_df,
            description=self._describe(exp, budget, len(prior_df), worth),
            pools=pools,
        )

    def oracle(self, experiment: str, seed: int = 0) -> Oracle:
        """The oracle of the episode with `seed` (its candidate ids match `problem(..., seed)`)."""
        return Oracle(self, self.experiment(experiment), seed)

    def _prior_table(self, experiment: str) -> tuple[pd.DataFrame, np.ndarray]:
        """Every cheaper-fidelity run of the experiment in one frame (fidelity, params, value,
        diverged), fidelities cheapest first, and the offset of each fidelity's first row; built once."""
        if experiment not in self._priors:
            params = list(self.space.keys())
            fids = self.experiment(experiment).fidelities[:-1]
            columns = ["fidelity", *params, "value", "diverged"]
            frames = [self.outcomes(experiment, f.name).assign(
                fidelity=f.name, diverged=self.diverged(experiment, f.name))[columns] for f in fids]
            table = pd.concat(frames, ignore_index=True) if frames else \
                pd.DataFrame(columns=columns)
            self._priors[experiment] = (table, np.cumsum([0, *map(len, frames)])[:-1].astype(int))
        return self._priors[experiment]

    def _describe(self, exp: Experiment, budget: Budget, runs: int, worth: float) -> str:
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
            + f". Prior: {runs} runs at cheaper fidelities are given"
            + (f" (worth {worth:.3g} target runs of GPU-hours)." if runs else ".")
        )


class Oracle:
    """Answers the queries of one episode of an experiment by exact lookup.

    Candidate ids are those of the episode with `seed` (`Task.problem(..., seed=seed)`); a query
    without an id is snapped to the nearest candidate in the unit-cube encoding (ties go to the
    lowest id, an order the seed shuffles)."""

    def __init__(self, task: Task, experiment: Experiment, seed: int = 0):
        self.task, self.experiment, self.seed = task, experiment, seed
        self._levels: dict[str, tuple] = {}

    def _level(self, fidelity: str) -> tuple:
        """(records in table order, episode order, encodings and outcomes in episode order, cost,
        divergence flags in episode order)."""
        if fidelity not in self._levels:
            fid = next((f for f in self.experiment.fidelities if f.name == fidelity), None)
            if fid is None:
                raise ValueError(f"{self.experiment.name} has no fidelity {fidelity!r}")
            pool, values = self.task.arrays(self.experiment.name, fidelity)
            order = self.task.permutation(self.experiment.name, fidelity, self.seed)
            diverged = self.task.diverged(self.experiment.name, fidelity)
            self._levels[fidelity] = (pool.records, order, pool.x[order], values[order], fid.cost,
                                      diverged[order])
        return self._levels[fidelity]

    def evaluate(self, query: Query) -> Outcome:
        records, order, x, values, cost, diverged = self._level(query.fidelity)
        i, dist = rules.snap(query, x, self.task.encoder)
        return Outcome(float(values[i]), cost, dict(records[order[i]]), query.fidelity,
                       dist > rules.SNAP_TOLERANCE, dist, i, bool(diverged[i]))

    def target_values(self) -> np.ndarray:
        return self.task.arrays(self.experiment.name, self.experiment.target.name)[1]

    @property
    def scorer(self) -> Scorer:
        return self.task.scorer(self.experiment.name)
