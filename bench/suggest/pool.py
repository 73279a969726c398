"""The suggest problem: the target pool (the spec's `target_grid` or scrambled Sobol points), the
user's runs at the target (`--observed`), and the episode problem with the unseen target appended."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pandas as pd
from ConfigSpace import (
    CategoricalHyperparameter,
    ConfigurationSpace,
    Constant,
    OrdinalHyperparameter,
    UniformIntegerHyperparameter,
)
from scipy.stats import qmc

from bench.errors import BenchError
from bench.gym import rules
from bench.gym.problem import Budget, Fidelity, Problem
from bench.gym.space import nearest, plain
from bench.gym.spec import grid_configs, outside_space
from bench.gym.task import Experiment, Task
from bench.suggest.target import target_fidelity

SOBOL_POOL = 256  # a power of two (Sobol's balance); ~16 values per parameter in 2-D, finer than grids


@dataclasses.dataclass(frozen=True)
class Setup:
    """A suggest question: the problem at the unseen target, the user's target runs (candidate id
    and value, in the order given) and how the target was made."""

    problem: Problem
    observed: tuple[tuple[int, float], ...]
    cost_note: str
    pool_note: str


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
    new = [i for i, row in enumerate(x_observed) if nearest(x_pool, row)[1] > rules.SNAP_TOLERANCE]
    if new:
        pool = pd.concat([pool, observed.iloc[new][params]], ignore_index=True)
        pool_note += f", plus {len(new)} observed configuration(s) not among them"
    budget = len(observed) + n if budget is None else budget
    if budget < len(observed) + n:
        raise BenchError(f"--budget {budget} is less than the observed runs ({len(observed)}) plus -n {n}")
    problem = unseen_problem(task, experiment, target, pool, budget, seed)
    ids = [nearest(problem.arrays().x, row)[0] for row in x_observed]
    return Setup(problem, tuple(zip(ids, observed["value"].astype(float), strict=True)), cost_note, pool_note)
