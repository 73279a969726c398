"""A test experiment's target outcomes must never reach what an optimizer sees."""

import pandas as pd
import pytest

from bench.gym.problem import Budget
from bench.gym.registry import load_task


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
    tiny_task.table.loc[mask, "value"] = -999.0
    tiny_task._pools.clear()
    after = _visible(tiny_task.problem("b", Budget("trials", 3)))
    pd.testing.assert_frame_equal(before[0], after[0])
    for f in before[1]:
        pd.testing.assert_frame_equal(before[1][f], after[1][f])
    assert before[2] == after[2]
    assert -999.0 in tiny_task.oracle("b").target_values()  # the oracle does see it


def test_no_prior_policy(tiny_task):
    assert tiny_task.problem("b", Budget("trials", 3), prior="none").prior.empty
