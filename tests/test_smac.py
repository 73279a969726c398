"""SMAC3 adapter: configurations round-trip, tells are the runs, Hyperband over fidelities, no files,
initial designs drawn uniformly from the pool, budgets respected."""

import itertools
import os
import subprocess
import sys
import tempfile

import numpy as np
import pandas as pd
import pytest
from smac.runhistory.enumerations import StatusType

from baselines.random_search import RandomSearch
from baselines.smac_facades import SmacFacade, rung_fidelities, to_configuration
from bench.errors import BenchError
from bench.gym.problem import Budget
from bench.gym.registry import load_task
from bench.gym.space import config_at
from bench.gym.spec import TaskSpec, build_task
from bench.optimizer import NoRecommendation
from tests.helpers import config_key, drive, drive_budget, isolated_quarter, mixed_task


def test_configurations_round_trip():
    task = mixed_task()
    problem = task.problem("mixed", Budget("trials", 3))
    space = problem.space
    assert space["lr"].log and space["batch"].log and not space["layers"].log
    for fid in [f.name for f in problem.fidelities]:
        pool = problem.candidates(fid)
        for i in range(len(pool)):
            config = config_at(pool, i)
            back = dict(to_configuration(space, config))
            assert back.keys() == config.keys()
            for name, value in config.items():  # floats up to the 13-decimal rounding of bounds
                assert back[name] == (pytest.approx(value, rel=1e-12) if isinstance(value, float)
                                      else value)
    sampled = space.sample_configuration(5)  # SMAC's own configurations hash the same
    for conf in sampled:
        assert hash(to_configuration(space, dict(conf))) == hash(conf)


@pytest.mark.parametrize("facade", ["hpo", pytest.param("bb", marks=pytest.mark.slow), "mf"])
def test_proposals_in_space_and_tells_are_the_runs(facade):
    task = mixed_task(direction="maximize")
    problem = task.problem("mixed", Budget("cost", 8), prior="none")
    opt = SmacFacade(problem, seed=1, facade=facade)
    outcomes = drive(problem, task.oracle("mixed"), opt, 8)

    for o in outcomes:  # candidates at the fidelity asked, never repeated there
        pool = problem.candidates(o.fidelity)
        assert (pool == pd.Series(o.config)).all(axis=1).any() and not o.snapped
    ran = [(o.fidelity, tuple(o.config.values())) for o in outcomes]
    assert len(set(ran)) == len(ran)
    assert {o.fidelity for o in outcomes} == ({problem.target} if facade != "mf"
                                              else {f.name for f in problem.fidelities})

    rh = opt.smac.runhistory
    for conf in rh.get_configs():  # every proposal, snapped or not, is a valid configuration
        conf.check_valid_configuration()
    told = [(rh.get_config(k.config_id), v.cost) for k, v in rh.items() if v.status == StatusType.SUCCESS]
    assert told == [(to_configuration(opt.space, o.config), -o.value) for o in outcomes]


@pytest.mark.parametrize("facade", ["hpo", "mf"])
def test_same_seed_same_trials(facade):
    task = mixed_task()
    problem = task.problem("mixed", Budget("cost", 4), prior="none")

    def run(seed):
        opt = SmacFacade(problem, seed=seed, facade=facade)
        return [(o.fidelity, o.config) for o in drive(problem, task.oracle("mixed"), opt, 4)]

    assert run(4) == run(4)
    assert run(4) != run(5)


@pytest.mark.slow
def test_deterministic_across_processes_with_the_runners_hash_seed():
    script = (
        "from bench.gym.registry import load_task; from bench.gym.problem import Budget; "
        "from bench.methods import methods; t = load_task('data_mixture'); "
        "p = t.problem('pile_cc', Budget('trials', 4)); o = methods()['smac-hpo'].make(p, 0); "
        "orc = t.oracle('pile_cc'); out = []\n"
        "for _ in range(4):\n"
        "    q = o.ask(); r = orc.evaluate(q); o.tell(q, r); out.append(r.config)\n"
        "print(out)"
    )
    env = {**os.environ, "PYTHONHASHSEED": "0"}  # what bench.runner gives its workers
    runs = [subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True,
                           check=True).stdout for _ in range(2)]
    assert runs[0] == runs[1] and runs[0].startswith("[{")


