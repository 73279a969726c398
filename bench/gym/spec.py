"""Task specs: a table of runs plus a short description of its columns becomes a `Task`.

Built-in tasks and users' own sweeps (a CSV and a YAML file) go through the same `build_task`.

Diverged runs are outcomes, never dropped: a run whose objective is NaN or infinite is diverged,
and so is one that a rule of the spec's `diverged:` flags (`worse_than` a threshold, more than
`worse_than_best_by` behind the best finite run of its (experiment, fidelity), or a flag in a
`column`); the task scores a NaN or infinite value as the worst finite one of its pool.
Repeated runs of one (experiment, fidelity, configuration), e.g. seeds, are averaged into one
run, with a warning saying how many rows were merged into how many runs: its value is the mean
of its finite values (NaN, hence diverged, if it has none), and it is diverged when more than
half of its repeats are (by any rule).
An empty table, a cost that is not positive, a table with a single fidelity level, or a pool
with no finite value stops with a `BenchError` naming the problem.
"""

from __future__ import annotations

import dataclasses
import itertools
import logging
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
import yaml
from ConfigSpace import (
    CategoricalHyperparameter,
    ConfigurationSpace,
    Constant,
    OrdinalHyperparameter,
    UniformIntegerHyperparameter,
)
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from bench.errors import BenchError
from bench.gym.problem import Fidelity, Objective
from bench.gym.space import infer_hyperparameter
from bench.gym.task import Experiment, Task, merge_groups, shared_runs

log = logging.getLogger(__name__)

# Default cost model: 6*N*D FLOPs on one A100 (312 TFLOP/s bf16 peak) at 40% MFU.
A100_PEAK_FLOPS = 312e12
DEFAULT_MFU = 0.40


def flops_gpu_hours(params: float, tokens: float, mfu: float = DEFAULT_MFU) -> float:
    """GPU-hours of a dense pretraining run of `params` parameters on `tokens` tokens."""
    return 6.0 * params * tokens / (A100_PEAK_FLOPS * mfu) / 3600.0


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ObjectiveSpec(_Strict):
    column: str
    direction: Literal["minimize", "maximize"]
    unit: str = ""


class ParamSpec(_Strict):
    name: str
    type: Literal["float", "int", "categorical"] | None = None
    log: bool | None = None


class CostSpec(_Strict):
    column: str | None = None  # GPU-hours per run; default: 6*params*tokens at the A100 figure
    mfu: float = DEFAULT_MFU


class DivergedSpec(_Strict):
    """Which runs diverged; a run is diverged if any rule given says so (NaN/inf always are)."""

    worse_than: float | None = None  # objective beyond this, in the objective's direction
    worse_than_best_by: float | None = Field(None, gt=0)  # behind the pool's best finite run by more
    column: str | None = None  # a column flagging diverged runs ...
    flag: bool | int | float | str = True  # ... by this value

    @model_validator(mode="after")
    def _one_rule(self) -> DivergedSpec:
        if self.worse_than is None and self.worse_than_best_by is None and self.column is None:
            raise ValueError("give at least one of worse_than, worse_than_best_by, column")
        if "flag" in self.model_fields_set and self.column is None:
            raise ValueError("flag needs column")
        return self


class TaskSpec(_Strict):
    name: str
    description: str = ""
    table: str | None = None  # CSV path, relative to the spec file (user specs)
    objective: ObjectiveSpec
    config: list[str | ParamSpec]
    fidelity: list[str] = Field(min_length=1)
    fidelity_label: str | None = None  # optional column naming each fidelity level
    cost: CostSpec = CostSpec()
    experiment: str | None = None
    test: list[str] | None = None  # default: every experiment is a test experiment
    sources: list[str] = []
    simulated: bool = False
    notes: str = ""
    diverged: DivergedSpec | None = None
    # Experiment groups (experiments that share runs or rungs): {group: [experiments]}; an
    # experiment not listed is a group of its own. Sharing found in the table merges groups too.
    groups: dict[str, list[str]] | None = None
    # Candidates at an expensive fidelity not in the table (`bench suggest`): {param: [values]},
    # their cartesian product; every parameter but constants, values inside the space.
    target_grid: dict[str, list[Any]] | None = None

    @field_validator("config")
    @classmethod
    def _nonempty(cls, v):
        if not v:
            raise ValueError("config needs at least one column")
        return v

    def params(self) -> list[ParamSpec]:
        return [p if isinstance(p, ParamSpec) else ParamSpec(name=p) for p in self.config]


