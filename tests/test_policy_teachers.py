"""The AutoLLMResearch policy's second design, stages 1-2: the cautious teacher, the learned (NAP,
FSBO) teachers, trajectories kept by expected score rather than hindsight, and curation's
pseudo-targets and ladder-like priors."""

import dataclasses
import math

import numpy as np
import pandas as pd
import pytest

from agents.policy import curation, teachers
from agents.policy.episodes import TrainingEpisode
from agents.policy.policy import curated_task, simulated
from agents.policy.trajectories import Trajectory
from bench.gym.problem import Budget
from bench.gym.spec import TaskSpec, build_task
from bench.gym.suites import load_suite
from bench.gym.task import Prior
from bench.methods import method
from bench.training import TrainingData, checkpoint_path, train_only, training_data
from tests.helpers import drift_family, noisy_test_experiments, with_presets

LEVELS = ((1e6, 1e9), (1e7, 1e9), (1e8, 1e10), (1e9, 1e10))  # (params, tokens), cheapest first


def ladder_task(levels, name="toy", experiments=("toy",), test=None) -> object:
    """One float parameter x; `levels`: per fidelity (runs, loss(x) with NaN for a diverged run)
    on an even grid of x, for every experiment (shifted by its index)."""
    rows = []
    for e, exp in enumerate(experiments):
        for (params, tokens), (runs, loss) in zip(LEVELS[: len(levels)], levels, strict=True):
            for x in np.linspace(0, 1, runs):
                rows.append({"exp": exp, "x": x, "params": params, "tokens": tokens,
                             "loss": loss(x) + 0.1 * e})
    spec = TaskSpec(name=name, objective={"column": "loss", "direction": "minimize"}, config=["x"],
                    fidelity=["params", "tokens"], experiment="exp", test=test)
    return build_task(spec, pd.DataFrame(rows))


def edge(shift: float, boundary: float):
    """Loss falls towards x = 0.95 and the run diverges from `boundary` on: the best runs sit
    next to diverged ones."""
    return lambda x: np.nan if x >= boundary else shift + (x - 0.95) ** 2


def test_the_cautious_teacher_avoids_where_cheap_runs_diverged():
    # divergence sets in at smaller x as scale grows: 0.8, 0.7, then 0.62 at the target
    task = ladder_task(((41, edge(3.0, 0.8)), (41, edge(2.0, 0.7)), (21, edge(1.0, 0.62))))
    for seed in range(3):
        problem = task.problem("toy", Budget("trials", 1), Prior(), seed)
        oracle = task.oracle("toy", seed)
        cautious = oracle.evaluate(teachers.Cautious(problem, 0).ask())
        best_prior = oracle.evaluate(method("best-prior").make(problem, 0).ask())
        assert not cautious.diverged and cautious.config["x"] < 0.62
        assert best_prior.diverged  # the best cheap run's neighbour at the target diverged
    risk = teachers.divergence_risk(teachers.Cautious(problem, 0).view)
    x = problem.arrays().x[:, 0]
    assert risk[x < 0.5].max() < 0.15 and risk[(x > 0.67) & (x < 0.8)].min() > 0.5  # near the edge


def test_the_cautious_teacher_is_left_out_on_request():
    assert "cautious" in {name for name, _, _ in teachers.TEACHERS}
    task = ladder_task(((30, lambda x: 3 + (x - 0.4) ** 2), (30, lambda x: 2 + (x - 0.4) ** 2),
                        (21, lambda x: 1 + (x - 0.45) ** 2)))
    data = TrainingData(task, ["toy"], ["toy"], (Prior(),))
    ep = TrainingEpisode.of(data, "toy", Prior(), 1, 5)
    pool = (("cautious", {}, 1), ("random", {}, 1))
    for cautious, taught in ((True, {"cautious", "random"}), (False, {"random"})):
        kept = teachers.simulate([ep], 0, 2, data=data, teachers=pool, cautious=cautious)
        assert {t.teacher for t in kept} == taught


