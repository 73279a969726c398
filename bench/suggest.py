"""`bench suggest`: the next configurations to run at an expensive fidelity, from a user's runs.

The question is posed as a `Problem` like any episode's, built from the user's runs only:
- Target: a new `Fidelity` from the given descriptors (every fidelity column of the task). Its
  GPU-hours are `--target-cost`, or a power law cost = a * prod d_k^b_k fitted by least squares on
  the task's fidelity levels (exact for the default 6*N*D cost model); with too few levels to fit
  it (at least one more level than coefficients) the user is asked for `--target-cost`. Learned
  methods, SMAC's multi-fidelity rungs and the LLM prompt read it.
- Prior: every run of the experiment, at all its fidelities (shuffled with the seed, as episodes
  are). Target pool: the spec's `target_grid` (cartesian product) or, without one, `SOBOL_POOL`
  scrambled-Sobol points of the space (seeded), plus any `--observed` configuration not in it.
  Both go through `Task.problem`, so ids and orders follow the episode's rules.
- Observed target runs are replayed as an episode's trials: the method asks, and is told the
  user's next run (as the table would tell it a snapped one), so `suggest --observed` continues
  the loop the benchmark scores.
- n at once: the method asks n times; after each ask its candidate is marked pending (the
  untried mask a tell would set, with no outcome told), so pool-based methods move on. The first
  suggestion is what the benchmark would run next; a method that asks the same candidate again
  (it needs an outcome to move, e.g. `centroid` counts its trials) gives fewer than n.
- Predictions: `Optimizer.predict` at the suggested candidates after the asks; rationale:
  `Query.info["rationale"]` where the method gives one.
- Learned methods use the checkpoint `bench run` and `--backtest` use (trained on the task's train
  experiments, or every built-in task's for `trains_on: builtin`), so the backtest scores the
  model that advises; a task without train experiments gives the former nothing to learn from,
  and they are skipped with that reason.
- The optimizer's seed is `method_seed(seed)`, as in an episode (the seed itself shuffles the pools).
- `backtest`: on an experiment whose target is in the table, round t rebuilds the method, replays
  t - 1 runs the table answered, and runs its first suggestion: the scores after T rounds equal
  `bench run`'s with budget T (same method and seed): `pregret` (the primary score), `regret`,
  `nregret` and `diverged`, by the experiment's `Scorer` (`Scorer.episode`, so a failure scores
  as the worst candidate, pregret 1, as in the benchmark); "at once" (`pregret_at_once`,
  `nregret_at_once`) scores the best of the first round's n suggestions the same way.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from ConfigSpace import (
    CategoricalHyperparameter,
    ConfigurationSpace,
    Constant,
    OrdinalHyperparameter,
    UniformIntegerHyperparameter,
)
from rich.table import Table
from scipy.stats import qmc

from bench.episode import MAX_REFUSALS, MethodError, check_query, seed_everything
from bench.errors import BenchError
from bench.gym.problem import Budget, Fidelity, Outcome, Problem, Query
from bench.gym.space import nearest, plain
from bench.gym.spec import grid_configs, outside_space, read_spec, si_format
from bench.gym.task import Experiment, Task, method_seed
from bench.methods import MethodSpec
from bench.optimizer import Optimizer
from bench.suites import load_suite

SOBOL_POOL = 256  # a power of two (Sobol's balance); ~16 values per parameter in 2-D, finer than grids
BACKTEST_SUITE = "paper"  # its prior (every cheaper run) is what suggest gives: all the user's runs


@dataclasses.dataclass(frozen=True)
class Suggestion:
    rank: int
    candidate: int  # id in the problem's target pool
    config: dict[str, Any]
    mean: float | None = None  # the method's prediction (objective units), if it predicts
    std: float | None = None
    rationale: str | None = None


@dataclasses.dataclass
class Advice:
    method: str
    suggestions: list[Suggestion]
    queries: list[Query]  # as asked (the first is what an episode would run next)
    note: str = ""


@dataclasses.dataclass(frozen=True)
class Setup:
    """A suggest question: the problem at the unseen target, the user's target runs (candidate id
    and value, in the order given) and how the target was made."""

    problem: Problem
    observed: tuple[tuple[int, float], ...]
    cost_note: str
    pool_note: str


def pick_experiment(task: Task, name: str | None) -> str:
    """The experiment to advise on: `name`, else the task's only experiment or only test one."""
    if name is not None:
        return task.experiment(name).name
    for names in (list(task.experiments), task.split("test")):
        if len(names) == 1:
            return names[0]
    raise BenchError(f"task {task.name} has several experiments; choose one with --experiment "
                     f"({', '.join(task.experiments)})")


