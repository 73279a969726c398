"""The Gymnasium front door: a valid environment per task, and the same episodes as the harness."""

import warnings

import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

from bench.episode import run_episode
from bench.gym import make_env, make_vector_env
from bench.gym.problem import Budget, Query
from bench.gym.registry import load_task, task_names
from bench.gym.task import Prior
from bench.methods import MethodSpec
from bench.metrics import episodes_frame
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
    rewards, pregrets, nregrets = [], [], []
    for t in range(budget):
        obs, reward, done, truncated, info = env.step(actions[t])
        rewards.append(reward.copy())
        pregrets.append(info["pregret"].copy())
        nregrets.append(info["nregret"].copy())
        assert obs["history_mask"][:, t].all() and done.all() == (t == budget - 1)
    for i in range(num):
        spec = MethodSpec(name="ids", cls="tests.test_env:Ids", family="test",
                          params={"ids": actions[:, i].tolist()})
        key = EpisodeKey("quick", task.name, "ids", experiment, "trials", budget, seed + i)
        summary = run_episode(key, task, spec, Store(tmp_path), "cheaper")
        row = episodes_frame([(key, summary)]).iloc[0]
        np.testing.assert_allclose([r[i] for r in pregrets], row.pregret_curve, rtol=1e-9)
        np.testing.assert_allclose([r[i] for r in nregrets], row.nregret_curve, rtol=1e-9)
        assert 1 - sum(r[i] for r in rewards) == pytest.approx(row.pregret)  # the return


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


def test_observation_flags_diverged_runs_as_the_harness_does():
    """Which cheap runs and which of the episode's runs diverged: the Problem's prior flags and the
    oracle's outcomes, in the single and the vector env."""
    task = load_task("sft_lora")
    problem = task.problem("qwen3-base", Budget("trials", 10), "cheaper", seed=3)
    oracle = task.oracle("qwen3-base", 3)
    target = [oracle.evaluate(Query(None, problem.target, i)) for i in range(len(problem.arrays()))]
    ids = [i for i, o in enumerate(target) if o.diverged][:2] + [i for i, o in enumerate(target)
                                                               if not o.diverged][:2]
    assert len(ids) == 4
    single = make_env(task, "qwen3-base", budget=10, suite="quick")
    vector = make_vector_env(task, "qwen3-base", num_envs=1, budget=10, suite="quick")
    obs, _ = single.reset(seed=3)
    batch, _ = vector.reset(seed=3)
    m = int(obs["prior_mask"].sum())
    assert m == len(problem.prior) and problem.prior["diverged"].any()
    np.testing.assert_array_equal(obs["prior_diverged"][:m], problem.prior["diverged"].to_numpy())
    assert not obs["prior_diverged"][m:].any()
    for i in ids:
        obs = single.step(i)[0]
        batch = vector.step(np.array([i]))[0]
    expected = [int(target[i].diverged) for i in ids]
    assert list(obs["history_diverged"][:4]) == expected == [1, 1, 0, 0]
    np.testing.assert_array_equal(batch["history_diverged"][:, :4], [expected])


def test_reward_is_the_improvement_of_pregret_by_hand():
    """pregret = share of the target pool strictly better; before any target run it is 1."""
    task = load_task("pretrain_hparams")
    env = make_env(task, "moe-3in8-D20B", suite="quick", budget=2)
    env.reset(seed=3)
    problem = task.problem("moe-3in8-D20B", Budget("trials", 2), "cheaper", seed=3)
    values = task.oracle("moe-3in8-D20B", seed=3).evaluate
    pool = task.arrays("moe-3in8-D20B", problem.target)[1]
    better = lambda v: float(np.mean(task.objective.sign * pool < task.objective.sign * v))  # noqa: E731
    first = values(Query(None, problem.target, 0)).value
    _, reward, _, _, info = env.step(0)
    assert info["pregret"] == pytest.approx(better(first)) and reward == pytest.approx(1 - better(first))
    assert info["value"] == first and info["regret"] >= 0 and np.isfinite(info["nregret"])


@pytest.mark.parametrize("budget, prior", [(Budget("trials", 3), Prior("cheaper", gap=3)),
                                           (Budget("trials", 3), Prior("none")),
                                           (Budget("cost", 3), Prior("cheaper", gap=3))])