def test_trajectories_are_kept_by_expected_score_not_a_lucky_draw():
    # cheap optimum 0.4, target optimum 0.45: best-prior is good in expectation, rarely the best
    task = ladder_task(((30, lambda x: 3 + (x - 0.4) ** 2), (30, lambda x: 2 + (x - 0.4) ** 2),
                        (21, lambda x: 1 + (x - 0.45) ** 2)))
    data = TrainingData(task, ["toy"], ["toy"], (Prior(),))
    pool = (("best-prior", {}, 1), ("random", {}, 2))
    ep = TrainingEpisode.of(data, "toy", Prior(), 1, 5)

    def final(name: str, seed: int) -> float:
        chosen = teachers.play(ep, teachers.teacher(name, {}, ep, seed))
        return float(teachers.pregrets(ep, chosen)[-1])

    # a simulation seed whose random draw on the episode itself beats best-prior there
    seed = next(s for s in range(200) if final("random", s) < final("best-prior", s))
    both = teachers.simulate([ep], seed, keep=2, data=data, teachers=pool)
    by = {t.teacher: t for t in both}
    assert by["random"].pregret < by["best-prior"].pregret  # hindsight would keep the lucky draw
    assert by["best-prior"].expected < by["random"].expected  # but it is worse in expectation
    kept = teachers.simulate([ep], seed, keep=1, data=data, teachers=pool)
    assert [t.teacher for t in kept] == ["best-prior"]
    t = kept[0]
    assert t.episode == ep.key and t.expected == by["best-prior"].expected
    best = ep.problem.objective.best(ep.values[[s.candidate for s in t.steps]])
    assert t.pregret == pytest.approx(float(ep.scorer.pregret(best)))
    assert Trajectory.from_dict(t.to_dict()) == t
    old = {k: v for k, v in t.to_dict().items() if k not in ("pregret", "expected")} | {"nregret": 0.1}
    with pytest.raises(ValueError, match="pregret"):
        Trajectory.from_dict(old)


def test_curation_adds_pseudo_targets_of_fit_experiments_and_ladder_priors():
    flat = lambda x: 1 + (x - 0.5) ** 2  # noqa: E731
    levels = ((40, flat), (30, flat), (24, flat), (21, flat))  # three cheap rungs and the target
    task = ladder_task(levels, experiments=("a", "c", "v", "b"), test=["b"])
    # c's rung 2 holds fewer than MIN_TARGET runs: no c@2
    table, rung2 = task.table, task.experiment("c").fidelities[2].name
    task = dataclasses.replace(task, table=table[~((table.experiment == "c") & (table.fidelity == rung2)
                                                   & (table.x > 0.4))])
    data = TrainingData(train_only(task), ["a", "c"], ["v"], (Prior(), Prior("cheaper", 2.0, 1.0)))
    curated = curation.curate(data, 0, variants=2)
    names = set(curated.fit)
    assert {"a", "a@1", "a@2", "c", "c@1"} <= names and "c@2" not in names
    assert {n.split("@")[0].split("~")[0] for n in names} == {"a", "c"}  # fit experiments only
    fids = task.experiment("a").fidelities
    for k in (1, 2):
        e = curated.task.experiment(f"a@{k}")
        assert e.fidelities == fids[: k + 1] and e.split == "train"
        rows = curated.task.table[curated.task.table.experiment == f"a@{k}"]
        assert set(rows.fidelity) == {f.name for f in fids[: k + 1]}
        assert (rows.fidelity == fids[k].name).sum() == levels[k][0]
        assert f"a@{k}~1" in names  # shifted too
    for name in names:  # copies of the fit experiments' own rows
        rows = curated.task.table[curated.task.table.experiment == name]
        source = task.table[task.table.experiment == name.split("@")[0].split("~")[0]]
        runs = {tuple(r) for r in source[["fidelity", "x", "value"]].to_numpy().tolist()}
        assert {tuple(r) for r in rows[["fidelity", "x", "value"]].to_numpy().tolist()} <= runs
    assert curated.validation == [] and not {"v", "b"} & {n.split("@")[0].split("~")[0] for n in names}
    budget = load_suite("far").prior_for("toy").budget
    gaps = load_suite("ladder").gaps  # every run at each distance (as `ladder` tests), and capped as `far`
    assert set(curated.priors) == set(data.priors) | {Prior("cheaper", float(g), b) for g in gaps
                                                      for b in (None, budget)}
    assert not set(curation.curate(data, 0, variants=1, truncate=False).fit) - {"a", "c"}
    assert all(math.isfinite(v) for v in curated.task.table.value)


