"""Shared test helpers: a scripted optimizer, a mixed-type task, ask/tell drivers, pool geometry,
the CLI in this process."""

import sys

import numpy as np
import pandas as pd

from bench.gym.problem import Query
from bench.gym.space import config_at, encode
from bench.gym.spec import TaskSpec, build_task
from bench.gym.task import method_seed
from bench.optimizer import LearnedOptimizer, Optimizer


class Scripted(Optimizer):
    """Asks the given learning rates, in order."""

    def __init__(self, problem, seed, lrs=()):
        super().__init__(problem, seed)
        self.lrs = list(lrs)

    def ask(self) -> Query:
        return self.query({"lr": self.lrs[len(self.history)]})


def mixed_task(direction="minimize", fidelities=((1e6, 1e9, 1.0, 30), (1e8, 1e10, 0.0, 30))):
    """Log float, log int, int, categorical and constant parameters; different configs per fidelity.

    `fidelities`: (params, tokens, loss shift, number of configurations) per fidelity.
    """
    rng = np.random.default_rng(0)
    rows = []
    for params, tokens, shift, n in fidelities:
        for _ in range(n):
            lr, layers = 10 ** rng.uniform(-4, -1), int(rng.integers(2, 25))
            batch, opt = int(2 ** rng.integers(5, 13)), str(rng.choice(["adam", "sgd", "lion"]))
            loss = (np.log10(lr) + 2.5) ** 2 + 0.01 * layers + 0.1 * (opt == "sgd") + shift
            rows.append({"lr": lr, "layers": layers, "batch": batch, "opt": opt, "warmup": 100,
                         "params": params, "tokens": tokens, "loss": loss})
    spec = TaskSpec(name="mixed", objective={"column": "loss", "direction": direction},
                    config=["lr", "layers", "batch", "opt", "warmup"], fidelity=["params", "tokens"])
    return build_task(spec, pd.DataFrame(rows))


def drive(problem, oracle, optimizer, n):
    outcomes = []
    for _ in range(n):
        query = optimizer.ask()
        outcome = oracle.evaluate(query)
        optimizer.tell(query, outcome)
        outcomes.append(outcome)
    return outcomes


def drive_budget(oracle, optimizer, max_queries, max_refused=3):
    """Drive as the harness does: a query that does not fit what is left is refused
    (not run, not told, not charged); stop once no fidelity fits or after `max_refused` refusals
    in a row. Returns the outcomes and the number of refused queries."""
    outcomes, refused, in_a_row = [], 0, 0
    while optimizer.affordable() and len(outcomes) < max_queries and in_a_row < max_refused:
        query = optimizer.ask()
        if query.fidelity not in optimizer.affordable():  # on cost budgets: its cost > remaining()
            refused, in_a_row = refused + 1, in_a_row + 1
            continue
        outcome = oracle.evaluate(query)
        optimizer.tell(query, outcome)
        outcomes.append(outcome)
        in_a_row = 0
    return outcomes, refused


def config_key(config, params):
    """A hashable key for a configuration (candidate identity without relying on pool order)."""
    return tuple(config[p] for p in params)


