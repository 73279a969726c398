"""MetaBO: deterministic, train-only checkpoints; valid episodes; PPO learns; one feature function."""


import numpy as np
import pandas as pd
import pytest
import torch

from baselines.metabo import (
    MetaBO,
    Settings,
    build_networks,
    env_context,
    feature_width,
    gp_posterior,
    play_group,
    step_features,
)
from bench.episode import run_episode
from bench.gym.env import EpisodeBatch
from bench.gym.problem import Budget
from bench.gym.registry import load_task
from bench.gym.spec import TaskSpec, build_task
from bench.gym.task import Prior
from bench.loop import play
from bench.methods import methods
from bench.optimizer import Checkpoint
from bench.store import EpisodeKey, Store
from bench.training import TrainingData, checkpoint_for, train
from tests.helpers import drive, noisy_test_experiments

TINY = {"train_steps": 2, "groups": 2, "envs": 2, "epochs": 1, "minibatch": 16, "hidden": 16}


def _spec(**params):
    return methods()["metabo"].model_copy(update={"params": {**TINY, **params}})


def test_training_is_deterministic_and_never_reads_test_experiments(cache):
    task = load_task("sft_lora")
    spec = _spec()
    a, _ = train(spec, task)
    b, _ = train(spec, task, force=True)
    c, _ = train(spec, noisy_test_experiments(task), force=True)
    assert a.meta["digest"] == b.meta["digest"] == c.meta["digest"]
    assert np.isfinite(a.meta["validation_pregret"])
    other, _ = train(_spec(lr=3e-3), task)
    assert other.meta["digest"] != a.meta["digest"]


def test_episode_completes_and_asks_only_untried_candidates(cache, tmp_path):
    task = load_task("architecture")
    spec = _spec()
    exp = task.split("test")[0]
    key = EpisodeKey("t", task.name, spec.name, exp, "trials", 5, 0)
    summary = run_episode(key, task, spec, Store(tmp_path / "out"))
    assert summary.failed is None and summary.target_trials == 5
    optimizer = spec.make(task.problem(exp, Budget("trials", 5), seed=3), 3, checkpoint_for(spec, task))
    for _ in range(5):
        untried = set(optimizer.untried_ids().tolist())
        query = optimizer.ask()
        assert query.candidate in untried
        optimizer.tell(query, task.oracle(exp, seed=3).evaluate(query))


def test_env_and_problem_give_the_same_features():
    """Training reads the Gymnasium env's arrays, testing the `Problem`: same features."""
    task = load_task("pretrain_hparams")
    data = TrainingData.of(task)
    s = Settings()
    exp = max(data.fit, key=lambda e: len(task.experiment(e).fidelities))
    for prior in data.priors:
        episodes = EpisodeBatch(data.task, exp, Budget("trials", 3), prior, 1)
        episodes.reset([0], [7])
        n = int(episodes.sizes[-1])
        from_env = env_context(episodes.obs, 0, n, s)
        problem = data.task.problem(exp, Budget("trials", 3), prior, seed=7)
        state = {"policy": build_networks(task.encoder.width, s)[0].state_dict()}
        optimizer = MetaBO(problem, 7, checkpoint=Checkpoint(state, {}))
        assert from_env.prior.shape == (n, s.levels) and from_env.scalars[0] == 1.0
        np.testing.assert_allclose(from_env.prior, optimizer.context.prior, atol=1e-5)
        np.testing.assert_array_equal(from_env.scalars, optimizer.context.scalars)
        assert from_env.lengthscale == optimizer.context.lengthscale
        query = optimizer.ask()
        optimizer.tell(query, data.task.oracle(exp, seed=7).evaluate(query))
        episodes.step(np.array([len(episodes.fids) - 1]), np.array([query.candidate]), np.ones(1, bool))
        obs = episodes.obs
        env_feats = step_features(from_env, obs["history_x"][0, :1], obs["history_value"][0, :1], 1, 3)
        x, values = optimizer._target_history()
        opt_feats = step_features(optimizer.context, x, values, 1, 3)
        assert env_feats.shape == (n, feature_width(task.encoder.width, s.levels))
        np.testing.assert_allclose(env_feats, opt_feats, atol=1e-5)