def spec_grid(ref: str) -> dict | None:
    """The `target_grid` of a spec file (built-in tasks have none)."""
    return read_spec(ref).target_grid if ref.endswith((".yaml", ".yml")) else None


# The target fidelity --------------------------------------------------------------------------
def parse_target(text: str, task: Task) -> dict[str, float]:
    """`params=7e9,tokens=2e11` -> descriptors; every fidelity column of the task, numbers only."""
    keys = list(task.fidelities()[0].descriptors)
    given: dict[str, float] = {}
    for item in (i.strip() for i in text.split(",") if i.strip()):
        name, eq, value = (s.strip() for s in item.partition("="))
        if not eq or not name:
            raise BenchError(f"--target: {item!r} is not NAME=VALUE (e.g. {keys[0]}=1e9)")
        try:
            given[name] = float(value)
        except ValueError:
            raise BenchError(f"--target: {name}={value!r} is not a number") from None
        if not math.isfinite(given[name]):
            raise BenchError(f"--target: {name} must be finite (got {value})")
    missing, unknown = [k for k in keys if k not in given], sorted(set(given) - set(keys))
    if missing or unknown:
        problems = [*(f"missing {k}" for k in missing), *(f"unknown {k}" for k in unknown)]
        raise BenchError(f"--target needs every fidelity column of {task.name} ({', '.join(keys)}): "
                         + "; ".join(problems))
    return {k: given[k] for k in keys}


def fit_cost(levels: list[Fidelity], descriptors: dict[str, float]) -> tuple[float, str]:
    """GPU-hours at `descriptors` from a power law fitted on the levels' costs, and how."""
    ask = "; give --target-cost GPU_HOURS"
    table = pd.DataFrame([{**f.descriptors, "cost": f.cost} for f in levels])
    varying = [k for k in descriptors if table[k].nunique() > 1]
    for k in set(descriptors) - set(varying):
        if not np.isclose(table[k].iat[0], descriptors[k], rtol=1e-9):
            raise BenchError(f"cannot estimate the target's GPU-hours: every run has {k}="
                             f"{table[k].iat[0]:g}, so its effect on cost is unknown{ask}")
    if (table[[*varying, "cost"]] <= 0).any().any() or any(descriptors[k] <= 0 for k in varying):
        raise BenchError(f"cannot estimate the target's GPU-hours: a power law needs positive "
                         f"descriptors and costs{ask}")
    if len(table) < len(varying) + 2:
        raise BenchError(f"cannot estimate the target's GPU-hours: {len(table)} fidelity levels are "
                         f"too few to fit and check a power law in {', '.join(varying)}{ask}")
    x = np.column_stack([np.ones(len(table)), *(np.log(table[k].to_numpy(float)) for k in varying)])
    y = np.log(table["cost"].to_numpy(float))
    coef, *_ = np.linalg.lstsq(x, y, rcond=None)
    worst = float(np.exp(np.abs(y - x @ coef).max()) - 1)
    slopes = dict(zip(varying, coef[1:], strict=True))
    cost = float(np.exp(coef[0] + sum(b * np.log(descriptors[k]) for k, b in slopes.items())))
    law = " * ".join(f"{k}^{b:.3g}" for k, b in slopes.items())
    return cost, (f"{cost:.4g} GPU-hours, extrapolated: cost ~ {law}, fitted on the {len(table)} "
                  f"fidelity levels of the sweep (largest error there {worst:.0%})")


def target_fidelity(task: Task, experiment: str, descriptors: dict[str, float],
                    cost: float | None) -> tuple[Fidelity, str]:
    """The unseen target: a fidelity more expensive than every level of the experiment."""
    levels = task.experiment(experiment).fidelities
    for f in levels:
        if all(np.isclose(f.descriptors[k], v, rtol=1e-9) for k, v in descriptors.items()):
            raise BenchError(f"the target {f.name} is a fidelity of {experiment} in the table; "
                             "`bench suggest --backtest` scores methods there, `--observed` gives "
                             "your runs at a new target")
    if cost is None:
        cost, note = fit_cost(task.fidelities(), descriptors)
    elif not cost > 0:
        raise BenchError(f"--target-cost must be positive GPU-hours (got {cost:g})")
    else:
        note = f"{cost:.4g} GPU-hours (given)"
    top = levels[-1]
    if cost <= top.cost:
        raise BenchError(f"the target ({cost:.4g} GPU-hours) must cost more than every fidelity of "
                         f"{experiment}; its most expensive is {top.name} ({top.cost:.4g} GPU-hours)")
    name = ",".join(f"{k}={si_format(v)}" for k, v in descriptors.items())
    if any(f.name == name for f in levels):
        name += " (target)"
    return Fidelity(name, dict(descriptors), cost), note