def isolated_quarter(space, pool):
    """Keys of the quarter of `pool` farthest from their nearest neighbour (unit-cube encoding):
    the candidates with the largest Voronoi cells, which snapped continuous draws favour."""
    x = encode(space, pool)
    d = np.linalg.norm(x[:, None] - x[None], axis=2)
    np.fill_diagonal(d, np.inf)
    far = np.argsort(-d.min(axis=1), kind="stable")[: len(pool) // 4]
    return {config_key(config_at(pool, int(i)), list(pool.columns)) for i in far}


def check_quick_suite(task, out) -> None:
    """random and best-prior run every quick-suite episode of `task`: full budgets, finite scores
    no better than the table optimum."""
    import math

    from bench.episode import run_episode
    from bench.gym.suites import load_suite
    from bench.methods import methods
    from bench.store import EpisodeKey, Store

    suite, store = load_suite("quick"), Store(out)
    for method in ("random", "best-prior"):
        for exp in suite.pick_experiments(task.split("test")):
            for b in suite.budget_objects():
                key = EpisodeKey(suite.name, task.name, method, exp, b.kind, b.amount, 0)
                s = run_episode(key, task, methods()[method], store)
                assert s.target_trials == b.amount
                assert math.isfinite(s.best) and 0 <= s.scores["pregret"] <= 1
                assert task.objective.sign * (s.best - task.scorer(exp).optimum) >= 0


class LearnedCentre(LearnedOptimizer):
    """A toy learned method: meta-trains the mean unit-cube location of the best target run over
    the fit experiments, then asks the untried target candidates nearest it."""

    VERSION = 1

    @classmethod
    def meta_train(cls, data, seed, progress, shift: float = 0.0, sleep: float = 0.0):
        import time

        import torch

        time.sleep(sleep)  # a long training, to kill `bench run` during it

        best = []
        for i, exp in enumerate(data.fit):
            pool, values = data.task.arrays(exp, data.task.experiment(exp).target.name)
            best.append(pool.x[int(np.argmin(data.task.objective.sign * values))])
            progress((i + 1) / len(data.fit))
        return {"centre": torch.tensor(np.mean(best, axis=0) + shift)}

    def __init__(self, problem, seed, *, checkpoint, shift: float = 0.0, sleep: float = 0.0):
        super().__init__(problem, seed, checkpoint=checkpoint)
        self.centre = checkpoint.state["centre"].numpy()

    def ask(self) -> Query:
        x, ids = self.problem.arrays().x, self.untried_ids()
        return self.query_candidate(int(ids[np.argmin(((x[ids] - self.centre) ** 2).sum(axis=1))]))


class Stalling(Optimizer):
    """Asks uniformly at random, but sleeps `seconds` in the ask of episode seed `stall_seed` (an episode
    that must hit the time limit); with `$BENCH_TEST_DIE_ONCE` set to a path that does not exist
    yet, the worker process dies in its first ask (and creates the path: the rerun survives)."""

    def __init__(self, problem, seed, seconds: float = 60.0, stall_seed: int = 1):
        super().__init__(problem, seed)
        self.stall = seconds if seed == method_seed(stall_seed) else 0.0  # the harness hashes the seed

    def ask(self) -> Query:
        import os
        import time

        flag = os.environ.get("BENCH_TEST_DIE_ONCE")
        if flag and not os.path.exists(flag):
            open(flag, "w").close()
            os._exit(9)
        time.sleep(self.stall)
        ids = self.untried_ids()
        return self.query_candidate(int(ids[self.rng.integers(len(ids))]))


def noisy_test_experiments(task):
    """The task with every outcome of its test experiments replaced by noise (training must not
    notice)."""
    import dataclasses

    table = task.table.copy()
    test = table.experiment.isin(task.split("test"))
    table.loc[test, "value"] = np.random.default_rng(1).normal(9, 3, test.sum())
    return dataclasses.replace(task, table=table)


def drift_family(members: int = 12, test: int = 3, runs: int = 30, seed: int = 0):
    """A synthetic family with a landscape shift: member m's optimum in log10(lr) moves linearly
    with log10(cost), intercept and slope drawn per member; a second parameter (warmup share) has
    a fixed optimum. Three fidelities (cost 1, 10, 100 GPU-hours), `runs` configurations each;
    the last `test` members are test experiments."""
    rng = np.random.default_rng(seed)
    rows = []
    for m in range(members):
        start, drift = rng.uniform(-3.5, -2.5), rng.uniform(-0.6, 0.2)
        for level, (params, cost) in enumerate(((1e7, 1.0), (1e8, 10.0), (1e9, 100.0))):
            best = start + drift * level
            for _ in range(runs):
                lr, warmup = 10 ** rng.uniform(-5, -1), rng.uniform(0, 0.3)
                loss = (np.log10(lr) - best) ** 2 + 4 * (warmup - 0.1) ** 2 + 3.0 - 0.3 * level
                rows.append({"member": f"m{m}", "lr": lr, "warmup": warmup, "params": params,
                             "gpu_hours": cost, "loss": loss + rng.normal(0, 0.02)})
    spec = TaskSpec(name="drift", objective={"column": "loss", "direction": "minimize"},
                    config=[{"name": "lr", "log": True}, "warmup"], fidelity=["params"],
                    cost={"column": "gpu_hours"}, experiment="member",
                    test=[f"m{m}" for m in range(members - test, members)])
    return build_task(spec, pd.DataFrame(rows))


def with_presets(tmp_path, monkeypatch, **presets):
    """A generator for a fixture: the project's configs plus `presets` ({name: preset}) in
    `tmp_path/configs`, used through $BENCH_CONFIGS (worker processes too); yields that folder."""
    import shutil
    from pathlib import Path

    import yaml

    from bench.methods import methods
    from bench.paths import configs_dir

    target = tmp_path / "configs"
    shutil.copytree(configs_dir(), target)
    merged = yaml.safe_load((target / "methods.yaml").read_text()) | presets
    (target / "methods.yaml").write_text(yaml.safe_dump(merged))
    monkeypatch.setenv("BENCH_CONFIGS", str(target))
    monkeypatch.setenv("PYTHONPATH", str(Path(__file__).resolve().parents[1]))
    methods.cache_clear()
    yield target
    methods.cache_clear()


def bench_here(monkeypatch, *args) -> int:
    """`bench ARGS` in this process; the exit code."""
    from bench.cli import main

    monkeypatch.setattr(sys, "argv", ["bench", *args])
    try:
        main()
    except SystemExit as exc:
        return int(exc.code or 0)
    return 0
