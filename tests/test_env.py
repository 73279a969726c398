"""The Gymnasium front door: a valid environment per task, and the same episodes as the harness."""

import warnings

import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

from bench.episode import run_episode
from bench.gym import make_env, make_vector_env
from bench.gym.problem import Budget, Query
from bench.gym.registry import load_task, task_names
from bench.methods import MethodSpec
from bench.metrics import episodes_frame, nregret
from bench.optimizer import Optimizer
from bench.store import EpisodeKey, Store


@pytest.mark.parametrize("name", task_names())
def test_check_env_passes_for_one_experiment_of_every_task(name):
    task = load_task(name)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # unbounded Box warnings: values are in the objective's units
        check_env(make_env(task, task.split("test")[0], suite="quick"), skip_render_check=True)


class Ids(Optimizer):
    """Asks the given candidate ids at the target, in order."""

    def __init__(self, problem, seed, ids=()):
        super().__init__(problem, seed)
        self.ids = list(ids)

    def ask(self) -> Query:
        return self.query_candidate(self.ids[len(self.history)])


@pytest.mark.parametrize("name, experiment", [("pretrain_hparams", "moe-3in8-D20B"),
                                              ("data_mixture", "pile_cc")])
def test_vector_env_and_harness_agree_on_rewards_and_regrets(tmp_path, name, experiment):
    task = load_task(name)
    budget, num, seed = 5, 3, 11
    env = make_vector_env(task, experiment, num, suite="quick", budget=budget)
    obs, _ = env.reset(seed=seed)
    n = env.single_action_space.n
    rng = np.random.default_rng(0)
    actions = rng.integers(n, size=(budget, num))
    actions[3] = actions[1]  # a re-ask costs a trial and returns the same outcome
    rewards, regrets = [], []
    for t in range(budget):
        obs, reward, done, truncated, info = env.step(actions[t])
        rewards.append(reward.copy())
        regrets.append(info["nregret"].copy())
        assert obs["history_mask"][:, t].all() and done.all() == (t == budget - 1)
    for i in range(num):
        spec = MethodSpec(name="ids", target="tests.test_env:Ids", family="test",
                          params={"ids": actions[:, i].tolist()})
        key = EpisodeKey("quick", task.name, "ids", experiment, "trials", budget, seed + i)
        summary = run_episode(key, task, spec, Store(tmp_path), "cheaper")
        row = episodes_frame([{**summary, "key": key.__dict__}]).iloc[0]
        np.testing.assert_allclose([r[i] for r in regrets], row.nregret_curve, rtol=1e-9)
        worst = nregret(summary["worst"], summary["optimum"], summary["median"], summary["direction"])
        assert worst - sum(r[i] for r in rewards) == pytest.approx(row.nregret)  # the return


def test_observation_holds_the_harness_prior_and_candidates():
    task = load_task("pretrain_hparams")
    env = make_env(task, "moe-3in8-D20B", suite="quick")
    obs, _ = env.reset(seed=4)
    problem = task.problem("moe-3in8-D20B", Budget("trials", 5), "cheaper", seed=4)
    target = problem.arrays()
    np.testing.assert_allclose(obs["candidates"][-1, : len(target)], target.x, rtol=1e-6)
    m = int(obs["prior_mask"].sum())
    assert m == len(problem.prior)
    expected = -task.objective.sign * problem.prior["value"]
    np.testing.assert_allclose(obs["prior_value"][:m], expected, rtol=1e-6)
    assert (obs["history_mask"] == 0).all() and obs["budget_left"][0] == 1