# The target pool ------------------------------------------------------------------------------
def sobol_pool(space: ConfigurationSpace, n: int, seed: int) -> pd.DataFrame:
    """`n` scrambled Sobol points of the space (seeded), decoded per parameter; duplicates (of
    integers and choices) dropped."""
    free = [name for name, hp in space.items() if not isinstance(hp, Constant)]
    u = qmc.Sobol(len(free), scramble=True, seed=seed).random(n) if free else np.zeros((1, 0))
    columns = {}
    for name, hp in space.items():
        if isinstance(hp, Constant):
            columns[name] = [hp.value] * len(u)
            continue
        col = u[:, free.index(name)]
        if isinstance(hp, CategoricalHyperparameter | OrdinalHyperparameter):
            values = list(hp.choices if isinstance(hp, CategoricalHyperparameter) else hp.sequence)
            columns[name] = [values[min(int(c * len(values)), len(values) - 1)] for c in col]
            continue
        lo, hi = (np.log(hp.lower), np.log(hp.upper)) if hp.log else (hp.lower, hp.upper)
        x = lo + col * (hi - lo)
        x = np.exp(x) if hp.log else x
        if isinstance(hp, UniformIntegerHyperparameter):
            columns[name] = [int(v) for v in np.clip(np.round(x), hp.lower, hp.upper)]
        else:
            columns[name] = [float(v) for v in np.clip(x, hp.lower, hp.upper)]
    return pd.DataFrame(columns).drop_duplicates(ignore_index=True)


def read_observed(path: Path, task: Task, descriptors: dict[str, float]) -> pd.DataFrame:
    """The user's runs at the target: parameter columns and the objective's column (fidelity
    columns, if present, must be the target's); repeated configurations averaged, in first-seen
    order. Returns the parameters and `value`."""
    try:
        df = pd.read_csv(path)
    except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise BenchError(f"cannot read --observed {path}: {exc}") from exc
    objective, params = task.objective.name, list(task.space.keys())
    needed = [p for p in params if not isinstance(task.space[p], Constant)] + [objective]
    missing = [c for c in needed if c not in df.columns]
    if missing:
        raise BenchError(f"--observed {path} has no column(s) {missing}; it needs {needed}")
    for k, v in descriptors.items():
        if k in df.columns:
            off = ~np.isclose(pd.to_numeric(df[k], errors="coerce"), v, rtol=1e-6)
            if off.any():
                raise BenchError(f"--observed {path} row {int(np.flatnonzero(off)[0]) + 2}: {k}="
                                 f"{df[k].iloc[np.flatnonzero(off)[0]]} is not the target's {v:g}")
    values = pd.to_numeric(df[objective], errors="coerce")
    if values.isna().any():
        row = int(np.flatnonzero(values.isna())[0])
        raw = plain(df[objective].iloc[row])
        what = "empty" if pd.isna(raw) else f"{raw!r}, not a number"
        raise BenchError(f"--observed {path} row {row + 2}: {objective} is {what} (a crashed run has "
                         "no outcome to tell; leave it out)")
    rows = []
    for i, record in enumerate(df.to_dict("records")):
        config = {}
        for name, hp in task.space.items():
            v = plain(record.get(name, hp.value if isinstance(hp, Constant) else None))
            if (why := outside_space(hp, v)) is not None:
                raise BenchError(f"--observed {path} row {i + 2}: {name}={v!r} is {why}")
            config[name] = int(v) if isinstance(hp, UniformIntegerHyperparameter) else v
        rows.append({**config, "value": float(values.iat[i])})
    runs = pd.DataFrame(rows, columns=[*params, "value"])
    return runs.groupby(params, sort=False, as_index=False)["value"].mean()