def test_observation_shows_only_the_pools_the_episode_is_given(budget, prior):
    """Candidates of a rung the suite withholds are masked and zero, as `Problem.pools` leaves them out."""
    from bench.gym.env import EpisodeBatch

    task, exp = load_task("pretrain_hparams"), "moe-3in8-D20B"
    episodes = EpisodeBatch(task, exp, budget, prior, 2)
    episodes.reset([0, 1], [5, 6])
    problem = task.problem(exp, budget, prior, seed=5)
    names = [f.name for f in problem.fidelities]
    for level, name in enumerate(names):
        mask, x = episodes.obs["candidate_mask"][0, level], episodes.obs["candidates"][0, level]
        if name in problem.pools:
            assert mask.sum() == len(problem.pools[name])
            np.testing.assert_allclose(x[: mask.sum()], problem.pools[name].x, rtol=1e-6)
        else:
            assert mask.sum() == 0 and not x.any()
    assert set(problem.pools) != set(names) or budget.kind == "cost"


@pytest.mark.parametrize("budget, prior", [(Budget("trials", 4), Prior("cheaper")),
                                           (Budget("cost", 2), Prior("cheaper", gap=3))])
def test_single_env_matches_the_vector_env_sub_environment_over_whole_episodes(budget, prior):
    """`ConfigEnv` (scalar steps, cached resets) and sub-environment i of `VectorConfigEnv` (batched
    numpy) give identical observations, rewards, terminations and infos for the same seeds, across
    autoresets and a second reset with the same seeds (cache hits)."""
    from bench.gym.env import ConfigEnv, EpisodeBatch, VectorConfigEnv

    task, exp, num, base = load_task("pretrain_hparams"), "moe-3in8-D20B", 2, 7
    vec = VectorConfigEnv(EpisodeBatch(task, exp, budget, prior, num))
    singles = [ConfigEnv(EpisodeBatch(task, exp, budget, prior, 1), cache_size=16) for _ in range(num)]
    levels = len(task.experiment(exp).fidelities)

    def same_obs(vector_obs, obs, i):
        assert vector_obs.keys() == obs.keys()
        for key, value in obs.items():
            assert value.dtype == vector_obs[key].dtype, key
            np.testing.assert_array_equal(value, vector_obs[key][i], err_msg=key)

    for second in (False, True):  # the same again: every reset of the second pass a cache hit
        rng, resets, hits = np.random.default_rng(1), num, 0
        vector_obs, info = vec.reset(seed=base)
        hits += sum(base + i in env._layouts for i, env in enumerate(singles))
        for i, env in enumerate(singles):
            obs, single_info = env.reset(seed=base + i)
            assert single_info["seed"] == info["seed"][i]
            same_obs(vector_obs, obs, i)
        next_seed, restarts = base + num, np.zeros(num, bool)
        for _ in range(12 if budget.kind == "trials" else 40):  # autoresets: several episodes each
            if budget.kind == "trials":
                actions = rng.integers(vec.single_action_space.n, size=num)
            else:  # any level and id: refusals (ids beyond a pool, withheld levels, too dear)
                actions = np.stack([rng.integers(levels, size=num),
                                    rng.integers(vec.single_action_space.nvec[1], size=num)], 1)
            vector_obs, reward, done, truncated, info = vec.step(actions)
            for i, env in enumerate(singles):
                if restarts[i]:  # autoreset: the next seed, the action ignored
                    hits, resets = hits + (next_seed in env._layouts), resets + 1
                    obs, _ = env.reset(seed=next_seed)
                    next_seed += 1
                    same_obs(vector_obs, obs, i)
                    assert reward[i] == 0 and not done[i] and not truncated[i]
                    continue
                obs, r, d, tr, single_info = env.step(actions[i])
                same_obs(vector_obs, obs, i)
                assert (r, d, tr) == (reward[i], done[i], truncated[i])
                assert single_info.keys() == info.keys()
                for key, value in single_info.items():
                    np.testing.assert_array_equal(value, info[key][i], err_msg=key)
                    assert type(value) is type(info[key][i].item())
            restarts = done | truncated
        assert resets >= 2 * num and hits == (resets if second else 0)
    assert not obs["candidates"].flags.writeable and not obs["prior_x"].flags.writeable


def test_single_env_cache_keeps_the_last_seeds_and_deals_the_same_after_an_eviction():
    env = make_env(load_task("pretrain_hparams"), "moe-3in8-D20B", suite="quick")
    env.cache_size = 2
    first = {k: v.copy() for k, v in env.reset(seed=2)[0].items()}
    for seed in (1, 2, 3):
        env.reset(seed=seed)
    assert list(env._layouts) == [2, 3]  # 1 was the least recently used
    env.reset(seed=1)
    assert list(env._layouts) == [3, 1]
    obs, _ = env.reset(seed=2)  # dealt anew
    for key, value in first.items():
        np.testing.assert_array_equal(obs[key], value, err_msg=key)
