"""The unseen target: the experiment advised on, the `--target` descriptors, and the target
fidelity with its GPU-hours (given, or a power law fitted on the sweep's levels)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from bench.errors import BenchError
from bench.gym.problem import Fidelity
from bench.gym.spec import read_spec, si_format
from bench.gym.task import Task


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
