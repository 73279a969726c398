"""The `cost` suite: budgets in GPU-hours (target-run equivalents), optimizers choose fidelities,
episodes end on the first query that does not fit, and the leaderboard scores recommend()."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from bench.episode import run_episode
from bench.gym.problem import Budget, Query
from bench.gym.rules import MAX_QUERIES_PER_TRIAL
from bench.gym.spec import TaskSpec, build_task
from bench.gym.suites import load_suite
from bench.methods import MethodSpec
from bench.metrics import episodes_frame
from bench.optimizer import Optimizer
from bench.store import EpisodeKey, Store

BENCH = [sys.executable, "-c", "from bench.cli import main; main()"]


def sweep(seed: int = 0) -> pd.DataFrame:
    """One float parameter at three (params, tokens) levels; target loss 1 + (x - .4)^2."""
    rng = np.random.default_rng(seed)
    rows = []
    for params, tokens, n, shift in ((1e6, 1e9, 40, 3.0), (1e7, 1e9, 20, 2.0), (1e8, 1e10, 16, 1.0)):
        for x in rng.uniform(0, 1, n):
            rows.append({"x": x, "params": params, "tokens": tokens, "loss": shift + (x - 0.4) ** 2})
    return pd.DataFrame(rows)


@pytest.fixture
def task():
    spec = TaskSpec(name="sweep", objective={"column": "loss", "direction": "minimize"},
                    config=["x"], fidelity=["params", "tokens"])
    return build_task(spec, sweep())


class CheapestOnly(Optimizer):
    """Asks random configurations at the cheapest fidelity, forever."""

    def ask(self) -> Query:
        cheapest = self.problem.fidelities[0].name
        pool = self.problem.candidates(cheapest)
        return Query(pool.iloc[int(self.rng.integers(len(pool)))].to_dict(), cheapest)


def episode(task, cls: str, budget: Budget, tmp_path, prior: str = "none"):
    spec = MethodSpec(name=cls.rsplit(":", 1)[-1], cls=cls, family="baseline")
    key = EpisodeKey("cost", task.name, spec.name, "sweep", budget.kind, budget.amount, 0)
    summary = run_episode(key, task, spec, Store(tmp_path), prior)
    log = [json.loads(line) for line in (key.folder(tmp_path) / f"{key.stem()}.jsonl").open()]
    return key, summary, log


def test_cost_suite_protocol():
    suite = load_suite("cost")
    assert suite.budget == "cost" and suite.prior == "none" and suite.split == "test"
    assert 1 in suite.budgets and suite.seeds >= 2
    assert all(b.kind == "cost" for b in suite.budget_objects())


def test_many_cheap_queries_end_on_the_budget_not_on_the_query_guard(task, tmp_path):
    _, summary, log = episode(task, "tests.test_cost_suite:CheapestOnly", Budget("cost", 1), tmp_path)
    exp = task.experiments["sweep"]
    cheap, target = exp.fidelities[0].cost, exp.target.cost
    assert len(log) > MAX_QUERIES_PER_TRIAL  # the trial-count guard would have stopped it
    assert len(log) == int(target / cheap + 1e-9)  # every cheap run that fits, then the end
    assert summary.gpu_hours <= target * (1 + 1e-9)
    assert summary.recommend is None and summary.target_trials == 0


def test_random_spends_target_runs_and_is_scored_by_its_recommendation(task, tmp_path):
    key, summary, log = episode(task, "baselines.random_search:RandomSearch", Budget("cost", 2), tmp_path)
    assert [t["fidelity"] for t in log] == [task.experiments["sweep"].target.name] * 2
    assert summary.recommend_value == min(t["value"] for t in log)
    scorer = task.scorer("sweep")
    assert summary.scores["value"] == summary.recommend_value
    assert summary.scores["pregret"] == pytest.approx(scorer.pregret(summary.recommend_value))
    tampered = dataclasses.replace(summary, best=scorer.optimum)  # the score ignores `best`
    row = episodes_frame([(key, tampered)]).iloc[0]
    assert row.score == summary.recommend_value and row.pregret == summary.scores["pregret"]


@pytest.mark.slow
def test_cli_cost_suite_with_random_and_botorch_mf(task, tmp_path):
    sweep().to_csv(tmp_path / "sweep.csv", index=False)
    (tmp_path / "sweep.yaml").write_text(
        "name: sweep\ntable: sweep.csv\nobjective: {column: loss, direction: minimize}\n"
        "config: [x]\nfidelity: [params, tokens]\n")
    out = tmp_path / "out"
    run = subprocess.run([*BENCH, "run", "--task", str(tmp_path / "sweep.yaml"), "--suite", "cost",
                          "--method", "random,botorch-mf", "--seeds", "1", "--out", str(out), "--quiet"],
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    board = subprocess.run([*BENCH, "leaderboard", "--runs", str(out)], capture_output=True, text=True,
                           timeout=120)
    assert board.returncode == 0, board.stderr
    rows = pd.read_csv(out / "leaderboard.csv")
    assert set(rows.method) == {"random", "botorch-mf"} and set(rows.budget_kind) == {"cost"}
    assert sorted(rows.budget.unique()) == [1, 2, 5] and (rows.episodes == 1).all()
    target_cost = task.experiments["sweep"].target.cost
    assert (rows.gpu_hours_mean <= rows.budget * target_cost * (1 + 1e-9)).all()
    mf = rows[rows.method == "botorch-mf"].set_index("budget")
    assert mf.pregret_mean.notna().all() and mf.nregret_mean.notna().all()  # recommend() recorded
    assert mf.loc[1, "nregret_mean"] < 0.5 and mf.loc[1, "pregret_mean"] < 0.5  # even with no target run


class TargetFirst(Optimizer):
    """Asks the target until it is refused, then cheap runs: an unaffordable query is not the end."""

    asks = 0

    def ask(self) -> Query:
        self.asks += 1
        fidelity = self.problem.target if self.asks == 1 else self.affordable()[0]
        pool = self.problem.candidates(fidelity)
        return Query(pool.iloc[int(self.rng.integers(len(pool)))].to_dict(), fidelity)


class AlwaysTarget(Optimizer):
    def ask(self) -> Query:
        return self.query(self.problem.candidates().iloc[0].to_dict())


def test_unaffordable_query_is_refused_and_the_method_goes_on(task, tmp_path):
    _, summary, log = episode(task, "tests.test_cost_suite:TargetFirst", Budget("cost", 0.5), tmp_path)
    exp = task.experiments["sweep"]
    assert summary.refused == 1  # the target run costs twice the budget
    assert log and {t["fidelity"] for t in log} == {exp.fidelities[0].name}
    assert summary.gpu_hours > 0.9 * 0.5 * exp.target.cost  # it spent the budget on cheap runs
    assert summary.budget_gpu_hours == pytest.approx(0.5 * exp.target.cost)


def test_repeated_refusals_end_the_episode_as_a_failure(task, tmp_path):
    from bench.gym.rules import MAX_REFUSALS

    key, summary, log = episode(task, "tests.test_cost_suite:AlwaysTarget", Budget("cost", 0.5), tmp_path)
    assert summary.refused == MAX_REFUSALS and log == []
    assert summary.failed == "no recommendation"
    row = episodes_frame([(key, summary)]).iloc[0]
    assert row.failed and row.score == task.scorer("sweep").worst and row.budget_spent == 0
    assert row.pregret == 1.0
