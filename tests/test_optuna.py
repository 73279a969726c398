"""Optuna adapter: the space round-trips, proposals stay in it, tells are the runs, seeds repeat,
the startup is a third of the budget drawn uniformly from the pool."""

import importlib.util

import numpy as np
import optuna
import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.trial import TrialState

import baselines.optuna_samplers as adapter
from baselines.optuna_samplers import OptunaSampler, to_distributions, to_params
from baselines.random_search import RandomSearch
from bench.errors import BenchError
from bench.gym.problem import Budget
from bench.gym.registry import load_task
from bench.gym.space import config_at, encode
from bench.methods import methods
from tests.helpers import config_key, drive, isolated_quarter, mixed_task

SAMPLERS = ["tpe", "gp", "qmc"] + (["cmaes"] if importlib.util.find_spec("cmaes") else [])
STARTUP = [s for s in SAMPLERS if s != "qmc"]


def test_space_translates_and_round_trips():
    task = mixed_task()
    dists = to_distributions(task.space)
    assert dists["lr"] == FloatDistribution(float(task.space["lr"].lower), float(task.space["lr"].upper),
                                            log=True)
    assert isinstance(dists["layers"], IntDistribution) and not dists["layers"].log
    assert isinstance(dists["batch"], IntDistribution) and dists["batch"].log
    assert dists["opt"] == CategoricalDistribution(["adam", "lion", "sgd"])
    assert dists["warmup"] == CategoricalDistribution([100])
    pool = task.problem("mixed", Budget("trials", 3)).candidates()
    for i in range(len(pool)):
        config = config_at(pool, i)
        frozen = optuna.trial.create_trial(params=to_params(dists, config), distributions=dists, value=0)
        for name, value in config.items():  # floats up to the 13-decimal rounding of bounds
            assert type(frozen.params[name]) is type(value)
            assert frozen.params[name] == (pytest.approx(value, rel=1e-12) if isinstance(value, float)
                                           else value)


@pytest.mark.parametrize("sampler", SAMPLERS)
def test_proposals_in_space_and_tells_are_the_runs(sampler):
    task = mixed_task(direction="maximize")
    problem = task.problem("mixed", Budget("trials", 12))
    opt = OptunaSampler(problem, seed=3, sampler=sampler)
    outcomes = drive(problem, task.oracle("mixed"), opt, 12)

    pool = problem.candidates()
    keys = {tuple(pool.iloc[i]) for i in range(len(pool))}
    ran = [tuple(o.config[p] for p in problem.params) for o in outcomes]
    assert set(ran) <= keys and len(set(ran)) == len(ran)  # candidates, never repeated
    assert not any(o.snapped for o in outcomes)

    dists = opt.distributions
    for trial in opt.study.trials:  # every proposal, snapped or not, lies in the space
        for name, value in trial.params.items():
            assert dists[name]._contains(dists[name].to_internal_repr(value))
    complete = [t for t in opt.study.trials if t.state == TrialState.COMPLETE]
    failed = [t for t in opt.study.trials if t.state == TrialState.FAIL]
    assert [t.params for t in complete] == [to_params(dists, o.config) for o in outcomes]
    assert [t.value for t in complete] == [-o.value for o in outcomes]  # maximise -> minimise -value
    assert failed and len(failed) + len(complete) == len(opt.study.trials)  # continuous lr: snapped


@pytest.mark.skipif("cmaes" not in SAMPLERS, reason="needs the cmaes package")
def test_cmaes_advances_generations_on_the_recorded_runs():
    task = mixed_task()
    problem = task.problem("mixed", Budget("trials", 20))
    opt = OptunaSampler(problem, seed=0, sampler="cmaes")
    drive(problem, task.oracle("mixed"), opt, 20)
    generations = {t.system_attrs.get("cma:generation") for t in opt.study.trials
                   if t.state == TrialState.COMPLETE}
    assert max((g for g in generations if g is not None), default=-1) >= 1  # a population told


@pytest.mark.parametrize("sampler", SAMPLERS)
def test_same_seed_same_trials(sampler):
    task = mixed_task()
    problem = task.problem("mixed", Budget("trials", 6))

    def run(seed):
        opt = OptunaSampler(problem, seed=seed, sampler=sampler)
        return [o.config for o in drive(problem, task.oracle("mixed"), opt, 6)]

    assert run(5) == run(5)
    assert run(5) != run(6)


