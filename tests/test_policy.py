"""The AutoLLMResearch policy (agents/policy): each training stage on a synthetic family, RL's gain
over distillation on held-out members, train-only data, the episode contract, the cross-family
policy on a user's spec."""

import contextlib
import dataclasses
import json
import shutil

import numpy as np
import pytest
import torch
from threadpoolctl import threadpool_limits

from agents.policy import curation, distill, rl, teachers
from agents.policy.episodes import TrainingEpisode, draw
from agents.policy.features import CANDIDATE_COLUMNS, CROSS_FIDELITY, FIDELITY_WIDTH, EpisodeView
from agents.policy.model import PolicyNet
from agents.policy.policy import AutoLLMResearch, choose_rules, situation
from baselines.extrapolate import Extrapolate
from bench.episode import run_episode
from bench.gym.problem import Budget
from bench.gym.registry import load_task
from bench.gym.task import Prior
from bench.methods import methods
from bench.numerics import torch_threads
from bench.store import EpisodeKey, Store
from bench.training import TrainingData, train
from tests.helpers import drift_family, noisy_test_experiments

TINY = {
    "d_model": 16,
    "heads": 2,
    "layers": 1,
    "ff": 32,
    "variants": 2,
    "episodes": 8,
    "bc_epochs": 2,
    "rl_steps": 4,
    "group": 4,
    "episodes_per_step": 2,
    "eval_every": 2,
    "validation_seeds": 2,
}


def _spec(name="autollmresearch", **params):
    spec = methods()[name]
    return spec.model_copy(update={"params": {**spec.params, **TINY, **params}})


@contextlib.contextmanager
def one_thread():
    """One torch and one BLAS thread, as training has (the numbers do not depend on the worker's
    earlier tests or its core count)."""
    with torch_threads(1), threadpool_limits(1):
        yield


@pytest.fixture(scope="module")
def family():
    with one_thread():
        task = drift_family()
        data = TrainingData.of(task, 0)
        curated = curation.curate(data, 0, variants=2)
        episodes = draw(curated, np.random.default_rng(0), 24)
        return task, data, curated, episodes, teachers.simulate(episodes, 0, keep=2, data=curated)


def test_curation_shifts_the_space_and_holds_fit_experiments_only(family):
    task, data, curated, _, _ = family
    names, base = curated.fit, {n: n.split("~")[0].split("@")[0] for n in curated.fit}
    # each fit experiment and its pseudo-target (its three rungs cut at the middle one), two variants each
    assert len(names) == 2 * 2 * len(data.fit) and not set(task.split("test")) & set(base.values())
    assert set(base.values()) == set(data.fit) and curated.validation == []
    train_rows = task.table[task.table.experiment.isin(data.fit)]
    shifted = apart = 0
    for name in names:
        rows = curated.task.table[curated.task.table.experiment == name]
        ladder = [f.name for f in curated.task.experiment(name).fidelities]
        source = train_rows[(train_rows.experiment == base[name]) & train_rows.fidelity.isin(ladder)]
        assert set(rows.value) <= set(source.value)  # copies of the fit experiment's own rows
        target = curated.task.experiment(name).target.name
        x = task.encoder(rows[["lr", "warmup"]])
        at = (rows.fidelity == target).to_numpy()
        if "~" in name and len(rows) < len(source):
            shifted += 1
            assert at.sum() >= min(curation.MIN_TARGET, (source.fidelity == target).sum())
            # the target pool and the cheap runs span different boxes (drawn independently: rarely alike)
            apart += not np.allclose([x[at].min(0), x[at].max(0)], [x[~at].min(0), x[~at].max(0)], atol=0.05)
    assert shifted >= len(data.fit) // 2 and apart >= 0.8 * shifted


