"""FSBO: deterministic training blind to test experiments, full episodes on untried candidates,
meta-training that transfers to held-out experiments, and the mechanism's parts (inputs, prior cap,
log-EI, the prior's first pick)."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from baselines.fsbo import (
    FSBO,
    DeepKernelGP,
    FeatureExtractor,
    Settings,
    cap_prior,
    experiment_tables,
    gp_inputs,
    held_out_episodes,
    holdout_score,
    log_expected_improvement,
)
from bench.episode import run_episode
from bench.gym.problem import Budget
from bench.gym.registry import load_task
from bench.methods import methods
from bench.optimizer import Checkpoint
from bench.store import EpisodeKey, Store
from bench.training import TrainingData, train
from tests.helpers import noisy_test_experiments

ROOT = Path(__file__).resolve().parents[1]

TINY = {"kernel_steps": 10, "train_steps": 20, "eval_every": 10, "holdout_draws": 1, "max_prior": 60,
        "finetune_steps": 2}


def tiny_spec(**params):
    return methods()["fsbo"].model_copy(update={"params": {**TINY, **params}})


@pytest.fixture(scope="module")
def sft_checkpoint():
    data = TrainingData.of(load_task("sft_lora"))
    return Checkpoint(FSBO.meta_train(data, 0, lambda _: None, **TINY), {})


def load_model(state: dict, settings: Settings) -> DeepKernelGP:
    model = DeepKernelGP(state["inputs"], settings).to(torch.float64)
    shapes = {k: v.shape for k, v in model.state_dict().items()}
    model.load_state_dict({k: v.reshape(shapes[k]) for k, v in state["model"].items()})
    return model


def test_training_is_deterministic_and_never_reads_test_experiments(cache):
    task = load_task("sft_lora")
    a, path = train(tiny_spec(), task, force=True)
    b, _ = train(tiny_spec(), task, force=True)
    c, _ = train(tiny_spec(), noisy_test_experiments(task), force=True)
    assert a.meta["digest"] == b.meta["digest"] == c.meta["digest"]
    assert path.exists() and np.isfinite(a.meta["validation_pregret"])
    held = set(a.state["holdout"])
    assert held and held <= set(a.meta["fit"]) and not held & set(a.meta["validation"])
    assert a.state["deep_steps"] % TINY["eval_every"] == 0


def test_episode_on_a_test_experiment_asks_only_untried_candidates(cache, tmp_path):
    task = load_task("sft_lora")
    exp = task.split("test")[0]
    key = EpisodeKey("t", task.name, "fsbo", exp, "trials", 5, 0)
    summary = run_episode(key, task, tiny_spec(), Store(tmp_path / "out"))
    assert summary.failed is None and summary.trials == summary.target_trials == 5
    trials = [json.loads(line) for line in (key.folder(tmp_path / "out") / f"{key.stem()}.jsonl").open()]
    configs = {json.dumps(t["config"], sort_keys=True) for t in trials}
    assert len(configs) == 5 and not any(t["snapped"] for t in trials)
    assert list((cache / "checkpoints" / "sft_lora").glob("fsbo-*.pt"))


def test_meta_training_transfers_to_held_out_experiments():
    """The prior-conditioned target mean ranks the validation experiments' target pools better
    after a short meta-training than with the untrained kernel (pretrain_hparams: ~0.34 -> ~0.66)."""
    data = TrainingData.of(load_task("pretrain_hparams"))
    params = {"kernel_steps": 40, "train_steps": 40, "eval_every": 20, "max_prior": 100}
    scores = {}
    for name, steps in (("untrained", {"kernel_steps": 0, "train_steps": 0}), ("trained", {})):
        state = FSBO.meta_train(data, 0, lambda _: None, **{**params, **steps})
        settings = Settings(**{**params, **steps})
        tables = [experiment_tables(data, e) for e in data.validation]
        episodes = held_out_episodes(tables, data.priors, Settings(holdout_draws=3), state["centre"].numpy(),
                                     state["scale"].numpy(), np.random.default_rng(5))
        scores[name] = holdout_score(load_model(state, settings), episodes)
        if name == "trained":
            assert state["loss_curve"][-1] < state["loss_curve"][0]
    assert scores["trained"] > scores["untrained"] + 0.15, scores


def test_inputs_carry_fidelity_descriptors_relative_to_the_target():
    descriptors = np.array([[6.0, 9.0, -0.5], [7.0, 9.0, 0.1], [8.0, 10.0, 2.0]])
    x = np.array([[0.1, 0.2], [0.3, 0.4], [0.5, 0.6]])
    levels = np.array([0, 1, 2])
    u = gp_inputs(x, levels, descriptors, 2, descriptors.mean(0), np.ones(3)).numpy()
    assert u.shape == (3, 2 + 2 * 3 + 1)
    np.testing.assert_allclose(u[:, :2], x)
    np.testing.assert_allclose(u[:, 5:8], descriptors - descriptors[2])  # zero at the target
    np.testing.assert_allclose(u[:, -1], [0, 0, 1])
    phi = FeatureExtractor(8, 16, 2)  # residual MLP, zero output layer: the identity at start
    torch.testing.assert_close(phi(torch.as_tensor(u[:, :-1], dtype=torch.float32)),
                               torch.as_tensor(u[:, :-1], dtype=torch.float32))


def test_prior_cap_takes_the_most_expensive_fidelities_first():
    levels = np.array([0] * 50 + [1] * 30 + [2] * 20)
    keep = cap_prior(levels, 40, np.random.default_rng(0))
    assert len(keep) == 40 and len(set(keep)) == 40
    assert (levels[keep] == 2).sum() == 20 and (levels[keep] == 1).sum() == 20
    assert len(cap_prior(levels, 500, np.random.default_rng(0))) == 100


def test_log_expected_improvement_is_exact_and_finite_far_below_the_incumbent():
    mean = torch.tensor([-40.0, -8.0, -2.0, -0.5, 0.0, 0.7, 3.0], dtype=torch.float64)
    sd = torch.tensor([1.0, 1.0, 0.5, 2.0, 1.0, 0.3, 1.0], dtype=torch.float64)
    got = log_expected_improvement(mean, sd, 0.0)
    z = mean / sd
    phi = torch.exp(-z ** 2 / 2) / math.sqrt(2 * math.pi)
    exact = torch.log(sd * (phi + z * 0.5 * torch.erfc(-z / math.sqrt(2))))
    assert torch.isfinite(got).all()
    torch.testing.assert_close(got[1:], exact[1:], rtol=1e-6, atol=1e-9)
    assert got[0] < got[1] < got[2]  # z = -40: no underflow, still ordered


def test_first_ask_is_the_prior_pick_and_asks_repeat_per_seed(sft_checkpoint):
    task = load_task("sft_lora")
    exp = task.split("test")[0]
    problem = task.problem(exp, Budget("trials", 6), "cheaper", seed=3)
    opt = FSBO(problem, 3, checkpoint=sft_checkpoint, **TINY)
    assert len(opt.prior_scores) == min(len(problem.prior), TINY["max_prior"])
    first = opt.ask()
    fitted, observed = opt.fitted()  # no target observation: the best posterior mean
    with torch.no_grad():
        assert not len(observed) and first.candidate == int(torch.argmax(fitted(opt.pool_inputs).mean))
    runs = []
    for _ in range(2):
        opt, oracle, asked = FSBO(problem, 3, checkpoint=sft_checkpoint, **TINY), task.oracle(exp, 3), []
        for _ in range(6):
            query = opt.ask()
            assert query.fidelity == problem.target and query.candidate in opt.untried_ids()
            opt.tell(query, oracle.evaluate(query))
            asked.append(query.candidate)
        runs.append(asked)
    assert runs[0] == runs[1] and len(set(runs[0])) == 6


def test_training_does_not_depend_on_what_the_process_imported(tmp_path):
    """Importing BoTorch changes gpytorch's process-wide settings (exact solves, Cholesky up to
    4,096 points); FSBO fixes them where it computes, so a worker that imported a BoTorch method
    first trains the same checkpoint as one that did not."""
    code = ("import sys, importlib, bench; [importlib.import_module(m) for m in sys.argv[1:]]; "
            "from tests.test_fsbo import tiny_spec; from bench.gym.registry import load_task; "
            "from bench.training import train; "
            "print(train(tiny_spec(), load_task('data_mixture'), force=True)[0].meta['digest'])")
    digests = [subprocess.run([sys.executable, "-c", code, *first], cwd=ROOT, capture_output=True, text=True,
                              env={**os.environ, "BENCH_CACHE": str(tmp_path / "-".join(first))},
                              check=True, timeout=600).stdout.split()[-1]
               for first in ([], ["botorch"])]
    assert digests[0] == digests[1]