def test_warm_start_asks_candidates_nearest_best_cheap_runs():
    task = load_task("data_mixture")
    problem = task.problem("pile_cc", Budget("trials", 10))
    spec = methods()["optuna-tpe-warm"]
    opt = spec.make(problem, 0)
    assert opt.n_startup == 3
    asked = [opt.ask() for _ in range(3)]  # enqueued trials: no tell needed to see them

    # Independently: best 60M runs, each to its nearest not-yet-chosen 1B candidate.
    prior = problem.prior[problem.prior.fidelity == "60M"].sort_values("value", kind="stable")
    pool = problem.candidates()
    x_pool = encode(problem.space, pool)
    chosen = []
    for i in range(len(prior)):
        d = np.linalg.norm(x_pool - encode(problem.space, prior.iloc[[i]]), axis=1)
        d[chosen] = np.inf
        chosen.append(int(np.argmin(d)))
        if len(chosen) == 3:
            break
    expected = [pool.iloc[i].to_dict() for i in chosen]
    assert [q.config for q in asked] == expected


@pytest.mark.parametrize("sampler", STARTUP)
def test_startup_is_a_third_of_the_budget_and_enqueued(sampler):
    task = mixed_task()
    for trials, size in [(1, 1), (2, 1), (3, 1), (5, 2), (10, 3), (30, 10)]:
        opt = OptunaSampler(task.problem("mixed", Budget("trials", trials)), 0, sampler=sampler)
        assert opt.n_startup == size
    problem = task.problem("mixed", Budget("trials", 6))
    opt = OptunaSampler(problem, 0, sampler=sampler)
    outcomes = drive(problem, task.oracle("mixed"), opt, 6)
    fixed = ["fixed_params" in t.system_attrs for t in opt.study.get_trials(deepcopy=False)]
    assert fixed[:2] == [True, True] and not any(fixed[2:])  # then the sampler's own proposals
    assert not any(o.snapped for o in outcomes[:2])
    assert [o.config for o in outcomes[:2]] == [o.config for o in drive(
        problem, task.oracle("mixed"), RandomSearch(problem, 0), 2)]  # the draws random search makes
    assert OptunaSampler(problem, 0, sampler="qmc").n_startup == 0  # the Sobol sequence is the method


@pytest.mark.parametrize("sampler", STARTUP)
def test_startup_draws_are_uniform_over_the_pool(sampler):
    """Snapped continuous draws put ~90% of first trials on the most isolated quarter of the pool."""
    task = load_task("data_mixture")
    problem = task.problem("pile_cc", Budget("trials", 10))
    pool, params = problem.candidates(), problem.params
    keys = {config_key(config_at(pool, i), params) for i in range(len(pool))}
    isolated = isolated_quarter(problem.space, pool)
    firsts = [config_key(OptunaSampler(problem, seed, sampler=sampler).ask().config, params)
              for seed in range(100)]
    assert set(firsts) <= keys and len(set(firsts)) > 40
    assert np.mean([k in isolated for k in firsts]) < 0.45  # uniform: 0.25


def test_samplers_differ_once_the_startup_is_over():
    """TPE, GP and CMA-ES share their startup (random search's draws), then go their own ways."""
    task = load_task("data_mixture")
    oracle = task.oracle("pile_cc")
    runs = {}
    for trials in (1, 5):
        problem = task.problem("pile_cc", Budget("trials", trials))
        opts = {s: OptunaSampler(problem, 0, sampler=s) for s in STARTUP}
        opts["random"] = RandomSearch(problem, 0)
        runs[trials] = {n: [o.config for o in drive(problem, oracle, opt, trials)] for n, opt in opts.items()}
    assert all(r == runs[1]["random"] for r in runs[1].values())  # T=1: one uniform draw for all
    five = [tuple(map(str, r)) for r in runs[5].values()]
    assert len(set(five)) == len(five)
    assert all(r[:2] == runs[5]["random"][:2] for r in runs[5].values())


def test_gp_sampler_runs_on_one_thread(monkeypatch):
    """The GP sampler runs with the adapter's `threads` (1) torch and BLAS threads, whatever their
    defaults."""
    import torch
    from threadpoolctl import threadpool_info

    seen = []
    original = optuna.samplers.GPSampler.sample_relative

    def spy(self, *args, **kwargs):
        blas = {d["num_threads"] for d in threadpool_info() if d["user_api"] == "blas"}
        seen.append((torch.get_num_threads(), *sorted(blas)))
        return original(self, *args, **kwargs)

    monkeypatch.setattr(optuna.samplers.GPSampler, "sample_relative", spy)
    task = mixed_task()
    problem = task.problem("mixed", Budget("trials", 4))
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        drive(problem, task.oracle("mixed"), OptunaSampler(problem, 0, sampler="gp"), 4)
        assert seen and set(seen) == {(1, 1)} and torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


def test_cmaes_without_its_package_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(adapter.importlib.util, "find_spec", lambda name: None)
    task = mixed_task()
    with pytest.raises(BenchError, match="pip install cmaes"):
        OptunaSampler(task.problem("mixed", Budget("trials", 3)), 0, sampler="cmaes")


def test_unknown_sampler_is_a_clear_error():
    with pytest.raises(BenchError, match="unknown Optuna sampler"):
        OptunaSampler(mixed_task().problem("mixed", Budget("trials", 3)), 0, sampler="nope")
