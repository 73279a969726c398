"""Optuna adapter: the space round-trips, proposals stay in it, tells are the runs, seeds repeat."""

import importlib.util

import numpy as np
import optuna
import pytest
from helpers import drive, mixed_task
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.trial import TrialState

import baselines.optuna_samplers as adapter
from baselines.optuna_samplers import OptunaSampler, to_distributions, to_params
from bench.errors import BenchError
from bench.gym.problem import Budget
from bench.gym.registry import load_task
from bench.gym.space import config_at, encode
from bench.methods import methods

SAMPLERS = ["tpe", "gp", "qmc"] + (["cmaes"] if importlib.util.find_spec("cmaes") else [])
PRESETS = ["optuna-tpe", "optuna-gp", "optuna-qmc", "optuna-tpe-warm"] + (
    ["optuna-cmaes"] if "cmaes" in SAMPLERS else [])


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
    problem = task.problem("mixed", Budget("trials", 12))

    def run(seed):
        opt = OptunaSampler(problem, seed=seed, sampler=sampler)
        return [o.config for o in drive(problem, task.oracle("mixed"), opt, 12)]

    assert run(5) == run(5)
    assert run(5) != run(6)


def test_warm_start_asks_candidates_nearest_best_cheap_runs():
    task = load_task("data_mixture")
    problem = task.problem("pile_cc", Budget("trials", 5))
    spec = methods()["optuna-tpe-warm"]
    opt = spec.make(problem, 0)
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


def test_cmaes_without_its_package_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(adapter.importlib.util, "find_spec", lambda name: None)
    task = mixed_task()
    with pytest.raises(BenchError, match="pip install cmaes"):
        OptunaSampler(task.problem("mixed", Budget("trials", 3)), 0, sampler="cmaes")


def test_unknown_sampler_is_a_clear_error():
    with pytest.raises(BenchError, match="unknown Optuna sampler"):
        OptunaSampler(mixed_task().problem("mixed", Budget("trials", 3)), 0, sampler="nope")
