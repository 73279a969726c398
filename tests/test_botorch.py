"""BoTorch baselines: the multi-fidelity GP uses the prior and lets the optimum move with fidelity,
proposals are target candidates, runs are deterministic, botorch-ei's initial design scales with the
budget, the knowledge gradient is right, cost-budget episodes ask only affordable queries."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch

from baselines.botorch_gp import BoTorchEI, BoTorchMF
from baselines.botorch_gp.acquisition import QUAD_NODES, kg_per_cost_batch, knowledge_gradient
from baselines.botorch_gp.models import FIT_MEMO, fidelity_positions, fit_subset
from baselines.botorch_gp.optimizers import initial_design_size
from bench.episode import run_episode
from bench.gym.problem import Budget, Fidelity
from bench.gym.space import encode
from bench.gym.spec import TaskSpec, build_task
from bench.methods import MethodSpec
from bench.numerics import normal_scores_by_level
from bench.optimizer import NoRecommendation
from bench.store import EpisodeKey, Store

SMALL = {"fit_points": 80, "maxiter": 50}  # keeps every fit well under a second


def synthetic_task(cheap_sign: float = 1.0, sizes=(60, 30, 24), seed: int = 0):
    """Two float parameters; loss g(x) = (x1 - .3)^2 + (x2 - .7)^2 at the target (1 + g),
    cheaper levels a scaled, shifted copy (`cheap_sign` -1 makes them misleading)."""
    rng = np.random.default_rng(seed)
    rows = []
    for (params, tokens, level_shift, scale), n in zip(
            [(1e6, 1e9, 3.0, 4.0), (1e7, 1e9, 2.0, 2.0), (1e8, 1e10, 1.0, 1.0)], sizes, strict=True):
        x = rng.uniform(0, 1, size=(n, 2))
        g = (x[:, 0] - 0.3) ** 2 + (x[:, 1] - 0.7) ** 2
        sign = 1.0 if params == 1e8 else cheap_sign
        rows += [{"x1": a, "x2": b, "params": params, "tokens": tokens,
                  "loss": level_shift + sign * scale * v} for (a, b), v in zip(x, g, strict=True)]
    spec = TaskSpec(name="synthetic", objective={"column": "loss", "direction": "minimize"},
                    config=["x1", "x2"], fidelity=["params", "tokens"])
    return build_task(spec, pd.DataFrame(rows))


def nregret_of(task, config: dict) -> float:
    """The target nregret of a configuration of the pool (the experiment's `Scorer`)."""
    pool = task.outcomes("synthetic", task.experiments["synthetic"].target.name)
    value = float(pool.loc[(pool.x1 == config["x1"]) & (pool.x2 == config["x2"]), "value"].iloc[0])
    return float(task.scorer("synthetic").nregret(value))


def run(task, method: str, budget: Budget, tmp_path, seed: int = 0, prior: str = "cheaper", **params):
    spec = MethodSpec(name=method, cls=f"baselines.botorch_gp:{method}", family="bo",
                      params={**params})
    key = EpisodeKey("test", task.name, method, "synthetic", budget.kind, budget.amount, seed)
    store = Store(tmp_path)
    summary = run_episode(key, task, spec, store, prior)
    trials = [json.loads(line) for line in (key.folder(tmp_path) / f"{key.stem()}.jsonl").open()]
    return summary, trials


def test_multi_fidelity_gp_follows_the_prior():
    """The first target proposal comes from the cheap runs: near the best when they agree with
    the target, near the worst when they are inverted. A method ignoring the prior could not do both."""
    picks = {}
    for sign in (1.0, -1.0):
        task = synthetic_task(cheap_sign=sign)
        problem = task.problem("synthetic", Budget("trials", 3))
        picks[sign] = nregret_of(task, BoTorchMF(problem, seed=0, **SMALL).ask().config)
    assert picks[1.0] < 0.2
    assert picks[-1.0] > 1.5


def drifting_optimum_task(seed: int = 0):
    """One parameter x; five levels evenly spaced on log-compute (s = 0, .25, .5, .75, 1) whose
    loss (x - x*(s))^2 has its optimum drifting smoothly, x* = 0.2 + 0.4 s: 0.2 ... 0.5 at the
    cheap levels, 0.6 at the target (41 grid candidates)."""
    rng = np.random.default_rng(seed)
    rows = []
    for k, params in enumerate([1e6, 1e7, 1e8, 1e9, 1e10]):
        x = np.linspace(0, 1, 41) if k == 4 else rng.uniform(0, 1, 40)
        loss = 3.0 - 0.3 * k + (x - (0.2 + 0.1 * k)) ** 2
        rows += [{"x": a, "params": params, "tokens": 1e9, "loss": v} for a, v in zip(x, loss, strict=True)]
    spec = TaskSpec(name="drift", objective={"column": "loss", "direction": "minimize"},
                    config=["x"], fidelity=["params", "tokens"])
    return build_task(spec, pd.DataFrame(rows))


@pytest.mark.parametrize("seed", [0, 1])
def test_optimum_moves_with_fidelity(seed):
    """The first target proposal (the posterior-mean argmax) follows the drift to the cheap level
    nearest the target (0.5) or beyond, towards 0.6. A model whose levels shared one shape (level
    correlation 1, i.e. the optimum tied across fidelities) would pick near the cheap levels'
    pooled optimum, about 0.35."""
    problem = drifting_optimum_task().problem("drift", Budget("trials", 3))
    x = BoTorchMF(problem, seed=seed, **SMALL).ask().config["x"]
    assert 0.45 <= x <= 0.7


def test_proposals_are_untried_target_candidates():
    task = synthetic_task()
    problem = task.problem("synthetic", Budget("trials", 4))
    oracle = task.oracle("synthetic")
    pool = problem.candidates()
    for cls, params in ((BoTorchEI, {}), (BoTorchMF, SMALL)):
        opt = cls(problem, seed=1, **params)
        asked = []
        for _ in range(4):
            query = opt.ask()
            assert query.fidelity == problem.target
            row = (pool.x1 == query.config["x1"]) & (pool.x2 == query.config["x2"])
            assert row.sum() == 1, f"{cls.__name__} asked a configuration outside the pool"
            assert (query.config["x1"], query.config["x2"]) not in asked
            asked.append((query.config["x1"], query.config["x2"]))
            opt.tell(query, oracle.evaluate(query))


@pytest.mark.parametrize("method,budget", [("BoTorchEI", Budget("trials", 4)),
                                           ("BoTorchMF", Budget("trials", 3)),
                                           ("BoTorchMF", Budget("cost", 1))])
def test_same_seed_same_trials(tmp_path, method, budget):
    task = synthetic_task()
    params = SMALL if method == "BoTorchMF" else {}
    prior = "none" if budget.kind == "cost" else "cheaper"
    runs = [run(task, method, budget, tmp_path / str(i), prior=prior, **params) for i in range(2)]
    (s1, t1), (s2, t2) = runs
    assert [(t["fidelity"], t["config"]) for t in t1] == [(t["fidelity"], t["config"]) for t in t2]
    assert s1.recommend == s2.recommend
    if method == "BoTorchEI" or budget.kind == "cost":  # seeded initial designs: the seed matters
        other = run(task, method, budget, tmp_path / "other", seed=5, prior=prior, **params)[1]
        assert [t["config"] for t in other] != [t["config"] for t in t1]


def test_memoised_fits_are_the_fits(tmp_path):
    """botorch-mf ignores a trial budget, so a T=3 episode repeats the two fits of the T=2 episode
    of its seed: it takes them from the memo (one new fit) and asks what it asks with an empty one."""
    task = synthetic_task()

    def asks(budget: int, folder: str) -> list[dict]:
        trials = run(task, "BoTorchMF", Budget("trials", budget), tmp_path / folder, **SMALL)[1]
        return [t["config"] for t in trials]

    FIT_MEMO.clear()
    fresh = asks(3, "fresh")
    FIT_MEMO.clear()
    short = asks(2, "short")
    fits = len(FIT_MEMO)
    assert fits == 2 and asks(3, "replayed") == fresh and len(FIT_MEMO) == fits + 1
    assert short == fresh[:2]


def test_botorch_ei_initial_design_scales_with_budget():
    assert [initial_design_size(t) for t in (1, 2, 3, 5, 6, 10, 50)] == [1, 1, 1, 1, 2, 2, 2]
    task = synthetic_task()
    problem = task.problem("synthetic", Budget("trials", 3))
    opt = BoTorchEI(problem, seed=0)
    assert opt.n_init == 1
    first = opt.ask()
    opt.tell(first, task.oracle("synthetic").evaluate(first))
    # A GP on one (standardised) point has a flat mean, so LogEI takes the most uncertain
    # candidate: the one farthest from the first (equal length-scales at their prior mode).
    pool = opt.untried()
    second = opt.ask().config
    x = encode(problem.space, pool)
    far = pool.iloc[int(np.argmax(np.linalg.norm(x - encode(problem.space, [first.config]), axis=1)))]
    assert (second["x1"], second["x2"]) == (far["x1"], far["x2"])


def test_cost_budget_episode_chooses_fidelities_and_recommends(tmp_path):
    task = synthetic_task()
    summary, trials = run(task, "BoTorchMF", Budget("cost", 2), tmp_path, prior="none", **SMALL)
    target_cost = task.experiments["synthetic"].target.cost
    assert summary.gpu_hours <= 2 * target_cost * (1 + 1e-9)
    assert summary.gpu_hours >= target_cost  # it stops only when a target run no longer fits
    assert summary.refused == 0  # it asks only affordable queries
    assert len({t["fidelity"] for t in trials}) >= 2  # cheap levels as well as the target
    spent = [t["gpu_hours"] for t in trials]
    assert spent == sorted(spent)
    assert summary.recommend is not None
    assert nregret_of(task, summary.recommend) < 0.5


def test_cost_budget_that_buys_almost_nothing_still_ends_with_a_pick(tmp_path):
    """Cheap runs at 60% of a target run: one cheap run, then nothing fits; a pick is still made."""
    rows = [{"x1": x, "x2": 0.5, "n": n, "hours": h, "loss": (x - 0.3) ** 2}
            for n, h in ((1, 6.0), (2, 10.0)) for x in np.linspace(0, 1, 9)]
    spec = TaskSpec(name="synthetic", objective={"column": "loss", "direction": "minimize"},
                    config=["x1", "x2"], fidelity=["n"], cost={"column": "hours"})
    task = build_task(spec, pd.DataFrame(rows))
    summary, trials = run(task, "BoTorchMF", Budget("cost", 1), tmp_path, prior="none", **SMALL)
    assert [t["fidelity"] for t in trials] == ["n=1"]
    assert summary.refused == 0
    assert summary.recommend == {"x1": trials[0]["config"]["x1"], "x2": 0.5}  # nearest the one run


def test_cost_recommendation_may_be_untried():
    """With cheap runs only, recommend() is the posterior-mean argmax over all target candidates."""
    task = synthetic_task()
    problem = task.problem("synthetic", Budget("cost", 1))
    opt = BoTorchMF(problem, seed=0, **SMALL)
    assert problem.prior.fidelity.nunique() == 2 and problem.prior.fidelity.ne(problem.target).all()
    rec = opt.recommend()
    assert not [o for _, o in opt.history]  # nothing run, yet a pick from the cheap runs
    assert nregret_of(task, rec) < 0.2


def test_cost_recommendation_without_data_is_no_recommendation():
    problem = synthetic_task().problem("synthetic", Budget("cost", 1), prior="none")
    with pytest.raises(NoRecommendation):
        BoTorchMF(problem, seed=0, **SMALL).recommend()


def test_knowledge_gradient_matches_monte_carlo():
    gen = torch.Generator().manual_seed(0)
    n_c, n_p = 6, 4
    a = torch.randn(n_c + n_p, n_c + n_p, generator=gen, dtype=torch.float64)
    cov = a @ a.T / (n_c + n_p)
    mean = torch.randn(n_c, generator=gen, dtype=torch.float64)
    noise = 0.1
    kg = knowledge_gradient(mean, cov[n_p:, :n_p], torch.diagonal(cov)[:n_p], noise)
    z = torch.randn(400_000, generator=gen, dtype=torch.float64)
    for p in range(n_p):
        b = cov[n_p:, p] / torch.sqrt(cov[p, p] + noise)
        mc = (mean[:, None] + b[:, None] * z).max(0).values.mean() - mean.max()
        assert float(kg[p]) == pytest.approx(float(mc), rel=0.02, abs=2e-3)
    assert len(QUAD_NODES) >= 32
    uncorrelated = knowledge_gradient(mean, torch.zeros(n_c, 1, dtype=torch.float64),
                                      torch.ones(1, dtype=torch.float64), noise)
    assert float(uncorrelated[0]) == pytest.approx(0.0, abs=1e-12)


def test_kg_batch_respects_costs_and_budget():
    # Two target candidates; pair 0 = cheap, informative; pair 1 = a target run.
    cov = torch.tensor([[1.0, 0.2, 0.9, 0.1], [0.2, 1.0, 0.2, 1.0],
                        [0.9, 0.2, 1.0, 0.1], [0.1, 1.0, 0.1, 1.0]], dtype=torch.float64)
    mean = torch.tensor([0.0, 0.0, 0.0, 0.1], dtype=torch.float64)
    costs = torch.tensor([1.0, 100.0], dtype=torch.float64)
    is_target = torch.tensor([False, True])
    args = dict(mean=mean, cov=cov, n_pairs=2, costs=costs, is_target=is_target, noise=0.01)
    assert kg_per_cost_batch(**args, budget=1000.0, batch_cost=50.0, max_batch=10) == [0]
    assert kg_per_cost_batch(**args, budget=0.5, batch_cost=50.0, max_batch=10) == []
    # Made free-ish, the target run wins and is a batch of its own.
    cheap_target = dict(args, costs=torch.tensor([1.0, 0.01], dtype=torch.float64))
    assert kg_per_cost_batch(**cheap_target, budget=1000.0, batch_cost=50.0, max_batch=10) == [1]


def test_fidelity_positions_on_log_compute():
    levels = [Fidelity("1M", {"params": 1e6, "tokens": 1e9}, 0.33),
              Fidelity("60M", {"params": 6e7, "tokens": 1e9}, 0.9),
              Fidelity("1B", {"params": 1e9, "tokens": 2.5e10}, 384.0)]
    pos = fidelity_positions(levels)
    assert pos[0] == 0 and pos[-1] == 1
    assert pos[1] == pytest.approx(np.log(60) / np.log(25_000))
    no_descriptors = [Fidelity(f.name, {}, f.cost) for f in levels]  # falls back to log-cost
    assert fidelity_positions(no_descriptors)[1] == pytest.approx(np.log(0.9 / 0.33) / np.log(384 / 0.33))


def test_normal_scores_by_level_and_fit_subset():
    levels = np.array([0, 0, 0, 0, 1, 1, 1, 2])
    y = np.array([1.0, 2.0, 3.0, 400.0, 10.0, 20.0, 30.0, 7.0])  # 400: a diverged run
    z = normal_scores_by_level(y, levels)
    assert z[:4] == pytest.approx([-1.1503, -0.3186, 0.3186, 1.1503], abs=1e-4)  # ranks, not sizes
    assert z[4:7] == pytest.approx(normal_scores_by_level(y[:3], levels[:3]))  # each level alone
    assert z[-1] == 0.0  # a lone target value is centred on itself
    rng = np.random.default_rng(0)
    sub = fit_subset(levels, 2, 4, rng)
    assert len(sub) == 4 and 7 in sub
    assert list(fit_subset(levels, 2, 4, np.random.default_rng(0))) == list(sub)
    assert list(fit_subset(levels, 2, 20, rng)) == list(range(8))