def test_simulation_keeps_each_episodes_best_teacher_trajectories(family):
    _, _, curated, episodes, kept = family
    assert len(kept) == 2 * len(episodes)
    ep = episodes[0]
    everything = teachers.simulate([ep], 0, keep=99, data=curated)
    assert len(everything) == len(teachers.TEACHERS)  # one trajectory per teacher configuration
    expected = [t.expected for t in everything]  # ranked by expected score on sibling episodes
    assert expected == sorted(expected)
    assert [t.teacher for t in kept[:2]] == [t.teacher for t in everything[:2]]
    for t in kept[:2]:
        assert t.episode == ep.key and len(t.steps) == ep.horizon
        assert all(s.value == ep.values[s.candidate] for s in t.steps)
        assert "params=10M" in t.steps[0].rationale and "Predicted at the target" in t.steps[0].rationale
    best = ep.problem.objective.best(ep.values[[s.candidate for s in kept[0].steps]])
    assert ep.scorer.pregret(best) == pytest.approx(kept[0].pregret)  # the Scorer's pregret


def test_distillation_imitates_the_teachers(family):
    _, _, _, episodes, kept = family
    torch.manual_seed(0)
    net = PolicyNet(16, 2, 1, 32)
    losses = distill.distill(net, {e.key: e for e in episodes}, kept, 6, 3e-3, 0.5, np.random.default_rng(0))
    assert losses[-1] < 0.85 * losses[0]
    by_key = {e.key: e for e in episodes}
    agree = chance = 0.0
    with torch.no_grad():
        for t in kept:
            ep, ids = by_key[t.episode], [s.candidate for s in t.steps]
            logit = net(*ep.states([ids[:i] for i in range(len(ids))]))[0]
            for i, c in enumerate(ids):
                untried = np.setdiff1d(np.arange(len(ep.values)), ids[:i])
                agree += float(untried[int(torch.argmax(logit[i, untried]))] == c)
                chance += 1 / len(untried)
    assert agree > 3 * chance


def test_rl_improves_the_distilled_policy_on_held_out_members(family):
    with one_thread():
        _rl_improves(family)


def _rl_improves(family):
    task, data, _, episodes, kept = family
    torch.manual_seed(0)
    net = PolicyNet(16, 2, 1, 32)
    distill.distill(net, {e.key: e for e in episodes}, kept, 1, 2e-3, 0.5, np.random.default_rng(0))
    held_out = TrainingData(task, task.split("test"), task.split("test"), data.priors)
    probe = [
        TrainingEpisode.of(held_out, exp, prior, b, 500 + s)
        for exp in task.split("test")
        for prior in data.priors
        for b in (1, 3, 5)
        for s in range(4)
    ]

    def reward() -> float:
        with torch.no_grad():
            regrets = [rl.rollout(net, ep, 1, None)[3][0] for ep in probe]
        return float(np.mean([-r[-1] - 0.25 * r.mean() for r in regrets]))

    distilled = reward()
    rl.grpo(
        net,
        episodes,
        [],
        60,
        6,
        4,
        4e-3,
        0.05,
        0.25,
        0.5,
        10,
        np.random.default_rng(1),
        torch.Generator().manual_seed(0),
    )
    # rewards are minus pregrets (bounded; the distilled policy is already near 0.08): RL must cut
    # the held-out pregret reward by at least 5%
    assert reward() > 0.95 * distilled


def test_training_never_reads_test_experiments_and_is_deterministic(cache, monkeypatch):
    task = drift_family()
    first, _ = train(_spec(), task, force=True)
    shutil.rmtree(cache / "policy")  # every stage again, none from the cache
    noisy, _ = train(_spec(), noisy_test_experiments(task), force=True)
    assert first.meta["digest"] == noisy.meta["digest"]
    report = first.state["report"]
    assert set(report["seconds"]) == {"curation", "simulation", "distillation", "rl"}
    members = report["members"]
    assert len(members) == 3 and all(m["validation_rl"] is not None for m in members)
    # inner folds: every train experiment is held out by exactly one member, no test one by any
    held = [e for m in members for e in m["validation"]]
    assert sorted(held) == sorted(task.split("train"))
    by_task = report["validation_by_task"]
    assert first.meta["validation_pregret"] == pytest.approx(np.mean(list(by_task.values())))
    trajectories = list((cache / "policy").glob("trajectories-*.json"))
    assert trajectories and all(
        "m9" not in p.read_text() and "m11" not in p.read_text() for p in trajectories
    )

    # retrained, every stage comes from the cache (RL does not run) and the checkpoint is the same
    stages = sorted(p.name.split("-")[0] for p in (cache / "policy").iterdir())
    assert stages == ["distilled"] * 3 + ["rl"] * 3 + ["trajectories"]

    def no_rl(*args, **kwargs):
        raise AssertionError("RL ran again")

    monkeypatch.setattr(rl, "grpo", no_rl)
    again, _ = train(_spec(), task, force=True)
    assert again.meta["digest"] == first.meta["digest"] and again.state["report"]["members"] == members