# The problem ----------------------------------------------------------------------------------
def unseen_problem(task: Task, experiment: str, target: Fidelity, pool: pd.DataFrame, budget: int,
                   seed: int) -> Problem:
    """The episode problem of `experiment` with `target` appended: prior = all its runs, target
    candidates = `pool` (no outcomes), both shuffled with `seed` by `Task.problem`."""
    exp = task.experiment(experiment)
    # a placeholder outcome (a Task's values are finite; NaN would be a diverged run): a Problem
    # holds no target outcome, and nothing here asks the oracle
    rows = pool.assign(experiment=exp.name, fidelity=target.name, value=0.0, diverged=False)
    table = pd.concat([task.table[task.table["experiment"] == exp.name], rows[task.table.columns]],
                      ignore_index=True)
    extended = dataclasses.replace(
        task, table=table, experiments={exp.name: Experiment(exp.name, exp.split, (*exp.fidelities, target))})
    return extended.problem(exp.name, Budget("trials", budget), "cheaper", seed)


def candidate_of(problem: Problem, query: Query) -> int:
    """The target candidate a query runs: its id, or the nearest candidate (as the oracle snaps)."""
    if query.candidate is not None:
        return int(query.candidate)
    return nearest(problem.arrays().x, problem.encoder.one(query.config))[0]


def prepare(task: Task, experiment: str, descriptors: dict[str, float], grid: dict | None,
            observed: pd.DataFrame | None, n: int, budget: int | None, seed: int,
            cost: float | None = None) -> Setup:
    """The suggest problem for the user's runs of `experiment` at the unseen target."""
    target, cost_note = target_fidelity(task, experiment, descriptors, cost)
    if grid is not None:
        pool = grid_configs(grid, task.space, f"task {task.name}: target_grid")
        pool_note = f"{len(pool)} candidates: the spec's target_grid"
    else:
        pool = sobol_pool(task.space, SOBOL_POOL, seed)
        pool_note = f"{len(pool)} candidates: scrambled Sobol points of the space (seed {seed})"
    params = list(task.space.keys())
    observed = observed if observed is not None else pd.DataFrame(columns=[*params, "value"])
    x_observed = task.encoder(observed[params]) if len(observed) else np.zeros((0, task.encoder.width))
    x_pool = task.encoder(pool)
    new = [i for i, row in enumerate(x_observed) if nearest(x_pool, row)[1] > 1e-9]
    if new:
        pool = pd.concat([pool, observed.iloc[new][params]], ignore_index=True)
        pool_note += f", plus {len(new)} observed configuration(s) not among them"
    budget = len(observed) + n if budget is None else budget
    if budget < len(observed) + n:
        raise BenchError(f"--budget {budget} is less than the observed runs ({len(observed)}) plus -n {n}")
    problem = unseen_problem(task, experiment, target, pool, budget, seed)
    ids = [nearest(problem.arrays().x, row)[0] for row in x_observed]
    return Setup(problem, tuple(zip(ids, observed["value"].astype(float), strict=True)), cost_note, pool_note)


# Asking ---------------------------------------------------------------------------------------
class NoTargetProposal(MethodError):
    """`MAX_REFUSALS` asks in a row at other fidelities: an episode would end here."""


def _ask_target(optimizer: Optimizer, problem: Problem, name: str) -> Query:
    """The next target query; queries at other fidelities are refused, as in an episode."""
    for _ in range(MAX_REFUSALS):
        query = optimizer.ask()
        check_query(query, problem, name)
        if query.fidelity == problem.target:
            return query
    raise NoTargetProposal(f"{name} proposed no target-fidelity run in {MAX_REFUSALS} asks")


def run_outcome(problem: Problem, query: Query, candidate: int, value: float) -> Outcome:
    """What the table would tell for `query` had it run `candidate` (snapped if they differ)."""
    pool = problem.arrays()
    asked = pool.x[query.candidate] if query.candidate is not None else problem.encoder.one(query.config)
    distance = float(np.linalg.norm(asked - pool.x[candidate]))
    return Outcome(value, problem.fidelities[-1].cost, dict(pool.records[candidate]), problem.target,
                   distance > 1e-9, distance, candidate)


