"""A test experiment's target outcomes must never reach what an optimizer sees; nor may the
order of the tables."""

import dataclasses

import numpy as np
import pandas as pd
import pytest

from bench.episode import run_episode
from bench.gym.problem import Budget, Query
from bench.gym.registry import load_task
from bench.methods import MethodSpec, methods
from bench.optimizer import Optimizer
from bench.store import EpisodeKey, Store

# Learned methods and LLM agents are checked by their own tests (tiny training; a fake server).
RUNNABLE = [m for m, spec in methods().items()
            if not spec.missing() and not spec.needs_training and spec.family != "llm"]


def _visible(problem):
    return problem.prior, {f: problem.candidates(f) for f in problem.pools}, problem.description


@pytest.fixture(scope="module")
def mixture():
    return load_task("data_mixture")


def test_prior_holds_only_cheaper_fidelities(mixture):
    for exp in mixture.split("test"):
        p = mixture.problem(exp, Budget("trials", 5))
        assert p.target not in set(p.prior.fidelity)
        assert set(p.prior.fidelity) == {f.name for f in p.fidelities[:-1]}
        assert "value" not in p.candidates().columns
        assert len(p.candidates()) == 64  # the 1B pool, configurations only


def test_poisoning_target_outcomes_changes_nothing_visible(tiny_task):
    before = _visible(tiny_task.problem("b", Budget("trials", 3)))
    target = tiny_task.experiment("b").target.name
    mask = (tiny_task.table.experiment == "b") & (tiny_task.table.fidelity == target)
    table = tiny_task.table.copy()
    table.loc[mask, "value"] = -999.0
    poisoned = dataclasses.replace(tiny_task, table=table)
    after = _visible(poisoned.problem("b", Budget("trials", 3)))
    pd.testing.assert_frame_equal(before[0], after[0])
    for f in before[1]:
        pd.testing.assert_frame_equal(before[1][f], after[1][f])
    assert before[2] == after[2]
    assert -999.0 in poisoned.oracle("b").target_values()  # the oracle does see it


def test_no_prior_policy(tiny_task):
    assert tiny_task.problem("b", Budget("trials", 3), prior="none").prior.empty


def with_noise_at_target(task, experiment: str, seed: int = 1):
    """A copy of `task` whose target outcomes of `experiment` are replaced by noise."""
    table = task.table.copy()
    mask = (table.experiment == experiment) & (table.fidelity == task.experiment(experiment).target.name)
    rng = np.random.default_rng(seed)
    table.loc[mask, "value"] = rng.permutation(table.loc[mask, "value"].to_numpy()) + rng.normal(
        0, 1, int(mask.sum()))
    return dataclasses.replace(task, table=table)


def asked_until_target_outcome(task, experiment, method, budget, prior):
    """The queries a method asks up to and including its first target-fidelity query."""
    problem = task.problem(experiment, budget, prior, seed=0)
    oracle = task.oracle(experiment)
    opt = methods()[method].make(problem, 0)
    asked = []
    for _ in range(200):
        if not opt.affordable():
            break
        query = opt.ask()
        asked.append((query.fidelity, query.config))
        if query.fidelity == problem.target:
            break
        if query.fidelity in opt.affordable():
            opt.tell(query, oracle.evaluate(query))
    return asked


@pytest.mark.parametrize("method", RUNNABLE)
@pytest.mark.parametrize("budget, prior", [(Budget("trials", 3), "cheaper"), (Budget("cost", 1), "none")])
def test_first_target_query_ignores_target_outcomes(method, budget, prior):
    """Everything a method asks before its first target observation is the same whether the
    target outcomes are real or noise: they cannot have reached it."""
    task = load_task("pretrain_hparams")
    exp = "moe-3in8-D20B"  # a test experiment; 4 fidelities of 45 runs
    real = asked_until_target_outcome(task, exp, method, budget, prior)
    noisy = asked_until_target_outcome(with_noise_at_target(task, exp), exp, method, budget, prior)
    assert real == noisy and len(real) >= 1


class FirstRow(Optimizer):
    """Takes the first untried candidate in the order it is given: what a naive method does."""

    def ask(self) -> Query:
        return self.query(self.untried().iloc[0].to_dict())


def test_table_order_carries_no_information(tmp_path):
    """The row order of a source can encode the outcome (here: sorted best first). A method
    that reads the first row scores like random search, in expectation over seeds."""
    task = load_task("pretrain_hparams")
    exp = "dense-N1.07B-D56.9B"
    table = task.table.sort_values(["experiment", "fidelity", "value"], kind="stable")
    sorted_task = dataclasses.replace(task, table=table.reset_index(drop=True))
    assert sorted_task.outcomes(exp, sorted_task.experiment(exp).target.name)["value"].is_monotonic_increasing
    spec = MethodSpec(name="first-row", target="tests.test_leakage:FirstRow", family="test")
    scores = []
    for seed in range(40):
        key = EpisodeKey("s", task.name, "first-row", exp, "trials", 1, seed)
        scores.append(run_episode(key, sorted_task, spec, Store(tmp_path))["best"])
    values = sorted_task.oracle(exp).target_values()
    optimum = values.min()
    assert np.mean(np.isclose(scores, optimum)) < 0.2  # it would be 1.0 if order leaked
    # Same mean as a random draw (the pool's mean), within 3 standard errors.
    assert abs(np.mean(scores) - values.mean()) < 3 * values.std() / np.sqrt(len(scores))