def si_format(v: float) -> str:
    """1073741824 -> '1.07B', 4e9 -> '4B' (3 significant digits)."""
    for scale, suffix in ((1e12, "T"), (1e9, "B"), (1e6, "M"), (1e3, "K")):
        if abs(v) >= scale:
            return f"{v / scale:.3g}{suffix}"
    return f"{v:.3g}"


def outside_space(hp, value) -> str | None:
    """Why `value` is not a value of hyperparameter `hp` (None when it is)."""
    if isinstance(hp, CategoricalHyperparameter):
        return None if value in hp.choices else f"not one of {list(hp.choices)}"
    if isinstance(hp, Constant):
        return None if value == hp.value else f"the sweep holds only {hp.value!r}"
    if isinstance(value, bool) or not isinstance(value, int | float | np.integer | np.floating):
        return "not a number"
    if isinstance(hp, OrdinalHyperparameter):
        return None if np.isclose(hp.sequence, float(value), rtol=1e-9, atol=0).any() \
            else f"not one of the sweep's values {list(hp.sequence)}"
    if isinstance(hp, UniformIntegerHyperparameter) and float(value) != round(float(value)):
        return "not a whole number"
    slack = 1e-9 * max(abs(hp.lower), abs(hp.upper))
    if not hp.lower - slack <= float(value) <= hp.upper + slack:
        return f"outside the sweep's range [{hp.lower:g}, {hp.upper:g}]"
    return None


def grid_configs(grid: dict[str, list[Any]], space: ConfigurationSpace, where: str) -> pd.DataFrame:
    """The cartesian product of `grid` as configurations of `space` (constants may be left out);
    a missing or unknown parameter, an empty list or a value outside the space is a BenchError
    naming it (`where` says which grid)."""
    unknown = sorted(set(grid) - set(space.keys()))
    missing = [n for n, hp in space.items() if n not in grid and not isinstance(hp, Constant)]
    if unknown or missing:
        problems = [*(f"missing {n}" for n in missing), *(f"unknown {n}" for n in unknown)]
        raise BenchError(f"{where} must give values for every parameter: {'; '.join(problems)}")
    columns = {}
    for name, hp in space.items():
        values = grid.get(name, [hp.value] if isinstance(hp, Constant) else [])
        if not values:
            raise BenchError(f"{where}: {name} has no values")
        for v in values:
            if (why := outside_space(hp, v)) is not None:
                raise BenchError(f"{where}: {name}={v!r} is {why}")
        columns[name] = [int(v) if isinstance(hp, UniformIntegerHyperparameter) else v for v in values]
    rows = list(itertools.product(*columns.values()))
    return pd.DataFrame(rows, columns=list(columns)).drop_duplicates(ignore_index=True)


def _roles(spec: TaskSpec) -> dict[str, str]:
    """Column -> role; each column has one role (a config column holding the objective, a
    fidelity or the experiment would let the candidates carry outcomes or the answer). The
    fidelity label may be a fidelity column itself."""
    named = [(p.name, "config") for p in spec.params()]
    named += [(c, "fidelity") for c in spec.fidelity]
    named += [(spec.objective.column, "objective")]
    named += [(c, r) for c, r in ((spec.cost.column, "cost"), (spec.experiment, "experiment"),
                                  (spec.diverged and spec.diverged.column, "diverged flag")) if c]
    if spec.fidelity_label and spec.fidelity_label not in spec.fidelity:  # a fidelity may name itself
        named.append((spec.fidelity_label, "fidelity label"))
    roles: dict[str, str] = {}
    for col, role in named:
        if col in roles:
            what = "twice" if roles[col] == role else f"as {roles[col]} and as {role}"
            raise BenchError(f"task {spec.name}: column {col!r} is named {what}; each column has one "
                             "role (config, fidelity, objective, cost, experiment, fidelity label, "
                             "diverged flag)")
        roles[col] = role
    return roles