def advise(spec: MethodSpec, problem: Problem, seed: int, task: Task,
           outcome_for: Callable[[int, Query], Outcome], runs: int, n: int) -> Advice:
    """A fresh optimizer of `spec` (as an episode makes it, seeded `method_seed(seed)`) told `runs`
    target runs through ask/tell (`outcome_for(k, query)` answers the k-th ask), then asked for `n`
    suggestions."""
    seed = method_seed(seed)
    seed_everything(seed)
    optimizer = spec.make(problem, seed, task)
    for k in range(runs):
        query = _ask_target(optimizer, problem, spec.name)
        optimizer.tell(query, outcome_for(k, query))
    queries: list[Query] = []
    chosen: list[int] = []
    note = ""
    while len(chosen) < n:
        try:
            query = _ask_target(optimizer, problem, spec.name)
        except NoTargetProposal:
            if not chosen:
                raise
            note = f"gives {len(chosen)} suggestion(s), then none at the target"
            break
        candidate = candidate_of(problem, query)
        if candidate in chosen:
            note = f"gives {len(chosen)} distinct suggestion(s) until it is told an outcome"
            break
        queries.append(query)
        chosen.append(candidate)
        optimizer.mark_pending(candidate)  # no outcome is told
    predicted = optimizer.predict(np.array(chosen))
    if predicted is not None and not _is_prediction(predicted, len(chosen)):
        note = "; ".join([*filter(None, [note]), "its predict() does not return (mean, std): not shown"])
        predicted = None
    pool = problem.arrays()
    suggestions = [
        Suggestion(rank + 1, c, dict(pool.records[c]),
                   None if predicted is None else float(predicted[0][rank]),
                   None if predicted is None or np.isnan(predicted[1][rank]) else float(predicted[1][rank]),
                   q.info.get("rationale"))
        for rank, (c, q) in enumerate(zip(chosen, queries, strict=True))]
    return Advice(spec.name, suggestions, queries, note)


def _is_prediction(predicted, n: int) -> bool:
    """Does a `predict` result follow the hook's contract: (mean, std), one value per id?"""
    return (isinstance(predicted, tuple) and len(predicted) == 2
            and all(np.shape(a) == (n,) for a in predicted))


def suggest(spec: MethodSpec, setup: Setup, seed: int, task: Task, n: int) -> Advice:
    """`n` suggestions of `spec` at the setup's target, after the user's observed runs."""
    problem = setup.problem

    def outcome_for(k: int, query: Query) -> Outcome:
        return run_outcome(problem, query, *setup.observed[k])

    return advise(spec, problem, seed, task, outcome_for, len(setup.observed), n)


def cannot_advise(spec: MethodSpec, task: Task) -> str | None:
    """Why `spec` cannot advise on `task` here (None when it can)."""
    missing = spec.missing()
    if missing:
        return "; ".join(missing)
    if spec.needs_training and spec.trains_on == "task" and not task.split("train"):
        return (f"learned: it trains on train experiments and {task.name} has none "
                "(name test experiments in the spec's `test:`)")
    return None


# Backtest -------------------------------------------------------------------------------------
def backtest(spec: MethodSpec, task: Task, experiment: str, seed: int, budget: int, n: int) -> dict:
    """The suggest loop on an experiment whose target is in the table, the table answering in
    the user's place: `budget` rounds of one suggestion each (the scores `bench run` gives with
    that budget, method and seed), and the first round's `n` suggestions run at once."""
    prior = load_suite(BACKTEST_SUITE).prior_for(task.name)
    oracle, objective = task.oracle(experiment, seed), task.objective
    scorer = oracle.scorer
    pool = len(scorer.values)
    if max(budget, n) > pool:
        raise BenchError(f"{experiment}: the target pool has {pool} candidates, fewer than {max(budget, n)}")
    outcomes: list[Outcome] = []
    at_once, failed = None, None
    try:
        for t in range(budget):
            problem = task.problem(experiment, Budget("trials", budget), prior, seed)
            advice = advise(spec, problem, seed, task, lambda k, _q: outcomes[k], t, n if t == 0 else 1)
            if t == 0:
                at_once = [oracle.evaluate(Query(s.config, problem.target, s.candidate))
                           for s in advice.suggestions]
            outcomes.append(oracle.evaluate(advice.queries[0]))
    except BenchError:
        raise
    except NoTargetProposal:  # the episode ends: what it ran is scored
        failed = None if outcomes else "no target observation"
    except Exception as exc:  # scored as the benchmark scores a failed episode
        failed = f"{type(exc).__name__}: {exc}"
    best, curve, diverged = _best(objective, outcomes)
    scores = scorer.episode(best, curve, failed is not None, diverged, budget)
    once, _, once_diverged = _best(objective, at_once or [])
    at_once_scores = scorer.episode(once, [] if once is None else [once], failed is not None, once_diverged)
    return {"method": spec.name, "experiment": experiment, "seed": seed, "budget": budget, "n": n,
            "curve": curve, "best": scores["value"], "pregret": scores["pregret"],
            "regret": scores["regret"], "nregret": scores["nregret"], "diverged": scores["diverged"],
            "pregret_at_once": at_once_scores["pregret"], "nregret_at_once": at_once_scores["nregret"],
            "failed": failed}


