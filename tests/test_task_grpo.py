"""The simulated `grpo` task: calibration, determinism, landscape shift, cliffs, noise, the table."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy.stats import spearmanr

from bench.data import path_of
from bench.errors import BenchError
from bench.gym.problem import Budget, Query
from bench.gym.simulators import grpo as sim
from bench.gym.tasks import grpo as grpo_task

SIZES = list(sim.SIZES)
POOL = grpo_task.DESIGN_POINTS + len(grpo_task.LR_SWEEP)


@pytest.fixture(scope="module")
def simulator():
    return sim.GRPOSimulator()


@pytest.fixture(scope="module")
def task():
    return grpo_task.load()


def recipe(**changes) -> pd.DataFrame:
    """The source recipe with some hyperparameters changed."""
    return pd.DataFrame([{**sim.REF, **changes}])


def lr_sweep(lrs, **changes) -> pd.DataFrame:
    return pd.DataFrame([{**sim.REF, **changes, "lr": lr} for lr in lrs])


LR_GRID = np.logspace(-7, -4, 241)


def best_lr(simulator, family, benchmark, size, lrs=LR_GRID) -> float:
    return float(lrs[np.argmax(simulator.expected(lr_sweep(lrs), family, benchmark, size))])


# --- calibration -----------------------------------------------------------------------------
def test_fitted_curves_follow_the_measured_runs():
    measured = pd.read_csv(path_of("rl_qwen3", "results/export.csv"))
    cal = sim.calibrate()
    assert cal.eval_problems == {"gsm8k": 1319, "math": 5000}
    for size, c in cal.sizes.items():
        run = measured[["Step", size.lower()]].dropna()
        rmse = np.sqrt(np.mean((run[size.lower()] - c.gsm8k(run["Step"])) ** 2))
        assert c.gsm8k.rmse == pytest.approx(rmse)
        # within about the binomial s.e. of a 1319-problem eval (0.7-1.3 points here)
        assert rmse < 0.015, size
        assert c.gsm8k.a0 < c.gsm8k.top <= sim.GSM8K_CAP


def test_the_source_recipe_reproduces_the_measured_runs(simulator):
    measured = pd.read_csv(path_of("rl_qwen3", "results/export.csv"))
    cal = sim.calibrate()
    for size in SIZES:
        end = 100 * measured[size.lower()].dropna().iloc[-3:].mean()
        assert simulator.expected(recipe(), "qwen3", "gsm8k", size)[0] == pytest.approx(end, abs=1.5)
        assert simulator.expected(recipe(), "qwen3", "math", size)[0] == pytest.approx(
            100 * cal.sizes[size].math_trained, abs=0.05)


def test_a_base_math_score_below_the_smaller_model_is_replaced():
    cal = sim.calibrate().sizes
    # The 14B base scored 19.5 (format failure); it gets the 8B's gain subtracted from its trained score.
    assert cal["14B"].math_base == pytest.approx(
        cal["14B"].math_trained - (cal["8B"].math_trained - cal["8B"].math_base))
    assert cal["14B"].math_base > cal["8B"].math_base


# --- determinism -----------------------------------------------------------------------------
def test_a_seed_fixes_every_number(simulator):
    configs = grpo_task.pool(2)
    a = simulator.sample(configs, "qwen3", "gsm8k", "4B", seed=7)
    b = sim.GRPOSimulator().sample(configs, "qwen3", "gsm8k", "4B", seed=7)
    np.testing.assert_array_equal(a, b)
    c = simulator.sample(configs, "qwen3", "gsm8k", "4B", seed=8)
    assert np.mean(a == c) < 0.2
    # each value is a share of the 1319 GSM8K problems
    np.testing.assert_allclose(a * 1319 / 100, np.round(a * 1319 / 100), atol=1e-6)


def test_the_table_is_the_same_on_every_build():
    pd.testing.assert_frame_equal(grpo_task._table(), grpo_task._table())
    pd.testing.assert_frame_equal(grpo_task.pool(0), grpo_task.pool(0))
    assert not grpo_task.pool(0).equals(grpo_task.pool(1))  # each size has its own design


# --- landscape shift -------------------------------------------------------------------------
@pytest.mark.parametrize("family", list(sim.FAMILIES))
@pytest.mark.parametrize("benchmark", sim.BENCHMARKS)
def test_optimum_lr_falls_with_model_size_on_the_noise_free_surface(simulator, family, benchmark):
    best = [best_lr(simulator, family, benchmark, size) for size in SIZES]
    assert all(a > b for a, b in zip(best, best[1:], strict=False)), best
    assert best[0] / best[-1] > 3


def test_optimum_lr_falls_with_model_size_in_the_table(task):
    params = [sim.SIZES[s] for s in SIZES]
    for exp in task.experiments:
        lrs = []
        for size in SIZES:
            outcomes = task.outcomes(exp, size)
            assert len(outcomes) == (POOL if size != SIZES[-1] else grpo_task.DESIGN_POINTS)
            lrs.append(outcomes.nlargest(len(outcomes) // 10, "value")["lr"].median())
        assert spearmanr(np.log(params), np.log(lrs))[0] <= -0.8, (exp, lrs)
        assert lrs[-1] < lrs[0] / 2, (exp, lrs)


def test_landscapes_of_far_apart_sizes_disagree_more(simulator):
    configs = grpo_task.design(0)
    surface = {s: simulator.expected(configs, "qwen3", "gsm8k", s) for s in SIZES}
    adjacent = spearmanr(surface["8B"], surface["14B"])[0]
    far = spearmanr(surface["0.6B"], surface["14B"])[0]
    assert adjacent > 0.9 and far < 0.6


# --- cliffs ------------------------------------------------------------------------------------
def test_the_best_lr_of_the_smallest_model_diverges_at_the_target(simulator):
    lr = best_lr(simulator, "qwen3", "gsm8k", "0.6B")
    assert simulator.expected(lr_sweep([lr]), "qwen3", "gsm8k", "14B")[0] < 40
    assert simulator.expected(recipe(), "qwen3", "gsm8k", "14B")[0] > 90


def test_a_flat_basin_then_a_divergence_cliff(simulator):
    """FIGURES B.9's shape: twice the best lr is nearly as good; eight times diverges."""
    lr = best_lr(simulator, "qwen3", "gsm8k", "14B")
    best, double, half, eight = simulator.expected(
        lr_sweep([lr, 2 * lr, lr / 2, 8 * lr]), "qwen3", "gsm8k", "14B")
    assert best - double < 3 and best - half < 3
    assert eight < 5


