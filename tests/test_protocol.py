"""Suite protocol options: capped priors, extrapolation gaps, pool-aware budgets."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from bench.gym.problem import Budget
from bench.gym.registry import load_task
from bench.gym.suites import load_suite
from bench.gym.task import Prior
from bench.runner import plan
from bench.store import Store

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "my_sweep" / "spec.yaml"
BENCH = [sys.executable, "-c", "from bench.cli import main; main()"]


@pytest.fixture(scope="module")
def steplaw():
    return load_task("pretrain_hparams")


def _worth(task, exp, prior):
    costs = {f.name: f.cost for f in task.experiment(exp).fidelities}
    return prior["fidelity"].map(costs).sum() / task.experiment(exp).target.cost


def test_prior_budget_is_respected_and_seed_dependent(steplaw):
    exp = "dense-N1.07B-D56.9B"
    full = steplaw.problem(exp, Budget("trials", 1)).prior
    assert _worth(steplaw, exp, full) > 50  # the free prior is worth dozens of target runs
    priors = [steplaw.problem(exp, Budget("trials", 1), Prior(budget=2.0), seed=s).prior for s in range(5)]
    for p in priors:
        assert 1.0 < _worth(steplaw, exp, p) <= 2.0 + 1e-9  # up to, never past, the cap
        merged = p.merge(full, on=["fidelity", "lr", "bs"], suffixes=("", "_full"))
        assert len(merged) == len(p) and np.allclose(merged.value, merged.value_full)  # real runs
    assert len({tuple(sorted(map(tuple, p[["fidelity", "lr", "bs"]].to_numpy()))) for p in priors}) == 5
    again = steplaw.problem(exp, Budget("trials", 1), Prior(budget=2.0), seed=3).prior
    assert again.equals(priors[3])


def test_gap_removes_exactly_the_fidelities_above_target_cost_over_g(steplaw):
    exp = steplaw.experiment("dense-N1.07B-D56.9B")
    target = exp.target.cost
    for gap in (1, 4, 16, 64):
        prior = steplaw.problem(exp.name, Budget("trials", 1), Prior(gap=gap)).prior
        expected = {f.name for f in exp.fidelities[:-1] if f.cost <= target / gap}
        assert set(prior.fidelity) == expected
    assert not steplaw.prior_fidelities(exp.name, Prior(gap=1e6))


def test_plan_skips_experiments_without_a_prior_and_budgets_beyond_half_the_pool(tmp_path):
    suite = load_suite("paper").model_copy(update={"gap": 1e6, "seeds": 1})
    p = plan(suite, ["data_mixture"], ["random"], Store(tmp_path))
    assert not p.todo and len(p.skipped) == 3 and "no prior fidelity" in p.skipped[0]
    paper = load_suite("paper").model_copy(update={"seeds": 1})
    p = plan(paper, ["architecture"], ["random"], Store(tmp_path))
    arch = load_task("architecture")
    for exp in arch.split("test"):
        pool = len(arch.outcomes(exp, arch.experiment(exp).target.name))
        budgets = {k.budget for _, k in p.todo if k.experiment == exp}
        assert budgets == {b for b in (1, 3, 5, 10) if b <= pool / 2}
    assert any("exceed half the target pool" in line for line in p.skipped)


def test_suite_options_per_task_and_validation():
    raw = {**load_suite("paper").model_dump(), "gap": {"data_mixture": 10, "default": 2}, "prior_budget": 3}
    suite = type(load_suite("paper")).model_validate(raw)
    assert suite.prior_for("data_mixture") == Prior("cheaper", gap=10, budget=3)
    assert suite.prior_for("grpo") == Prior("cheaper", gap=2, budget=3)
    with pytest.raises(ValueError, match="gap"):
        type(suite).model_validate({**raw, "gap": 0.5})


@pytest.mark.slow
def test_a_spec_file_with_a_gap_and_a_prior_budget_runs(tmp_path):
    (tmp_path / "far.yaml").write_text(
        "name: myfar\nsplit: test\nbudgets: [1, 2]\nseeds: 2\nprior_budget: 1\ngap: 4\n")
    out = tmp_path / "out"
    r = subprocess.run([*BENCH, "run", "--task", str(EXAMPLE), "--suite", str(tmp_path / "far.yaml"),
                        "--method", "random,best-prior,extrapolate", "--out", str(out), "--quiet"],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    import json

    markers = [json.loads(p.read_text()) for p in out.rglob("*.done.json")]
    assert len(markers) == 3 * 2 * 2
    for m in markers:
        assert m["prior_worth"] <= 1 + 1e-9 and m["extrapolation"] >= np.log10(4) - 1e-9
    r = subprocess.run([*BENCH, "leaderboard", "--runs", str(out)], capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0 and "separated" in r.stdout