def _best(objective, outcomes: list[Outcome]) -> tuple[float | None, list[float], bool]:
    """The best value of `outcomes` (None without one), the curve of the best so far, and whether
    the best run diverged (the first of equal values counts, as in an episode)."""
    best, curve, diverged = None, [], False
    for o in outcomes:
        if best is None or objective.is_better(o.value, best):
            best, diverged = o.value, o.diverged
        curve.append(best)
    return best, curve, diverged


# Output ---------------------------------------------------------------------------------------
def _fmt(v: Any) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def advice_table(advice: Advice, objective) -> Table:
    """One method's suggestions: rank, configuration, prediction +- std, rationale."""
    unit = f" ({objective.unit})" if objective.unit else ""
    t = Table(title=f"{advice.method}" + (f" - {advice.note}" if advice.note else ""), title_justify="left")
    for c in ("rank", "configuration", f"predicted {objective.name}{unit}", "rationale"):
        t.add_column(c, overflow="fold")
    for s in advice.suggestions:
        pred = "-" if s.mean is None else _fmt(s.mean) + ("" if s.std is None else f" ± {s.std:.2g}")
        t.add_row(str(s.rank), ", ".join(f"{k}={_fmt(v)}" for k, v in s.config.items()), pred,
                  s.rationale or "-")
    return t


def suggestion_rows(advices: list[Advice]) -> pd.DataFrame:
    return pd.DataFrame([{"method": a.method, "rank": s.rank, "candidate": s.candidate, **s.config,
                          "predicted": s.mean, "predicted_std": s.std, "rationale": s.rationale}
                         for a in advices for s in a.suggestions])


def write_suggestions(out: Path, setup: Setup, advices: list[Advice], skipped: dict[str, str]) -> list[Path]:
    """suggestions.json (the question, every method's answer, what was skipped) and .csv."""
    problem, target = setup.problem, setup.problem.fidelities[-1]
    doc = {"task": problem.task, "experiment": problem.experiment,
           "target": {"fidelity": target.name, "descriptors": dict(target.descriptors),
                      "gpu_hours": target.cost, "gpu_hours_source": setup.cost_note},
           "pool": {"size": len(problem.arrays()), "source": setup.pool_note},
           "prior_runs": len(problem.prior), "observed": len(setup.observed), "budget": problem.budget.amount,
           "methods": {a.method: {"note": a.note,
                                  "suggestions": [dataclasses.asdict(s) for s in a.suggestions]}
                       for a in advices},
           "skipped": skipped}
    return _write(out, "suggestions", doc, suggestion_rows(advices))


def backtest_summary(rows: list[dict]) -> pd.DataFrame:
    """Per method: means over the experiments and seeds scored."""
    df = pd.DataFrame(rows)
    return df.groupby("method", sort=False).agg(
        budget=("budget", "first"), n=("n", "first"), experiments=("experiment", "nunique"),
        seeds=("seed", "nunique"), pregret=("pregret", "mean"), regret=("regret", "mean"),
        nregret=("nregret", "mean"), pregret_at_once=("pregret_at_once", "mean"),
        nregret_at_once=("nregret_at_once", "mean"), diverged=("diverged", "mean"),
        failed=("failed", "count")).reset_index()


def write_backtest(out: Path, rows: list[dict]) -> list[Path]:
    return _write(out, "backtest", {"episodes": rows}, pd.DataFrame(rows))


def _write(out: Path, stem: str, doc: dict, table: pd.DataFrame) -> list[Path]:
    try:
        out.mkdir(parents=True, exist_ok=True)
        paths = [out / f"{stem}.json", out / f"{stem}.csv"]
        paths[0].write_text(json.dumps(doc, indent=2) + "\n")
        table.to_csv(paths[1], index=False)
    except OSError as exc:
        raise BenchError(f"cannot write to {out}: {exc.strerror}") from exc
    return paths