def test_rollouts_sample_only_untried_candidates():
    task = load_task("architecture")
    data = TrainingData.of(task)
    s = Settings(envs=6)
    policy, value = build_networks(task.encoder.width, s)
    exp = data.fit[0]
    episodes = EpisodeBatch(data.task, exp, Budget("trials", 5), Prior("cheaper"), s.envs)
    out = play_group(episodes, np.arange(s.envs), policy, value, s, torch.Generator().manual_seed(0))
    assert (episodes.obs["tried"][:, -1].sum(axis=1) == 5).all()  # five distinct candidates each
    assert out["features"].shape[0] == 5 * s.envs and np.all(out["final"] >= 0)
    chosen = out["mask"][torch.arange(len(out["actions"])), out["actions"]]
    assert chosen.all()


def test_gp_interpolates_and_reverts_far_away():
    x = np.array([[0.2, 0.2], [0.8, 0.6]])
    y = np.array([1.0, -1.0])
    mean, std = gp_posterior(x, y, np.vstack([x, [[30.0, 30.0]]]), 0.3, 1e-4)
    np.testing.assert_allclose(mean[:2], y, atol=1e-3)
    assert std[:2].max() < 0.05 and abs(mean[2]) < 1e-6 and std[2] == pytest.approx(1.0)


def _anti_task():
    """Synthetic: each experiment's target is best where its cheap runs are worst. Only a
    policy that learns to read the prior model's prediction backwards can do well."""
    rng = np.random.default_rng(0)
    rows = []
    for e in range(10):
        centre, x = rng.uniform(0.3, 0.7), rng.uniform(0.1, 0.9, 40)
        for params, tokens, sign in ((1e6, 1e9, 1.0), (1e8, 1e10, -1.0)):
            rows += [{"exp": f"e{e}", "x": v, "params": params, "tokens": tokens,
                      "loss": sign * (v - centre) ** 2} for v in x]
    spec = TaskSpec(name="anti", objective={"column": "loss", "direction": "minimize"}, config=["x"],
                    fidelity=["params", "tokens"], experiment="exp", test=["e8", "e9"])
    return build_task(spec, pd.DataFrame(rows))


def test_ppo_learns_to_use_the_prior():
    task = _anti_task()
    data = TrainingData.of(task)
    params = {"train_steps": 25, "groups": 4, "envs": 8, "lr": 3e-3, "hidden": 32}
    trained = Checkpoint(MetaBO.meta_train(data, 0, lambda _: None, **params), {})
    untrained = Checkpoint(MetaBO.meta_train(data, 0, lambda _: None, **{**params, "train_steps": 0}), {})

    def mean_nregret(checkpoint):
        scores = []
        for exp in task.split("test"):
            scorer = task.scorer(exp)
            for seed in range(10):
                problem = task.problem(exp, Budget("trials", 1), seed=seed)
                best = play(MetaBO(problem, seed, checkpoint=checkpoint, **params),
                            task.oracle(exp, seed=seed), problem)
                scores.append(float(scorer.nregret(best)))
        return float(np.mean(scores))

    learned, initial = mean_nregret(trained), mean_nregret(untrained)
    assert learned < 0.2 and initial > learned + 0.5  # measured: 0.0 against 0.76


def test_unknown_parameter_is_rejected():
    with pytest.raises(TypeError):
        Settings(**{"no_such_parameter": 1})


def test_drive_on_cost_budget_asks_at_target(cache):
    """A cost budget (no prior): it asks only at the target, within what the harness allows."""
    task = load_task("sft_lora")
    spec = _spec()
    exp = task.split("test")[0]
    problem = task.problem(exp, Budget("cost", 2), "none", seed=1)
    outcomes = drive(problem, task.oracle(exp, seed=1), spec.make(problem, 1, checkpoint_for(spec, task)), 2)
    assert {o.fidelity for o in outcomes} == {problem.target}
    assert len({o.candidate for o in outcomes}) == 2