def _levels(spec: TaskSpec, df: pd.DataFrame) -> dict[tuple, Fidelity]:
    """Fidelity levels: each distinct combination of the fidelity columns, with its cost."""
    levels: dict[tuple, Fidelity] = {}
    for key, grp in df.groupby(spec.fidelity, sort=False):
        key = key if isinstance(key, tuple) else (key,)
        desc = {c: float(v) for c, v in zip(spec.fidelity, key, strict=True)}
        label = (
            str(grp[spec.fidelity_label].iloc[0]) if spec.fidelity_label
            else ",".join(f"{c}={si_format(v)}" for c, v in desc.items())
        )
        if spec.cost.column:
            costs = grp[spec.cost.column]
            if (costs <= 0).any():
                raise BenchError(f"task {spec.name}: fidelity level {label} has a run costing "
                                 f"{costs[costs <= 0].iloc[0]:g} (column {spec.cost.column!r}); "
                                 "every run must cost a positive number of GPU-hours")
            cost = float(costs.median())
        else:
            cost = flops_gpu_hours(desc["params"], desc["tokens"], spec.cost.mfu)
        if not (np.isfinite(cost) and cost > 0):
            raise BenchError(f"task {spec.name}: fidelity level {label} costs {cost:g} GPU-hours; "
                             "a cost must be a positive number")
        levels[key] = Fidelity(label, desc, cost)
    if len({f.name for f in levels.values()}) != len(levels):
        raise BenchError(f"task {spec.name}: fidelity labels are not unique per level")
    if len(levels) == 1:
        raise BenchError(f"task {spec.name}: the table has only one fidelity level "
                         f"({next(iter(levels.values())).name}), so there is nothing cheaper to learn "
                         f"from; give runs at two or more levels of {spec.fidelity}")
    return levels


def _diverged(spec: TaskSpec, long: pd.DataFrame, df: pd.DataFrame) -> np.ndarray:
    """Per row of `long` (rows of `df`): NaN/inf objective, or flagged by a `diverged:` rule."""
    values = long["value"].to_numpy(float)
    flags = ~np.isfinite(values)
    rule = spec.diverged
    if rule is None:
        return flags
    sign = 1.0 if spec.objective.direction == "minimize" else -1.0
    worse = np.where(flags, np.nan, sign * values)  # larger is worse
    with np.errstate(invalid="ignore"):
        if rule.worse_than is not None:
            flags |= worse > sign * rule.worse_than
        if rule.worse_than_best_by is not None:
            best = pd.Series(worse).groupby([long["experiment"].to_numpy(), long["fidelity"].to_numpy()])
            flags |= worse - best.transform("min").to_numpy() > rule.worse_than_best_by
    if rule.column is not None:
        flagged = (df[rule.column] == rule.flag).to_numpy(bool)
        if not flagged.any():
            log.warning("task %s: diverged column %r never holds the flag %r (it holds e.g. %r)",
                        spec.name, rule.column, rule.flag, df[rule.column].iloc[0])
        flags |= flagged
    return flags


def _merge_repeats(spec: TaskSpec, long: pd.DataFrame, names: list[str]) -> pd.DataFrame:
    """One row per (experiment, fidelity, configuration): the mean of its finite values, diverged
    when more than half of its repeats are."""
    keys = ["experiment", "fidelity", *names]
    sizes = long.groupby(keys, sort=False, dropna=False).size()
    if (sizes > 1).any():
        log.warning("task %s: %d rows repeat a run (same experiment, fidelity and configuration); "
                    "merged into %d runs (mean of the finite values; diverged when more than half "
                    "of the repeats diverged)", spec.name, int(sizes[sizes > 1].sum()),
                    int((sizes > 1).sum()))
    long = long.assign(value=long["value"].where(np.isfinite(long["value"])),
                       diverged=long["diverged"].astype(float))
    long = long.groupby(keys, sort=False, as_index=False, dropna=False).agg(
        value=("value", "mean"), diverged=("diverged", "mean"))
    return long.assign(diverged=long["diverged"] > 0.5)


