"""Task specs: a table of runs plus a short description of its columns becomes a `Task`.

Built-in tasks and users' own sweeps (a CSV and a YAML file) go through the same `build_task`.
"""

from __future__ import annotations

import itertools
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
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from bench.errors import BenchError
from bench.gym.problem import Fidelity, Objective
from bench.gym.space import infer_hyperparameter
from bench.gym.task import Experiment, Task

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
    named += [(c, r) for c, r in ((spec.cost.column, "cost"), (spec.experiment, "experiment")) if c]
    if spec.fidelity_label and spec.fidelity_label not in spec.fidelity:  # a fidelity may name itself
        named.append((spec.fidelity_label, "fidelity label"))
    roles: dict[str, str] = {}
    for col, role in named:
        if col in roles:
            what = "twice" if roles[col] == role else f"as {roles[col]} and as {role}"
            raise BenchError(f"task {spec.name}: column {col!r} is named {what}; each column has one "
                             "role (config, fidelity, objective, cost, experiment, fidelity label)")
        roles[col] = role
    return roles


def build_task(spec: TaskSpec, df: pd.DataFrame) -> Task:
    """Validate `df` against `spec` and build the task (duplicate runs are averaged)."""
    params = spec.params()
    names = [p.name for p in params]
    roles = _roles(spec)
    missing = [c for c in roles if c not in df.columns]
    if missing:
        raise BenchError(
            f"task {spec.name}: table has no column(s) {missing}; it has {list(df.columns)}"
        )
    for col, role in roles.items():
        if role in ("config", "experiment", "fidelity label"):
            continue
        if not pd.api.types.is_numeric_dtype(df[col]):
            bad = df[col][pd.to_numeric(df[col], errors="coerce").isna() & df[col].notna()]
            example = f" (it holds e.g. {bad.iloc[0]!r})" if len(bad) else ""
            raise BenchError(f"task {spec.name}: {role} column {col!r} must be numeric{example}")
        if role == "fidelity" and df[col].isna().any():
            raise BenchError(f"task {spec.name}: fidelity column {col!r} has {int(df[col].isna().sum())} "
                             "empty cell(s); every run needs its fidelity")
    df = df.dropna(subset=[spec.objective.column])
    if df.empty:
        raise BenchError(f"task {spec.name}: the table has no rows with an objective value")
    if spec.cost.column is None and not {"params", "tokens"} <= set(spec.fidelity):
        raise BenchError(
            f"task {spec.name}: give cost: {{column: ...}}, or name the fidelity columns "
            "`params` and `tokens` for the default 6*params*tokens cost model"
        )

    space = ConfigurationSpace()
    space.add([infer_hyperparameter(p.name, df[p.name], p.type, p.log) for p in params])
    if spec.target_grid is not None:
        grid_configs(spec.target_grid, space, f"task {spec.name}: target_grid")

    # Fidelity levels: each distinct combination of the fidelity columns.
    levels: dict[tuple, Fidelity] = {}
    for key, grp in df.groupby(spec.fidelity, sort=False):
        key = key if isinstance(key, tuple) else (key,)
        desc = {c: float(v) for c, v in zip(spec.fidelity, key, strict=True)}
        if spec.cost.column:
            cost = float(grp[spec.cost.column].median())
        else:
            cost = flops_gpu_hours(desc["params"], desc["tokens"], spec.cost.mfu)
        label = (
            str(grp[spec.fidelity_label].iloc[0]) if spec.fidelity_label
            else ",".join(f"{c}={si_format(v)}" for c, v in desc.items())
        )
        levels[key] = Fidelity(label, desc, cost)
    if len({f.name for f in levels.values()}) != len(levels):
        raise BenchError(f"task {spec.name}: fidelity labels are not unique per level")

    fid_key = zip(*(df[c].tolist() for c in spec.fidelity), strict=True)
    long = pd.DataFrame({
        "experiment": df[spec.experiment].astype(str) if spec.experiment else spec.name,
        "fidelity": [levels[k].name for k in fid_key],
        **{n: df[n] for n in names},
        "value": df[spec.objective.column].astype(float),
    })
    # Repeated runs of one configuration (seeds) are averaged into one table entry.
    long = long.groupby(["experiment", "fidelity", *names], sort=False, as_index=False,
                        dropna=False)["value"].mean()

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