def test_episode_logs_a_rationale_and_asks_only_untried_candidates(cache, tmp_path):
    task = drift_family()
    store = Store(tmp_path / "out")
    key = EpisodeKey("t", task.name, "autollmresearch", task.split("test")[0], "trials", 5, 0)
    summary = run_episode(key, task, _spec(), store, prior=Prior("cheaper"))
    assert summary.failed is None and summary.target_trials == 5
    trials = [json.loads(line) for line in store.trial_log(key).read_text().splitlines()]
    assert len({json.dumps(t["config"], sort_keys=True) for t in trials}) == 5
    info = trials[0]["info"]
    assert "extrapolates" in info["rationale"] and np.isfinite(info["predicted_value"])


def test_without_cross_fidelity_features_the_trend_is_hidden():
    task = drift_family()
    problem = task.problem(task.split("test")[0], Budget("trials", 3), "cheaper", seed=0)
    views = EpisodeView(problem), EpisodeView(problem, cross_fidelity=False)
    full, ablated = (v.state(np.zeros((0, problem.encoder.width)), np.zeros(0, int), np.zeros(0), 1.0, 3)[2]
                     for v in views)
    columns = [CANDIDATE_COLUMNS.index(c) for c in CROSS_FIDELITY]
    assert np.abs(full[:, columns]).sum() > 0 and not ablated[:, columns].any()
    tokens = [v.prior_tokens[:, :FIDELITY_WIDTH] for v in views]
    assert tokens[0].any() and not tokens[1].any()
    others = [i for i in range(full.shape[1]) if i not in columns]
    np.testing.assert_array_equal(full[:, others], ablated[:, others])


def test_extrapolated_optimum_tracks_the_landscape_shift():
    """On the drift family the optimum's location extrapolated over the cheap fidelities is
    nearer the target's true optimum than the most expensive cheap fidelity's best region."""
    task = drift_family(runs=60)
    nearer = []
    for exp in task.split("train") + task.split("test"):
        view = EpisodeView(task.problem(exp, Budget("trials", 1), "cheaper", seed=0))
        pool, values = task.arrays(exp, task.experiment(exp).target.name)
        best = pool.x[np.argsort(values)[:3]].mean(axis=0)
        top = view.summaries[-1]["location"]
        nearer.append(abs(view.optimum_location[0] - best[0]) < abs(top[0] - best[0]))
    assert np.mean(nearer) >= 0.75


def test_the_extrapolate_experts_pick_is_the_nearest_candidate_of_to_extrapolated():
    """`to_extrapolated` is the distance to the `extrapolate` baseline's predicted configuration:
    its nearest candidate is the one the baseline asks first."""
    task = drift_family()
    column = CANDIDATE_COLUMNS.index("to_extrapolated")
    for exp in task.split("train")[:4]:
        problem = task.problem(exp, Budget("trials", 1), "cheaper", seed=3)
        f = EpisodeView(problem).prior_features[:, column]
        first = problem.encoder.one(Extrapolate(problem, 3).ask().config)
        asked = int(np.argmin(((problem.arrays().x - first) ** 2).sum(axis=1)))
        assert f.min() < f.max() and int(np.argmin(f)) == asked


def test_cross_family_policy_trains_once_and_runs_on_a_user_spec(cache, tmp_path):
    spec = _spec("autollmresearch-xfamily", episodes=2, bc_epochs=1, rl_steps=1)
    user = load_task("examples/my_sweep/spec.yaml")
    trained, path = train(spec, user)
    assert path.parent.name == "builtin" and set(trained.state["report"]["tasks"]) >= {"data_mixture", "grpo"}
    assert train(spec, load_task("architecture"))[1] == path  # the same checkpoint serves every task
    key = EpisodeKey("t", user.name, spec.name, user.split("test")[0], "trials", 3, 0)
    summary = run_episode(key, user, spec, Store(tmp_path / "out"))
    assert summary.failed is None and summary.target_trials == 3
    assert isinstance(AutoLLMResearch, type)