# The nap and fsbo presets at a few training steps (the real ones train for minutes).
TINY_LEARNED = {
    "nap": {"class": "baselines.nap:NAP", "family": "learned-bo", "description": "tiny NAP",
            "params": {"train_steps": 3, "batch": 4, "d_model": 8, "heads": 2, "layers": 1, "ff": 16,
                       "prior_cap": 32}},
    "fsbo": {"class": "baselines.fsbo:FSBO", "family": "learned-bo", "description": "tiny FSBO",
             "params": {"kernel_steps": 5, "train_steps": 10, "eval_every": 5, "holdout_draws": 1,
                        "max_prior": 60, "finetune_steps": 2}},
}
LEARNED = {name for name, _, _ in teachers.LEARNED}


@pytest.fixture
def tiny_learned(cache, tmp_path, monkeypatch):
    yield from with_presets(tmp_path, monkeypatch, **TINY_LEARNED)


def test_learned_teachers_are_ranked_by_expected_score_and_their_trajectories_replay(tiny_learned):
    task = drift_family()
    everyone = len(teachers.TEACHERS) + len(teachers.LEARNED)
    # keep every configuration: the ranking
    settings = {"variants": 2, "episodes": 3, "keep": everyone, "learned_teachers": True}
    curated, found = simulated(task, 0, **settings)
    assert {t.teacher for t in found} >= LEARNED == {"nap", "fsbo"}
    episodes = list(dict.fromkeys(t.episode for t in found))
    checkpoints = teachers.learned_checkpoints(TrainingData.of(task), 0)  # trained by simulated: found
    for e, key in enumerate(episodes):
        ranked = [t for t in found if t.episode == key]
        assert len(ranked) == everyone and {t.teacher for t in ranked} >= LEARNED
        assert [t.expected for t in ranked] == sorted(t.expected for t in ranked)
        ep = TrainingEpisode.of(TrainingData(curated, [], [], ()), *key[1:])
        for t in (t for t in ranked if t.teacher in LEARNED):
            ids = [s.candidate for s in t.steps]
            assert len(ids) == len(set(ids)) == ep.horizon and all(0 <= i < len(ep.values) for i in ids)
            assert all(s.value == ep.values[s.candidate] for s in t.steps)
            best = ep.problem.objective.best(ep.values[ids])
            assert t.pregret == pytest.approx(float(ep.scorer.pregret(best)))
            assert teachers.play(ep, teachers.teacher(t.teacher, {}, ep, 1000 * e, checkpoints)) == ids
    # the learned teachers change no other teacher's trajectory, and the setting leaves them out
    _, heuristic = simulated(task, 0, **{**settings, "learned_teachers": False})
    assert heuristic == [t for t in found if t.teacher not in LEARNED]


def test_learned_teachers_learn_from_train_experiments_only(tiny_learned, tmp_path, monkeypatch):
    task = drift_family()
    first = teachers.learned_checkpoints(TrainingData.of(task), 0)
    for name in LEARNED:  # the file the NAP/FSBO baseline of the task uses: trained once for both
        spec = method(name)
        assert checkpoint_path(spec, training_data(spec, task), 0).exists()
    monkeypatch.setenv("BENCH_CACHE", str(tmp_path / "again"))  # trains afresh
    noisy = teachers.learned_checkpoints(TrainingData.of(noisy_test_experiments(task)), 0)
    for name in LEARNED:
        meta = first[name].meta
        assert meta["digest"] == noisy[name].meta["digest"]
        assert sorted(meta["fit"] + meta["validation"]) == sorted(task.split("train"))


def test_grpo_plays_the_curated_task_that_exported_records_name(cache):
    """`bench lm grpo` rebuilds the curated task `bench lm export` played (variants, truncated ladders):
    the same table, so every exported episode is found and replays."""
    task, settings = drift_family(), {"variants": 2, "episodes": 3}
    curated, found = simulated(task, 0, **settings)
    rebuilt = curated_task(task, 0, **settings)
    pd.testing.assert_frame_equal(rebuilt.table, curated.table)
    assert {t.experiment for t in found} - set(task.split("train"))  # variants, not only the originals
    for name in {t.experiment for t in found}:
        rebuilt.experiment(name)
