"""The policy's divergence awareness on a family built to need it: at every cheap scale the best
learning rate is the same, and runs above it by a margin that shrinks with scale diverge; at the
target the margin is negative, so the cheap optimum itself diverges. A policy that reads the
cheap runs' divergence (risk features, the divergence head and the last pick's guard) avoids it
at T=1; the ablation without them follows the cheap optimum."""

import numpy as np
import pandas as pd
import pytest

from agents.policy.policy import AutoLLMResearch
from bench.gym.problem import Budget
from bench.gym.spec import TaskSpec, build_task
from bench.gym.task import Prior
from bench.loop import run
from bench.optimizer import Checkpoint
from bench.training import TrainingData

LEVELS = (1e7, 1e8, 1e9, 1e10)  # parameters of each scale; the last is the target
MARGIN = (0.3, 0.15, 0.06, -0.06)  # runs with lr > optimum + margin diverge
TINY = {"d_model": 16, "heads": 2, "layers": 1, "ff": 32, "episodes": 24, "variants": 1, "keep": 1,
        "bc_epochs": 20, "rl": False}  # each of 3 members learns from 2/3 of it


def family(experiments: int = 10, seed: int = 0, runs: int = 40) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows = []
    for e in range(experiments):
        optimum = rng.uniform(0.35, 0.6)
        for level, (params, margin) in enumerate(zip(LEVELS, MARGIN, strict=True)):
            for lr in np.clip(np.linspace(0, 1, runs) + rng.uniform(-0.01, 0.01, runs), 0, 1):
                loss = 4.0 - 0.3 * level + (lr - optimum) ** 2 + rng.normal(0, 0.002)
                rows.append({"exp": f"e{e}", "lr": float(lr), "params": params, "gpu_hours": params / 1e7,
                             "loss": np.nan if lr > optimum + margin else loss})
    return pd.DataFrame(rows)


@pytest.fixture(scope="module")
def task():
    spec = TaskSpec(name="divergent", objective={"column": "loss", "direction": "minimize"},
                    config=["lr"], fidelity=["params"], cost={"column": "gpu_hours"}, experiment="exp",
                    test=["e0", "e1", "e2"])
    return build_task(spec, family())


def diverged_share(task, **params) -> float:
    """Share of T=1 episodes on the test experiments whose one target run diverged."""
    state = AutoLLMResearch.meta_train(TrainingData.of(task), 0, lambda _: None, **TINY, **params)
    checkpoint = Checkpoint(state, {})
    picks = []
    for exp in task.split("test"):
        for seed in range(4):
            problem = task.problem(exp, Budget("trials", 1), Prior("cheaper"), seed)
            policy = AutoLLMResearch(problem, seed, checkpoint=checkpoint)
            picks.append(run(policy, task.oracle(exp, seed), problem).best_diverged)
    return float(np.mean(picks))


@pytest.mark.slow
def test_the_risk_aware_policy_avoids_a_cheap_optimum_that_diverges_at_the_target(task):
    target = task.experiment("e0").target.name
    assert task.diverged("e0", target).mean() > 0.3  # the family is what it says
    aware, blind = diverged_share(task), diverged_share(task, risk=False)
    assert aware == 0.0 and blind >= 0.5, (aware, blind)