def test_a_tiny_kl_with_a_high_lr_diverges(simulator):
    def no_kl_and_kl(**changes):
        configs = pd.concat([recipe(kl_coef=sim.KL_OFF, **changes), recipe(kl_coef=1e-2, **changes)])
        return simulator.expected(configs, "qwen3", "gsm8k", "14B")

    high, low = no_kl_and_kl(lr=1e-5), no_kl_and_kl()
    assert high[1] - high[0] > 20  # no KL: the cliff comes first
    assert low[0] > low[1]  # at a safe lr the KL term only costs gain


def test_a_too_small_clip_range_stalls_learning(simulator):
    clips = [0.05, 0.08, 0.12, 0.2]
    acc = simulator.expected(pd.concat([recipe(clip_range=c) for c in clips]), "qwen3", "gsm8k", "14B")
    assert np.all(np.diff(acc) > 0)
    assert acc[-1] - acc[0] > 8


def test_near_the_cliff_some_seeds_diverge(simulator):
    lr = 4 * simulator.lr_optimum("qwen3", "14B")  # the cliff of the source recipe
    runs = np.array([simulator.sample(recipe(lr=lr), "qwen3", "gsm8k", "14B", seed=s)[0] for s in range(200)])
    diverged = np.mean(runs < 5)
    assert 0.3 < diverged < 0.7
    assert runs[runs >= 5].min() > 60


# --- seed noise --------------------------------------------------------------------------------
@pytest.mark.parametrize("benchmark, problems", [("gsm8k", 1319), ("math", 5000)])
def test_seed_noise_is_that_of_a_finite_eval_set(simulator, benchmark, problems):
    runs = np.array([simulator.sample(recipe(), "qwen3", benchmark, "14B", seed=s)[0] for s in range(400)])
    mean = simulator.expected(recipe(), "qwen3", benchmark, "14B")[0]
    binomial = 100 * np.sqrt(mean / 100 * (1 - mean / 100) / problems)
    assert runs.mean() == pytest.approx(mean, abs=0.3)
    assert 0.9 * binomial <= runs.std() <= 1.6 * binomial