def test_situation_says_what_the_prior_is_and_reads_no_outcome():
    """The last pick's rule is chosen per situation (`policy.situation`): the full ladder `cv`
    gives, a withheld rung, a sparse prior, both, none. Catches a label that depends on the
    outcomes (a leak: the same prior with its values sorted has the same situation)."""
    task = drift_family()
    exp, one = task.split("test")[0], Budget("trials", 1)
    cases = {Prior("cheaper"): "full", Prior("cheaper", gap=30): "gap",  # costs 1, 10; target 100
             Prior("cheaper", budget=0.5): "sparse", Prior("cheaper", gap=30, budget=0.2): "gap, sparse",
             Prior("none"): "none"}
    for prior, expected in cases.items():
        problem = task.problem(exp, one, prior, seed=4)
        assert situation(problem) == expected, prior
        ranked = problem.prior.sort_values("value").reset_index(drop=True)
        ranked["value"] = np.sort(ranked["value"].to_numpy())[::-1]
        assert situation(dataclasses.replace(problem, prior=ranked)) == expected


def test_each_situation_takes_the_best_rule_of_two_or_more_held_out_experiments_where_choosing_generalises():
    rules = ("logit", "expected", "extrapolated", "trend")

    def row(**scores):
        return {r: scores.get(r, 0.5) for r in rules}

    results = [("full", "a", row(extrapolated=0.0)), ("full", "b", row(extrapolated=0.1, logit=0.2)),
               ("gap", "a", row(trend=0.0)), ("gap", "a", row(trend=0.1)),  # one experiment only
               ("sparse", "c", row(logit=0.3, expected=0.3)), ("sparse", "d", row(logit=0.3, expected=0.3)),
               # trend is best on the mean, thanks to one experiment; chosen without it, it loses on it
               ("gap, sparse", "a", row(trend=0.0, logit=0.4)), ("gap, sparse", "b", row(logit=0.4)),
               ("gap, sparse", "c", row(logit=0.4))]
    chosen, report = choose_rules(results, rules)
    assert chosen == {"default": "logit", "by_situation": {"full": "extrapolated", "sparse": "logit",
                                                           "gap, sparse": "logit"}}
    assert report["gap"] == {"experiments": 1, "logit": 0.5, "expected": 0.5, "extrapolated": 0.5,
                             "trend": 0.05}
    assert report["full"]["nested"] == pytest.approx(0.05)  # each left out, chosen on the other: 0.0, 0.1
    assert report["gap, sparse"]["trend"] < report["gap, sparse"]["logit"]  # best in sample, yet
    assert report["gap, sparse"]["nested"] == pytest.approx((0.4 + 0.5 + 0.5) / 3)  # > the logit's 0.4
    assert report["sparse"]["nested"] is None  # the logit is best: nothing to guard
    assert choose_rules([], rules)[0] == {"default": "logit", "by_situation": {}}


def test_the_last_pick_follows_its_situations_rule(cache):
    """A checkpoint whose `full` situation picks `extrapolated`: at T=1 with the full prior the
    policy asks the `extrapolate` expert's configuration; with a gap (the default rule, the logit)
    what its network ranks first. Catches the rule read once for every prior, or not at all."""
    task = drift_family()
    checkpoint, _ = train(_spec(), task)
    checkpoint.state["last_pick"] = {"default": "logit", "by_situation": {"full": "extrapolated"}}
    column = CANDIDATE_COLUMNS.index("to_extrapolated")
    for exp in task.split("test"):
        full = task.problem(exp, Budget("trials", 1), Prior("cheaper"), seed=1)
        asked = AutoLLMResearch(full, 1, checkpoint=checkpoint).ask().candidate
        assert asked == int(np.argmin(EpisodeView(full).prior_features[:, column]))
        gap = task.problem(exp, Budget("trials", 1), Prior("cheaper", gap=30), seed=1)
        policy = AutoLLMResearch(gap, 1, checkpoint=checkpoint)
        assert policy.ask().candidate == int(np.argmax(policy.outputs()[0]))
