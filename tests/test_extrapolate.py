"""The `extrapolate` baseline: recovers a planted power law, its fallbacks, no target leakage."""

import dataclasses

import numpy as np
import pandas as pd
import pytest

from baselines.extrapolate import Extrapolate
from baselines.random_search import RandomSearch
from bench.gym.problem import Budget, Query
from bench.gym.registry import load_task, task_names
from bench.gym.spec import TaskSpec, build_task
from bench.methods import methods, resolve_methods

BUDGET = Budget("trials", 10)


def lr_opt(n: float, d: float) -> float:  # Step Law's fit
    return 1.79 * n**-0.713 * d**0.307


def bs_opt(d: float) -> float:
    return 0.58 * d**0.571 / 2048


def planted_task(cells, target, offset: float = 0.3):
    """lr x bs grids around the planted optimum of each (N, D) cell; the target's grid is shifted
    by `offset` grid steps, so its candidate nearest the true optimum is the (0, 0) grid point."""
    rows = []
    for n, d in [*cells, target]:
        shift = offset if (n, d) == target else 0.0
        for k in range(-8, 9):
            for j in range(-4, 5):
                lr = lr_opt(n, d) * 2 ** ((k + shift) / 4)
                bs = bs_opt(d) * 2 ** ((j + shift) / 2)
                loss = 2 + np.log2(lr / lr_opt(n, d)) ** 2 + np.log2(bs / bs_opt(d)) ** 2
                rows.append({"lr": lr, "bs": bs, "params": n, "tokens": d, "loss": loss,
                             "k": k, "j": j})
    spec = TaskSpec(name="planted", objective={"column": "loss", "direction": "minimize"},
                    config=[{"name": "lr", "log": True}, {"name": "bs", "log": True}],
                    fidelity=["params", "tokens"])
    return build_task(spec, pd.DataFrame(rows)), pd.DataFrame(rows)


CELLS = [(1e8, 2e9), (2e8, 2e9), (1e8, 8e9), (4e8, 1e10)]
TARGET = (1e9, 2e10)


@pytest.mark.parametrize("top_k", [1, 3])
def test_recovers_a_planted_power_law(top_k):
    task, rows = planted_task(CELLS, TARGET)
    problem = task.problem("planted", BUDGET)
    opt = Extrapolate(problem, 0, top_k=top_k)
    assert opt.predicted["lr"] == pytest.approx(lr_opt(*TARGET), rel=1e-9)
    assert opt.predicted["bs"] == pytest.approx(bs_opt(TARGET[1]), rel=1e-9)
    first = opt.ask()
    best = rows[(rows.params == TARGET[0]) & (rows.k == 0) & (rows.j == 0)].iloc[0]
    assert first.fidelity == problem.target
    assert first.config["lr"] == pytest.approx(best.lr) and first.config["bs"] == pytest.approx(best.bs)


def test_asks_target_candidates_in_order_of_distance_without_repeats():
    task, _ = planted_task(CELLS, TARGET)
    problem = task.problem("planted", BUDGET)
    opt = Extrapolate(problem, 0)
    oracle = task.oracle("planted")
    seen, distances = [], []
    centre = np.array([np.log(opt.predicted["lr"]), np.log(opt.predicted["bs"])])
    for _ in range(20):
        q = opt.ask()
        opt.tell(q, oracle.evaluate(q))
        seen.append((q.config["lr"], q.config["bs"]))
        lo = np.log([task.space["lr"].lower, task.space["bs"].lower])
        hi = np.log([task.space["lr"].upper, task.space["bs"].upper])
        distances.append(np.linalg.norm((np.log(seen[-1]) - centre) / (hi - lo)))
    assert len(set(seen)) == 20
    assert distances == sorted(distances)


def test_two_fidelities_extrapolate_along_their_line():
    """Fewer fidelities than coefficients: the minimum-norm fit follows the line through them."""
    cells, target = [(1e8, 2e9), (4e8, 8e9)], (1.6e9, 3.2e10)  # the target lies on that line
    task, _ = planted_task(cells, target)
    opt = Extrapolate(task.problem("planted", BUDGET), 0)
    assert opt.predicted["lr"] == pytest.approx(lr_opt(*target), rel=1e-9)
    assert opt.predicted["bs"] == pytest.approx(bs_opt(target[1]), rel=1e-9)


def test_one_prior_fidelity_keeps_its_optimum():
    cell = (1e8, 2e9)
    task, _ = planted_task([cell], TARGET)
    opt = Extrapolate(task.problem("planted", BUDGET), 0)
    assert opt.predicted["lr"] == pytest.approx(lr_opt(*cell), rel=1e-9)
    assert opt.predicted["bs"] == pytest.approx(bs_opt(cell[1]), rel=1e-9)