def test_no_output_directory_is_left(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    task = mixed_task()
    problem = task.problem("mixed", Budget("trials", 3))
    for facade in ("hpo", "mf"):
        drive(problem, task.oracle("mixed"), SmacFacade(problem, 0, facade), 3)
    assert list(tmp_path.iterdir()) == [scratch] and list(scratch.iterdir()) == []


def test_mf_follows_hyperband_and_promotes_the_runs(monkeypatch):
    """Cost budget, no prior: SMAC chooses fidelities; bracket 0 is 9 x 1M -> 3 x 60M -> 1 x 1B."""
    task = load_task("data_mixture")
    problem = task.problem("pile_cc", Budget("cost", 3), prior="none")
    opt = SmacFacade(problem, seed=0, facade="mf")
    asked, smac_ask = [], opt.smac.ask
    monkeypatch.setattr(opt.smac, "ask", lambda: asked.append(smac_ask()) or asked[-1])
    outcomes = drive(problem, task.oracle("pile_cc"), opt, 13)
    assert [o.fidelity for o in outcomes] == ["1M"] * 9 + ["60M"] * 3 + ["1B"]
    assert [i.budget for i in asked] == [1.0] * 9 + [3.0] * 3 + [9.0]

    # Successive halving promotes the three best configurations that were run at 1M.
    best = sorted(outcomes[:9], key=lambda o: o.value)[:3]
    assert {i.config for i in asked[9:12]} == {to_configuration(opt.space, o.config) for o in best}


def test_mf_answers_cheap_rungs_from_the_prior():
    task = load_task("data_mixture")
    problem = task.problem("pile_cc", Budget("trials", 3))
    opt = SmacFacade(problem, seed=0, facade="mf")
    outcomes = drive(problem, task.oracle("pile_cc"), opt, 3)
    assert [o.fidelity for o in outcomes] == ["1B"] * 3  # every query is a target run

    prior = problem.prior
    rh = opt.smac.runhistory
    cheap = [(k, v) for k, v in rh.items() if v.status == StatusType.SUCCESS and k.budget < 9]
    assert len(cheap) >= 9
    for k, v in cheap:  # told cheap results are prior runs, with their values
        fid = "1M" if k.budget == 1 else "60M"
        conf = dict(rh.get_config(k.config_id))
        rows = prior[prior.fidelity == fid]
        match = rows[np.isclose(rows[problem.params].to_numpy(float),
                                [conf[p] for p in problem.params]).all(axis=1)]
        assert len(match) and v.cost == pytest.approx(match["value"].iloc[0])


def test_mf_does_not_pay_for_cheap_runs_once_the_prior_is_used_up():
    task = mixed_task(fidelities=((1e6, 1e9, 1.0, 3), (1e8, 1e10, 0.0, 30)))
    problem = task.problem("mixed", Budget("trials", 6))
    opt = SmacFacade(problem, seed=0, facade="mf")
    outcomes = drive(problem, task.oracle("mixed"), opt, 6)
    assert [o.fidelity for o in outcomes] == [problem.target] * 6
    cheap = [k for k, v in opt.smac.runhistory.items() if k.budget == 1.0 and v.status == StatusType.SUCCESS]
    assert len(cheap) > 3  # more cheap answers than prior runs: the later ones are lookups


def test_mf_respects_the_cost_budget_and_recommends_the_best_cheap_run():
    """One target run's worth: after bracket 0's cheap runs the 1B promotion no longer fits, so it
    is never queried (it stays RUNNING in SMAC) and the adapter goes on with cheap brackets."""
    task = load_task("data_mixture")
    problem = task.problem("pile_cc", Budget("cost", 1), prior="none")
    opt = SmacFacade(problem, seed=0, facade="mf")
    outcomes, refused = drive_budget(task.oracle("pile_cc"), opt, 25)
    assert refused == 0 and len(outcomes) == 25  # the old adapter's 1B asks: refused, then 3 in a row
    assert {o.fidelity for o in outcomes} == {"1M", "60M"}
    rh = opt.smac.runhistory
    pending = [k for k, v in rh.items() if v.status == StatusType.RUNNING and k.budget == 9.0]
    assert pending and not any(k.budget == 9.0 and v.status != StatusType.RUNNING for k, v in rh.items())
    best_60m = min((o for o in outcomes if o.fidelity == "60M"), key=lambda o: o.value)
    assert opt.recommend() == best_60m.config  # the harness snaps it to the target pool


def test_mf_spends_most_of_a_cost_budget():
    """Rungs cost 1, 2, 60: bracket 0's target promotion and bracket 2 (three target runs) do not
    fit after the cheap runs; the adapter keeps to what fits and spends the budget."""
    task = mixed_task(fidelities=((1e8, 1e9, 1.0, 30), (2e8, 1e9, 0.5, 30), (6e9, 1e9, 0.0, 30)))
    problem = task.problem("mixed", Budget("cost", 1), prior="none")
    assert [problem.fidelity(f).cost / problem.fidelities[0].cost for f in rung_fidelities(problem)] == \
        pytest.approx([1, 2, 60])
    opt = SmacFacade(problem, seed=0, facade="mf")
    outcomes, refused = drive_budget(task.oracle("mixed"), opt, 200)
    assert refused == 0 and not opt.affordable()
    assert opt.spent() >= 0.95 * problem.budget_gpu_hours()  # the old one: 42%, then 3 refusals


def test_recommend_with_nothing_seen_is_no_recommendation():
    task = load_task("data_mixture")
    for facade, budget in (("hpo", Budget("trials", 3)), ("mf", Budget("cost", 1))):
        opt = SmacFacade(task.problem("pile_cc", budget, prior="none"), 0, facade)
        with pytest.raises(NoRecommendation):
            opt.recommend()


def _first_queries(facade, problem, seeds):
    return [SmacFacade(problem, seed, facade).ask() for seed in seeds]


@pytest.mark.parametrize("facade", ["hpo", pytest.param("bb", marks=pytest.mark.slow), "mf"])
def test_initial_design_is_uniform_over_the_pool(facade):
    """Snapped Sobol or random points put ~90% of first trials on the most isolated quarter."""
    task = load_task("data_mixture")
    problem = task.problem("pile_cc", Budget("cost", 5), prior="none")
    fidelity = "1M" if facade == "mf" else "1B"
    pool, params = problem.candidates(fidelity), problem.params
    keys = {config_key(config_at(pool, i), params) for i in range(len(pool))}
    isolated = isolated_quarter(problem.space, pool)
    queries = _first_queries(facade, problem, range(100))
    firsts = [config_key(q.config, params) for q in queries]
    assert {q.fidelity for q in queries} == {fidelity} and set(firsts) <= keys and len(set(firsts)) > 40
    assert np.mean([k in isolated for k in firsts]) < 0.45  # uniform: 0.25


@pytest.mark.parametrize("trials, size", [(1, 1), (3, 1), (5, 2), (10, 3)])
def test_initial_design_is_a_third_of_the_budget(trials, size):
    task = load_task("data_mixture")
    problem = task.problem("pile_cc", Budget("trials", trials))
    opt = SmacFacade(problem, 0, "hpo")
    outcomes = drive(problem, task.oracle("pile_cc"), opt, min(trials, size + 1))
    origins = [c.origin for c in opt.smac.runhistory.get_configs()]
    assert origins[:size] == ["Initial design"] * size and "Initial design" not in origins[size:]
    random = drive(problem, task.oracle("pile_cc"), RandomSearch(problem, 0), size)
    assert [o.config for o in outcomes[:size]] == [o.config for o in random]  # random search's draws


def test_mf_initial_design_is_the_first_bracket():
    task = load_task("data_mixture")
    problem = task.problem("pile_cc", Budget("cost", 5), prior="none")
    opt = SmacFacade(problem, 0, "mf")
    outcomes = drive(problem, task.oracle("pile_cc"), opt, 18)
    assert [o.fidelity for o in outcomes[:9]] == ["1M"] * 9 and not any(o.snapped for o in outcomes[:9])
    origins = [c.origin for c in opt.smac.runhistory.get_configs()]
    assert origins[:9] == ["Initial design"] * 9 and "Initial design" not in origins[9:]


@pytest.mark.slow
def test_hpo_and_bb_differ_after_the_initial_design():
    """With the pool maximiser `--method all` runs (the library's costs seconds per ask here)."""
    task = load_task("data_mixture")
    problem = task.problem("pile_cc", Budget("trials", 5))  # initial design: 2 trials
    oracle = task.oracle("pile_cc")
    runs = {f: [o.config for o in drive(problem, oracle, SmacFacade(problem, 0, f, "pool"), 5)]
            for f in ("hpo", "bb")}
    assert runs["hpo"][:2] == runs["bb"][:2] and runs["hpo"][2:] != runs["bb"][2:]


def test_rungs_are_spread_in_log_cost():
    fids = [(1e6 * 4**k, 1e9, 0.0, 30) for k in range(7)]
    problem = mixed_task(fidelities=fids).problem("mixed", Budget("trials", 3))
    rungs = rung_fidelities(problem)
    names = [f.name for f in problem.fidelities]
    assert len(rungs) == 4 and rungs[0] == names[0] and rungs[-1] == names[-1]
    assert [names.index(r) for r in rungs] == [0, 2, 4, 6]
    two = mixed_task().problem("mixed", Budget("trials", 3))
    assert rung_fidelities(two) == [f.name for f in two.fidelities]


def test_rungs_fit_the_cheapest_pool():
    """Hyperband's first bracket starts eta**(rungs - 1) configurations at the cheapest fidelity."""
    fids = [(1e6 * 4**k, 1e9, 0.0, 8 if k == 0 else 30) for k in range(7)]  # 8 < 3**2: 2 rungs
    problem = mixed_task(fidelities=fids).problem("mixed", Budget("trials", 3))
    assert rung_fidelities(problem) == [problem.fidelities[0].name, problem.target]
    fids[0] = (1e6, 1e9, 0.0, 9)  # 9 = 3**2: 3 rungs
    assert len(rung_fidelities(mixed_task(fidelities=fids).problem("mixed", Budget("trials", 3)))) == 3


@pytest.mark.parametrize("facade", ["hpo", "mf"])
def test_small_discrete_space_still_spends_the_budget(facade):
    rows = [{"opt": o, "sched": s, "params": p, "tokens": 1e9, "loss": 3.0 + (o == "sgd") + (p < 1e7)}
            for p in (1e6, 1e8) for o, s in itertools.product(["adam", "sgd"], ["cos", "lin"])]
    spec = TaskSpec(name="cat", objective={"column": "loss", "direction": "minimize"},
                    config=["opt", "sched"], fidelity=["params", "tokens"])
    task = build_task(spec, pd.DataFrame(rows))
    problem = task.problem("cat", Budget("trials", 6))
    outcomes = drive(problem, task.oracle("cat"), SmacFacade(problem, 0, facade), 6)
    first = {tuple(o.config.values()) for o in outcomes[:4]}
    assert len(first) == 4 and all(o.fidelity == problem.target for o in outcomes)


def test_unknown_facade_is_a_clear_error():
    with pytest.raises(BenchError, match="unknown SMAC facade"):
        SmacFacade(mixed_task().problem("mixed", Budget("trials", 3)), 0, facade="nope")


@pytest.mark.parametrize("facade", ["hpo", "mf"])
def test_pool_acquisition_asks_untried_table_configurations(facade, monkeypatch):
    """`acquisition: pool`: what the acquisition maximiser proposes is a rung's untried candidate
    (prior run or pool), never a point of the continuous space; SMAC's random design still samples."""
    task = load_task("sft_lora")
    experiment = task.split("test")[0]
    problem = task.problem(experiment, Budget("trials", 10))
    opt = SmacFacade(problem, 0, facade, acquisition="pool")
    asked, smac_ask = [], opt.smac.ask
    monkeypatch.setattr(opt.smac, "ask", lambda: asked.append(smac_ask()) or asked[-1])
    drive(problem, task.oracle(experiment), opt, 10)

    rungs = opt.rungs
    prior = problem.prior[problem.prior.fidelity.isin(rungs)]
    tables = [prior] + [problem.candidates(f) for f in rungs if f not in set(prior.fidelity)]
    table = {to_configuration(opt.space, config_at(t, i, problem.params))
             for t in tables for i in range(len(t))}
    proposed = [(i.config, i.budget) for i in asked if i.config.origin != "Initial design"
                and not (i.config.origin or "").startswith("Random Search")]
    assert proposed and all(c in table for c, _ in proposed)
    assert len(set(proposed)) == len(proposed)  # never twice at one rung (promotions go up)
    library = SmacFacade(problem, 0, facade)  # the library's maximiser searches the space
    lib_asked, lib_ask = [], library.smac.ask
    monkeypatch.setattr(library.smac, "ask", lambda: lib_asked.append(lib_ask()) or lib_asked[-1])
    drive(problem, task.oracle(experiment), library, 10)
    assert any(i.config not in table for i in lib_asked)


def test_pool_acquisition_survives_an_exhausted_pool():
    task = mixed_task(fidelities=((1e6, 1e9, 1.0, 30), (1e8, 1e10, 0.0, 6)))
    problem = task.problem("mixed", Budget("trials", 6))
    outcomes = drive(problem, task.oracle("mixed"), SmacFacade(problem, 0, "hpo", acquisition="pool"), 6)
    assert len({tuple(o.config.values()) for o in outcomes}) == 6  # every target candidate once


def test_unknown_acquisition_is_one_clear_error():
    problem = mixed_task().problem("mixed", Budget("trials", 3))
    with pytest.raises(BenchError, match="unknown SMAC acquisition 'grid'"):
        SmacFacade(problem, 0, "hpo", acquisition="grid")


def test_forest_is_the_facades_but_for_threads_and_the_leaf_bound():
    from smac import HyperparameterOptimizationFacade, MultiFidelityFacade, Scenario

    from baselines.smac_facades import MAX_LEAVES, forest

    space = mixed_task().problem("mixed", Budget("trials", 3)).space
    with tempfile.TemporaryDirectory() as out:
        scenario = Scenario(space, output_directory=out, deterministic=True, seed=3)
        ours = forest(scenario).meta
        for cls in (HyperparameterOptimizationFacade, MultiFidelityFacade):
            theirs = cls.get_model(scenario).meta
            assert {k: v for k, v in theirs.items() if k not in ("max_leaf_nodes", "n_jobs")} == \
                {k: v for k, v in ours.items() if k not in ("max_leaf_nodes", "n_jobs")}
    assert ours["n_jobs"] == 1 and ours["max_leaf_nodes"] == MAX_LEAVES