# --- the task ----------------------------------------------------------------------------------
def test_the_task_is_marked_simulated_with_its_split_and_fidelities(task):
    assert task.simulated and task.description.startswith("SIMULATED")
    assert task.sources == ("rl_qwen3",)
    assert len(task.table) == 4 * ((len(SIZES) - 1) * POOL + grpo_task.DESIGN_POINTS)
    assert sorted(task.split("test")) == ["llama-gsm8k", "qwen3-gsm8k"]
    assert sorted(task.split("train")) == ["llama-math", "qwen3-math"]
    for exp in task.experiments.values():
        assert [f.name for f in exp.fidelities] == SIZES
        costs = [f.cost for f in exp.fidelities]
        assert costs == sorted(costs) and costs[-1] == pytest.approx(sim.gpu_hours("14B"))
        assert exp.target.descriptors == {"params": 14e9}
    assert task.table["value"].between(0, 100).all()


def test_the_space_holds_the_no_kl_floor_and_log_integers(task):
    space = task.space
    assert space["kl_coef"].log and space["kl_coef"].lower == sim.KL_OFF
    assert space["lr"].log and (space["lr"].lower, space["lr"].upper) == (1e-7, 1e-4)
    for name, lo, hi in [("group_size", 2, 64), ("rollout_batch", 32, 1024), ("max_response_len", 256, 4096)]:
        assert space[name].log and (space[name].lower, space[name].upper) == (lo, hi)
    assert (task.table["kl_coef"] == sim.KL_OFF).mean() > 0.15


def test_a_problem_says_simulated_and_the_oracle_answers_from_the_table(task):
    problem = task.problem("qwen3-gsm8k", Budget("trials", 3))
    assert "SIMULATED" in problem.description
    assert set(problem.prior["fidelity"]) == set(SIZES[:-1]) and len(problem.prior) == 4 * POOL
    target = task.outcomes("qwen3-gsm8k", "14B")
    assert len(target) == grpo_task.DESIGN_POINTS  # a fresh design, no recipe sweep at the target
    assert not (target["group_size"] == sim.REF["group_size"]).any()
    config = target.drop(columns="value").iloc[5].to_dict()
    outcome = task.oracle("qwen3-gsm8k").evaluate(Query(config, "14B"))
    assert not outcome.snapped and outcome.value == target["value"].iat[5]


def test_bad_input_is_a_bench_error(simulator):
    with pytest.raises(BenchError, match="unknown GRPO model family"):
        simulator.expected(recipe(), "gpt", "gsm8k", "14B")
    with pytest.raises(BenchError, match="unknown GRPO benchmark"):
        simulator.expected(recipe(), "qwen3", "mmlu", "14B")
    with pytest.raises(BenchError, match="unknown model size"):
        simulator.expected(recipe(), "qwen3", "gsm8k", "70B")
    with pytest.raises(BenchError, match="missing"):
        simulator.expected(recipe().drop(columns="temperature"), "qwen3", "gsm8k", "14B")
    with pytest.raises(BenchError, match="positive"):
        simulator.expected(recipe(lr=-1e-6), "qwen3", "gsm8k", "14B")
    with pytest.raises(BenchError, match="non-negative"):
        simulator.sample(recipe(), "qwen3", "gsm8k", "14B", seed=-1)


def test_diverged_runs_are_flagged_below_the_threshold(simulator, task):
    table = task.table
    assert (table.diverged == (table.value < grpo_task.DIVERGED_BELOW)).all()
    for split in ("train", "test"):
        rows = table[table.experiment.isin(task.split(split))]
        assert rows.diverged.sum() > 0 and rows.diverged[rows.fidelity == SIZES[-1]].sum() > 0
    # far past the cliff every seed diverges, and scores below the threshold on both eval sets
    for benchmark in sim.BENCHMARKS:
        runs = [simulator.sample(recipe(lr=1e-4), "llama", benchmark, "14B", seed=s)[0] for s in range(300)]
        assert max(runs) < grpo_task.DIVERGED_BELOW


def test_test_experiments_have_target_pools_of_their_own(task):
    def configs(exp, size=SIZES[-1]):
        return set(map(tuple, task.outcomes(exp, size)[list(sim.PARAMS)].to_numpy()))

    train = configs("qwen3-math")
    assert configs("llama-math") == train
    qwen, llama = configs("qwen3-gsm8k"), configs("llama-gsm8k")
    assert len(qwen) == len(llama) == grpo_task.DESIGN_POINTS
    assert not (qwen & train) and not (llama & train) and not (qwen & llama)
    for size in SIZES[:-1]:  # cheap sizes: the gsm8k and math experiments read the same runs
        assert configs("qwen3-gsm8k", size) == configs("qwen3-math", size) == configs("llama-gsm8k", size)