def test_empty_prior_is_random_search():
    task, _ = planted_task(CELLS, TARGET)
    problem = task.problem("planted", BUDGET, prior="none")
    a, b = Extrapolate(problem, 7), RandomSearch(problem, 7)
    assert a.predicted is None
    oracle = task.oracle("planted")
    for _ in range(5):
        qa, qb = a.ask(), b.ask()
        assert qa == qb
        a.tell(qa, oracle.evaluate(qa))
        b.tell(qb, oracle.evaluate(qb))


def mixture_task(target_params: float):
    """Weights (a, b, c) whose best mixture moves linearly in log N; a categorical `schedule`."""
    rows = []
    best = {1e6: (0.6, 0.3, 0.1, "cos"), 1e7: (0.5, 0.3, 0.2, "wsd")}
    for n, (a, b, c, sched) in best.items():
        rows.append({"a": a, "b": b, "c": c, "schedule": sched, "params": n, "loss": 1.0})
        for other in ("cos", "wsd"):
            rows.append({"a": 0.2, "b": 0.2, "c": 0.6, "schedule": other, "params": n, "loss": 2.0})
    for w in [(1.0, 0.0, 0.0), (0.3, 0.3, 0.4), (0.0, 0.3, 0.7), (0.0, 0.25, 0.75)]:
        rows.append({"a": w[0], "b": w[1], "c": w[2], "schedule": "wsd", "params": target_params,
                     "loss": 1.0})
    df = pd.DataFrame(rows).assign(gpu_hours=lambda d: d.params / 1e6)
    spec = TaskSpec(name="mix", objective={"column": "loss", "direction": "minimize"},
                    config=["a", "b", "c", "schedule"], fidelity=["params"], cost={"column": "gpu_hours"})
    return build_task(spec, df)


def test_mixture_weights_clipped_and_renormalised():
    # In log10 N the best a falls 0.1 and c rises 0.1 per decade: at 1e13, a = -0.1 -> 0.
    opt = Extrapolate(mixture_task(1e13).problem("mix", BUDGET), 0, top_k=1)
    p = opt.predicted
    assert (p["a"], p["b"], p["c"]) == pytest.approx((0.0, 0.3 / 1.1, 0.8 / 1.1))
    assert p["schedule"] == "wsd"  # the best at the most expensive prior fidelity
    # Unclipped, the linear fit keeps the weights summing to 1: at 1e9, (0.3, 0.3, 0.4).
    opt = Extrapolate(mixture_task(1e9).problem("mix", BUDGET), 0, top_k=1)
    assert (opt.predicted["a"], opt.predicted["b"], opt.predicted["c"]) == pytest.approx((0.3, 0.3, 0.4))
    assert opt.ask().config == {"a": 0.3, "b": 0.3, "c": 0.4, "schedule": "wsd"}


def test_real_mixture_prediction_is_a_mixture():
    task = load_task("data_mixture")
    opt = Extrapolate(task.problem("pile_cc", BUDGET), 0)
    weights = np.array([opt.predicted[n] for n in task.space.keys()])
    assert weights.min() >= 0 and weights.sum() == pytest.approx(1.0)


def poisoned(task, experiment: str, seed: int = 0):
    """The same task with the experiment's target outcomes replaced by noise."""
    table = task.table.copy()
    target = task.experiments[experiment].target.name
    at = (table.experiment == experiment) & (table.fidelity == target)
    table.loc[at, "value"] = np.random.default_rng(seed).normal(size=int(at.sum()))
    return dataclasses.replace(task, table=table)


def proposals(task, experiment: str, n: int = 10) -> list[Query]:
    opt, oracle = Extrapolate(task.problem(experiment, BUDGET), 0), task.oracle(experiment)
    out = []
    for _ in range(n):
        q = opt.ask()
        opt.tell(q, oracle.evaluate(q))
        out.append(q)
    return out


@pytest.mark.parametrize("name", ["planted", "data_mixture"])
def test_never_reads_target_outcomes(name):
    task = planted_task(CELLS, TARGET)[0] if name == "planted" else load_task(name)
    experiment = task.split("test")[0]
    bad = poisoned(task, experiment)
    assert not np.allclose(bad.oracle(experiment).target_values(), task.oracle(experiment).target_values())
    assert proposals(task, experiment) == proposals(bad, experiment)


def test_registered_and_runs_on_every_task():
    assert "extrapolate" in resolve_methods("all")
    for name in task_names():
        task = load_task(name)
        experiment = task.split("test")[0]
        problem = task.problem(experiment, BUDGET)
        q = methods()["extrapolate"].make(problem, 0).ask()
        pool = problem.candidates()
        assert q.fidelity == problem.target
        assert (pool[list(q.config)] == pd.Series(q.config)).all(axis=1).any(), name
