"""`data_mixture` on RegMix: the 13 domain experiments (not their mean), the split, no divergence."""

import pytest

from bench.gym.registry import load_task
from bench.gym.tasks import data_mixture


@pytest.fixture(scope="module")
def task():
    return load_task("data_mixture")


def test_experiments_are_the_domains_without_their_mean(task):
    """The mean of the 13 losses averages the test domains: it is no experiment (module docstring)."""
    assert len(task.experiments) == 13 and "mean" not in task.experiments
    assert set(task.experiments) < set(task.space.keys())  # each a Pile domain's validation loss
    assert sorted(task.split("test")) == sorted(data_mixture.TEST) == ["github", "pile_cc", "pubmed_central"]
    assert len(task.split("train")) == 10
    for exp in task.experiments.values():
        assert [len(task.outcomes(exp.name, f.name)) for f in exp.fidelities] == [768, 256, 64]


def test_no_run_is_declared_diverged(task):
    assert not task.table.diverged.any()