def build_task(spec: TaskSpec, df: pd.DataFrame) -> Task:
    """Validate `df` against `spec` and build the task (see the module docstring)."""
    params = spec.params()
    names = [p.name for p in params]
    roles = _roles(spec)
    missing = [c for c in roles if c not in df.columns]
    if missing:
        raise BenchError(
            f"task {spec.name}: table has no column(s) {missing}; it has {list(df.columns)}"
        )
    if df.empty:
        raise BenchError(f"task {spec.name}: the table has no rows (one row per run is needed)")
    for col, role in roles.items():
        if role in ("config", "experiment", "fidelity label", "diverged flag"):
            continue
        if not pd.api.types.is_numeric_dtype(df[col]):
            bad = df[col][pd.to_numeric(df[col], errors="coerce").isna() & df[col].notna()]
            example = f" (it holds e.g. {bad.iloc[0]!r})" if len(bad) else ""
            raise BenchError(f"task {spec.name}: {role} column {col!r} must be numeric{example}")
        if role == "fidelity" and df[col].isna().any():
            raise BenchError(f"task {spec.name}: fidelity column {col!r} has {int(df[col].isna().sum())} "
                             "empty cell(s); every run needs its fidelity")
    if spec.cost.column is None and not {"params", "tokens"} <= set(spec.fidelity):
        raise BenchError(
            f"task {spec.name}: give cost: {{column: ...}}, or name the fidelity columns "
            "`params` and `tokens` for the default 6*params*tokens cost model"
        )

    space = ConfigurationSpace()
    space.add([infer_hyperparameter(p.name, df[p.name], p.type, p.log) for p in params])
    if spec.target_grid is not None:
        grid_configs(spec.target_grid, space, f"task {spec.name}: target_grid")
    levels = _levels(spec, df)

    fid_key = zip(*(df[c].tolist() for c in spec.fidelity), strict=True)
    long = pd.DataFrame({
        "experiment": df[spec.experiment].astype(str) if spec.experiment else spec.name,
        "fidelity": [levels[k].name for k in fid_key],
        **{n: df[n] for n in names},
        "value": df[spec.objective.column].astype(float),
    }).reset_index(drop=True)
    long["diverged"] = _diverged(spec, long, df.reset_index(drop=True))
    long = _merge_repeats(spec, long, names)

    by_name = {f.name: f for f in levels.values()}
    experiments = {}
    all_exps = list(dict.fromkeys(long["experiment"]))
    test = set(all_exps if spec.test is None else spec.test)
    unknown = sorted(test - set(all_exps))
    if unknown:
        raise BenchError(f"task {spec.name}: test experiment(s) {unknown} are not in the table")
    for name in all_exps:
        present = long.loc[long.experiment == name, "fidelity"].unique()
        fids = sorted((by_name[f] for f in present), key=lambda f: (f.cost, f.name))
        experiments[name] = Experiment(name, "test" if name in test else "train", tuple(fids))
    experiments = _grouped(spec, experiments, long, names)
    try:
        return Task(
            name=spec.name,
            description=spec.description or f"User task {spec.name}.",
            space=space,
            objective=Objective(spec.objective.column, spec.objective.direction, spec.objective.unit),
            experiments=experiments,
            table=long,
            sources=tuple(spec.sources),
            simulated=spec.simulated,
            notes=spec.notes,
        )
    except BenchError as exc:  # e.g. a pool with no finite value
        raise BenchError(f"task {spec.name}: {exc}") from None


def _grouped(spec: TaskSpec, experiments: dict[str, Experiment], long: pd.DataFrame,
             names: list[str]) -> dict[str, Experiment]:
    """The spec's `groups:`, merged where the table shows shared runs (`shared_runs`: one
    experiment's target runs are rows of another), with a warning naming what was merged."""
    declared: dict[str, str] = {}
    for group, members in (spec.groups or {}).items():
        for e in members:
            if e not in experiments:
                raise BenchError(f"task {spec.name}: group {group!r} names {e!r}, which is not an "
                                 f"experiment of the table; known: {sorted(experiments)}")
            if e in declared:
                raise BenchError(f"task {spec.name}: experiment {e!r} is in groups {declared[e]!r} "
                                 f"and {group!r}; an experiment belongs to one group")
            declared[e] = group
    experiments = {n: dataclasses.replace(e, group=declared.get(n, n)) for n, e in experiments.items()}
    links = [(a, b) for a, b in shared_runs(long, names, experiments)
             if experiments[a].group != experiments[b].group]
    if links:
        shown = ", ".join(f"{a} in {b}" for a, b in links[:5]) + (" ..." if len(links) > 5 else "")
        log.warning("task %s: experiments share runs across groups (%s); merged into one group each",
                    spec.name, shown)
    return merge_groups(experiments, links)


def load_spec(path: str | Path) -> Task:
    """A user's sweep: YAML spec + the CSV it names (relative to the spec file)."""
    path = Path(path)
    spec = read_spec(path)
    csv = path.parent / spec.table
    try:
        df = pd.read_csv(csv)
    except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise BenchError(f"cannot read table {csv} of task spec {path}: {exc}") from exc
    return build_task(spec, df)


def read_spec(path: str | Path) -> TaskSpec:
    """The validated spec of a user's sweep (without reading its table)."""
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise BenchError(f"cannot read task spec {path}: {exc.strerror}") from exc
    except yaml.YAMLError as exc:
        raise BenchError(f"task spec {path} is not valid YAML: {exc}") from exc
    if not isinstance(raw, dict):
        raise BenchError(f"task spec {path} must be a YAML mapping")
    try:
        spec = TaskSpec.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(map(str, e['loc'])) or 'spec'}: {e['msg']}" for e in exc.errors()
        )
        raise BenchError(f"task spec {path} is invalid: {problems}") from None
    if not spec.table:
        raise BenchError(f"task spec {path} needs `table:` (a CSV path relative to the spec)")
    return spec


__all__ = ["TaskSpec", "build_task", "load_spec", "read_spec", "grid_configs", "outside_space",
           "flops_gpu_hours"]
