"""Grouped cross-validation (`cv`) and the distance ladder (`ladder`): experiment groups, folds,
fold-scoped training, ladder priors, plans and the CLI (issue 21)."""

import dataclasses
import importlib
import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from bench import api
from bench.errors import BenchError
from bench.gym.problem import Budget
from bench.gym.registry import BUILTIN, load_task, task_names
from bench.gym.spec import TaskSpec, build_task
from bench.gym.suites import load_suite
from bench.gym.task import Prior, merge_groups, shared_runs
from bench.methods import MethodSpec
from bench.runner import plan, trainings
from bench.store import Store
from bench.training import TrainingData, train
from tests.helpers import with_presets

ROOT = Path(__file__).resolve().parents[1]
BENCH = [sys.executable, "-c", "from bench.cli import main; main()"]
SPEC = MethodSpec(name="learned-centre", cls="tests.helpers:LearnedCentre", family="learned-bo")
LEARNED = {"class": "tests.helpers:LearnedCentre", "family": "learned-bo",
           "in_all": False}
# Groups and folds of the built-in tasks, as their task cards state them.
BUILTIN_GROUPS = {"data_mixture": 13, "pretrain_hparams": 6, "architecture": 1,
                  "architecture_wallclock": 1, "grpo": 4, "sft_lora": 11}
BUILTIN_FOLDS = {"data_mixture": 5, "pretrain_hparams": 5, "architecture": 1,
                 "architecture_wallclock": 1, "grpo": 4, "sft_lora": 5}
# Declared coarser than the table's sharing: readouts of the same runs that are near-copies of
# one another (the architecture card gives the rank correlations), which values cannot show.
NEAR_COPIES = {"architecture", "architecture_wallclock"}
COSTS = (1.0, 3.0, 10.0, 100.0, 1000.0)  # GPU-hours per run of levels 0..4
GRID = [1e-4 * 2.0 ** i for i in range(8)]  # every experiment's learning rates, at every level
MERGE_WARNING = "share runs across groups"


# ---------------------------------------------------------------------------------------------
# A synthetic task with groups


def grouped_frame(sizes, seed: int = 0) -> pd.DataFrame:
    """One row per run. Group i has sizes[i] experiments `g<i>m<j>`: member 0 has runs at every
    level (target: level 4, 1000 GPU-hours), member j > 0 at levels 0 .. 4 - j with member 0's rows
    there, so its target runs are rows of member 0 (as a Step Law cell is a rung of larger cells).
    Every experiment has the same 8 learning rates at every level, but each group draws its own
    losses: the same configurations with other outcomes (like data_mixture's domains), so no run
    is shared between groups."""
    rng = np.random.default_rng(seed)
    rows = []
    for i, size in enumerate(sizes):
        assert 1 <= size < len(COSTS)
        losses = [rng.normal(2.0, 0.3, len(GRID)) for _ in COSTS]
        for j in range(size):
            for level in range(len(COSTS) - j):
                rows += [{"exp": f"g{i}m{j}", "lr": lr, "level": level, "gpu_hours": COSTS[level],
                          "loss": float(v)} for lr, v in zip(GRID, losses[level], strict=True)]
    return pd.DataFrame(rows)


def declared(sizes) -> dict[str, list[str]]:
    return {f"g{i}": [f"g{i}m{j}" for j in range(s)] for i, s in enumerate(sizes)}


def toy_spec(name: str = "cvtoy", groups=None, **kw) -> TaskSpec:
    return TaskSpec(name=name, objective={"column": "loss", "direction": "minimize"},
                    config=[{"name": "lr", "log": True}], fidelity=["level"],
                    cost={"column": "gpu_hours"}, experiment="exp", groups=groups, **kw)


def grouped_task(sizes, name: str = "cvtoy", **kw):
    return build_task(toy_spec(name, declared(sizes), test=["g0m0"], **kw), grouped_frame(sizes))


def write_spec(folder: Path, sizes, groups=None, name: str = "cvtoy") -> str:
    """A spec .yaml and its CSV (`grouped_frame`), groups declared as `declared(sizes)` unless
    `groups` is given; returns the spec's path (a task reference)."""
    folder.mkdir(parents=True, exist_ok=True)
    grouped_frame(sizes).to_csv(folder / "runs.csv", index=False)
    spec = {"name": name, "table": "runs.csv", "objective": {"column": "loss", "direction": "minimize"},
            "config": [{"name": "lr", "log": True}], "fidelity": ["level"],
            "cost": {"column": "gpu_hours"}, "experiment": "exp", "test": ["g0m0"],
            "groups": declared(sizes) if groups is None else groups}
    (folder / "spec.yaml").write_text(yaml.safe_dump(spec))
    return str(folder / "spec.yaml")


def partition(experiments) -> list[list[str]]:
    """The groups of `experiments` ({name: Experiment}) as sorted lists of names."""
    groups: dict[str, list[str]] = {}
    for name, e in experiments.items():
        groups.setdefault(e.group, []).append(name)
    return sorted(sorted(g) for g in groups.values())


def check_folds(task, k: int) -> None:
    """Every experiment in exactly one fold, every group inside one fold, `k` folds, and the
    fold tasks carry those test splits."""
    fixed = task.split("test")
    folds = task.folds()
    assert len(folds) == k
    tested = [e for f in folds for e in f]
    assert sorted(tested) == sorted(task.experiments)  # each experiment exactly once
    where = {e: i for i, f in enumerate(folds) for e in f}
    for group, members in task.groups().items():
        assert len({where[e] for e in members}) == 1, f"{task.name}: group {group} split over folds"
    assert all(folds)  # no empty fold
    views = task.cv_folds()
    assert [v.fold for v in views] == [f"cv{i + 1}of{k}" for i in range(k)]
    for fold, view in zip(folds, views, strict=True):
        assert sorted(view.split("test")) == fold
        assert sorted(view.split("train")) == sorted(set(task.experiments) - set(fold))
        assert all(task.cv_fold(e) is view for e in fold)
    assert task.fold == "" and task.split("test") == fixed  # the task keeps its fixed split


@pytest.fixture
def configs(tmp_path, monkeypatch):
    """The project's configs plus a `learned-centre` preset (tests.helpers.LearnedCentre)."""
    yield from with_presets(tmp_path, monkeypatch, **{"learned-centre": LEARNED})


# ---------------------------------------------------------------------------------------------
# 1. Folds partition the groups


@pytest.mark.parametrize("name", task_names())
def test_builtin_folds_partition_the_groups(name):
    """Catches a fold that splits a group (a test experiment's rungs trained on), an experiment
    tested twice or never, or a task whose group/fold count drifted from its card."""
    task = load_task(name)
    assert len(task.groups()) == BUILTIN_GROUPS[name]
    check_folds(task, BUILTIN_FOLDS[name])


def test_synthetic_folds_partition_the_groups():
    """7 groups: 5 folds, groups dealt largest first to the smallest fold; 3 groups: leave-one-
    group-out. Catches an off-by-one in the fold count, a group split by the dealing, and folds
    that depend on the table's row order."""
    sizes = [3, 1, 2, 1, 1, 2, 1]
    task = grouped_task(sizes)
    assert task.groups() == declared(sizes)
    check_folds(task, 5)
    assert sorted(map(len, task.folds())) == [2, 2, 2, 2, 3]  # 11 experiments, dealt evenly
    shuffled = grouped_frame(sizes).sample(frac=1, random_state=3)
    assert build_task(toy_spec(groups=declared(sizes), test=["g0m0"]), shuffled).folds() == task.folds()
    three = grouped_task([2, 1, 3])
    check_folds(three, 3)
    assert sorted(three.folds()) == sorted(sorted(m) for m in declared([2, 1, 3]).values())


# ---------------------------------------------------------------------------------------------
# 2. Built-in groups are exactly what the tables show


@pytest.mark.parametrize("name", task_names())
def test_builtin_groups_are_what_the_table_shows(name, caplog):
    """Built from its loader (not the per-process cache) so the build's warnings are seen. Catches
    declared groups that miss a sharing (merged behind the author's back, with a warning), runs
    shared across groups (a fold would train on a test experiment's target runs), and declared
    groups coarser than the sharing (folds lost for nothing)."""
    module, _, function = BUILTIN[name].partition(":")
    with caplog.at_level(logging.WARNING):
        task = getattr(importlib.import_module(module), function or "load")()
    assert not [r for r in caplog.records if MERGE_WARNING in r.getMessage()]
    params = list(task.space.keys())
    pairs = shared_runs(task.table, params, task.experiments)
    assert all(task.experiments[a].group == task.experiments[b].group for a, b in pairs)
    alone = {n: dataclasses.replace(e, group=n) for n, e in task.experiments.items()}
    detected = partition(merge_groups(alone, shared_runs(task.table, params, alone)))
    if name in NEAR_COPIES:
        assert len(task.groups()) == 1 < len(detected)
    else:
        assert detected == partition(task.experiments)


# ---------------------------------------------------------------------------------------------
# 3. Declared groups in a spec


def test_sharing_across_declared_groups_is_merged_with_a_warning(caplog):
    """Catches a spec whose `groups:` split experiments that share runs (g0m1's target runs are
    rows of g0m0) being taken at its word, and silent merging."""
    sizes = [2, 1, 1]
    wrong = {"a": ["g0m0"], "z": ["g0m1"], "g1": ["g1m0"]}  # g2m0 undeclared: a group of its own
    with caplog.at_level(logging.WARNING, logger="bench.gym.spec"):
        task = build_task(toy_spec(groups=wrong), grouped_frame(sizes))
    (record,) = [r for r in caplog.records if MERGE_WARNING in r.getMessage()]
    assert "g0m1 in g0m0" in record.getMessage()
    assert task.groups() == {"a": ["g0m0", "g0m1"], "g1": ["g1m0"], "g2m0": ["g2m0"]}
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="bench.gym.spec"):
        undeclared = build_task(toy_spec(), grouped_frame(sizes))  # no groups: detection alone
        assert [r for r in caplog.records if MERGE_WARNING in r.getMessage()]
    assert partition(undeclared.experiments) == partition(task.experiments)
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="bench.gym.spec"):
        build_task(toy_spec(groups=declared(sizes)), grouped_frame(sizes))
    assert not [r for r in caplog.records if MERGE_WARNING in r.getMessage()]  # declared right: quiet


@pytest.mark.parametrize("groups, message", [
    ({"g0": ["g0m0", "g0m1", "nosuch"]}, "group 'g0' names 'nosuch', which is not an experiment"),
    ({"g0": ["g0m0", "g0m1"], "g1": ["g1m0", "g0m1"]}, "experiment 'g0m1' is in groups 'g0' and 'g1'"),
])
def test_bad_groups_are_an_error(groups, message):
    """Catches a typo in `groups:` silently making a group of nothing, and an experiment put in
    two groups (which fold tests it?)."""
    with pytest.raises(BenchError, match=message):
        build_task(toy_spec(groups=groups), grouped_frame([2, 1]))


def test_spec_yaml_groups(tmp_path):
    """`groups:` in a spec .yaml reaches the task. Catches the key dropped between the file and
    `build_task` (every experiment then alone: 4 folds, not 3)."""
    task = load_task(write_spec(tmp_path, [2, 1, 1]))
    assert task.groups() == declared([2, 1, 1]) and len(task.cv_folds()) == 3


# ---------------------------------------------------------------------------------------------
# 4. Training on a fold never reads the fold's test group


def noisy(task, experiments, flip: bool = False):
    """`task` with every row of `experiments` replaced: by noise, or reversed (the best run becomes
    the worst, so a method that learns where the best run is must change)."""
    table = task.table.copy()
    rows = table.experiment.isin(experiments)
    values = table.loc[rows, "value"]
    table.loc[rows, "value"] = (values.max() + values.min() - values) if flip else \
        np.random.default_rng(1).normal(9, 3, rows.sum())
    return dataclasses.replace(task, table=table)


@pytest.mark.parametrize("k", range(5))
def test_fold_training_never_reads_its_test_group(k, cache):
    """Train on fold k, then on a copy whose test-group outcomes (every row, rungs included) are
    noise: the same checkpoint path and state digest. Then reverse a fit experiment: both change,
    so the test can fail. Catches training on the whole task under cv, a fold that trains on its
    test group, and a checkpoint shared between folds or with the fixed split."""
    task = grouped_task([2, 3, 1, 1, 2, 1])  # 6 groups, 5 folds; two groups of several members
    fold = task.cv_folds()[k]
    test = fold.split("test")
    assert set(test) == set(task.folds()[k])
    a, path_a = train(SPEC, fold)
    assert path_a.parent.name == f"cvtoy-cv{k + 1}of5" and a.meta["task"] == f"cvtoy-cv{k + 1}of5"
    assert not set(a.meta["fit"] + a.meta["validation"]) & set(test)
    b, path_b = train(SPEC, noisy(task, test).cv_folds()[k], force=True)
    assert path_b == path_a and b.meta["digest"] == a.meta["digest"]
    fit = TrainingData.of(fold).fit
    c, path_c = train(SPEC, noisy(task, fit[:1], flip=True).cv_folds()[k], force=True)
    assert path_c != path_a and c.meta["digest"] != a.meta["digest"]
    fixed = train(SPEC, task)[1]
    assert fixed.parent.name == "cvtoy" and fixed != path_a


def test_pretrain_hparams_dense_fold_trains_without_the_dense_group(cache):
    """The real nested case: the fold that tests the 11 nested dense experiments trains on the
    others (dense-N215M-D100B and the MoE). Noise on every row of the 11 leaves the checkpoint as
    it is. Catches a fold view that keeps a dense experiment in the training split."""
    task = load_task("pretrain_hparams")
    dense = task.groups()["dense-N1.07B-D56.9B"]
    (k,) = [i for i, f in enumerate(task.folds()) if set(dense) <= set(f)]
    fold = task.cv_folds()[k]
    assert set(fold.split("test")) == set(dense)
    a, path_a = train(SPEC, fold)
    assert path_a.parent.name == f"pretrain_hparams-cv{k + 1}of5"
    b, path_b = train(SPEC, noisy(task, dense).cv_folds()[k], force=True)
    assert path_b == path_a and b.meta["digest"] == a.meta["digest"]


# ---------------------------------------------------------------------------------------------
# 5. The ladder


def test_ladder_runs_once_per_gap():
    """Catches a ladder whose distances are not runs of their own (one suite name for all), or
    that keeps `gaps`/loses `cv` in its per-gap suites; a suite without gaps runs as itself."""
    ladder = load_suite("ladder")
    runs = ladder.per_gap()
    assert [r.name for r in runs] == [f"ladder-gap{g:g}" for g in ladder.gaps]
    assert [r.gap for r in runs] == ladder.gaps and all(r.gaps is None and r.cv for r in runs)
    assert load_suite("cv").per_gap() == [load_suite("cv")]
    assert all(p.prior.budget is None for p in (r.protocol("pretrain_hparams") for r in runs))


def _rows(frame, params) -> list[tuple]:
    return sorted(map(tuple, frame[["fidelity", *params, "value"]].astype(str).to_numpy().tolist()))


def test_ladder_prior_is_every_run_costing_at_most_target_over_g():
    """For every experiment and distance g, the prior of several seeds is exactly the runs at the
    fidelities costing <= target / g (boundary included), every run there. Catches a strict
    inequality, a subset drawn as in `far`, or the gap ignored."""
    task = grouped_task([3, 1])
    expect = {1: [0, 1, 2, 3], 3: [0, 1, 2, 3], 10: [0, 1, 2, 3], 30: [0, 1, 2], 100: [0, 1, 2],
              1000: [0]}  # levels in the prior of g0m0 (costs 1, 3, 10, 100; target 1000)
    for run in load_suite("ladder").per_gap():
        prior = run.protocol(task.name).prior
        for seed in range(3):
            got = task.problem("g0m0", Budget("trials", 1), prior, seed).prior
            assert sorted(set(got.fidelity)) == [f"level={lv}" for lv in expect[run.gap]]
            table = task.table[(task.table.experiment == "g0m0") &
                               task.table.fidelity.isin(set(got.fidelity))]
            assert _rows(got, ["lr"]) == _rows(table, ["lr"])


def test_ladder_prior_on_pretrain_hparams():
    """The same on a real task: every (experiment, g) prior is every run at the fidelities costing
    at most target / g, and some distances leave a strict subset, some nothing. Catches the gap
    measured against another cost than the experiment's own target, and runs lost or repeated
    when a fidelity is shared between experiments (the dense rungs)."""
    task = load_task("pretrain_hparams")
    params = list(task.space.keys())
    sizes = set()
    for run in load_suite("ladder").per_gap():
        prior = run.protocol(task.name).prior
        for name, exp in task.experiments.items():
            limit = exp.target.cost / run.gap * (1 + 1e-12)
            allowed = {f.name for f in exp.fidelities[:-1] if f.cost <= limit}
            got = task.problem(name, Budget("trials", 1), prior, seed=7).prior
            table = task.table[(task.table.experiment == name) & task.table.fidelity.isin(allowed)]
            assert _rows(got, params) == _rows(table, params)
            sizes.add((len(allowed) > 0, len(allowed) < len(exp.fidelities) - 1))
    assert {(True, False), (True, True), (False, True)} <= sizes


def test_ladder_plan_skips_distances_a_task_cannot_offer(tmp_path):
    """Catches a distance with no prior fidelity planned anyway (an empty prior mislabelled as
    distance g), or planned episodes missing for a distance the experiment offers."""
    task = load_task("pretrain_hparams")
    ladder = load_suite("ladder").model_copy(update={"seeds": 1, "budgets": [1]})
    p = plan(ladder, ["pretrain_hparams"], ["random"], Store(tmp_path / "out"))
    offered = {(f"ladder-gap{g:g}", n) for g in ladder.gaps for n, e in task.experiments.items()
               if any(f.cost <= e.target.cost / g for f in e.fidelities[:-1])}
    assert {(k.suite, k.experiment) for k in [*(k for _, k in p.todo), *p.copies]} == offered
    skipped = {(f"ladder-gap{g:g}", n) for g in ladder.gaps for n in task.experiments} - offered
    said = {(line.split()[0], line.split()[1].split("/")[1].rstrip(":")) for line in p.skipped}
    assert skipped and said == skipped
    assert all("no prior fidelity costs at most 1/" in line for line in p.skipped)
    assert {("ladder-gap1000", "dense-N1.07B-D56.9B"), ("ladder-gap30", "moe-3in8-D20B")} <= skipped
    assert set(p.protocols) == {(f"ladder-gap{g:g}", "pretrain_hparams") for g in ladder.gaps}
    assert all(pr.cv for pr in p.protocols.values())


# ---------------------------------------------------------------------------------------------
# 6. Plans under cv


def test_cv_plan_tests_every_experiment_and_trains_once_per_fold(tmp_path, configs):
    """Catches cv planning only the fixed test split, a learned method trained per experiment or
    per ladder distance instead of per fold, and a fold trained that no episode uses."""
    ref = write_spec(tmp_path / "task", [2, 1, 1, 3, 1, 1, 2])  # 7 groups, 11 experiments, 5 folds
    task = load_task(ref)
    cv = load_suite("cv").model_copy(update={"seeds": 1, "budgets": [1]})
    store = Store(tmp_path / "out")
    p = plan(cv, [ref], ["random", "learned-centre"], store)
    assert not p.skipped
    planned = {(k.method, k.experiment) for _, k in p.todo}
    assert planned == {(m, e) for m in ("random", "learned-centre") for e in task.experiments}
    assert len(task.split("train")) == 10  # train experiments of the fixed split are tested too
    assert sorted(trainings(p)) == [("learned-centre", ref, k) for k in range(5)]
    folds = task.folds()
    some = cv.model_copy(update={"experiments": [folds[0][0], folds[2][0], folds[2][-1]]})
    assert sorted(trainings(plan(some, [ref], ["random", "learned-centre"], store))) == \
        [("learned-centre", ref, 0), ("learned-centre", ref, 2)]
    ladder = load_suite("ladder").model_copy(update={"seeds": 1, "budgets": [1]})
    assert sorted(trainings(plan(ladder, [ref], ["learned-centre"], store))) == \
        [("learned-centre", ref, k) for k in range(5)]
    fixed = load_suite("paper").model_copy(update={"seeds": 1, "budgets": [1]})
    assert trainings(plan(fixed, [ref], ["learned-centre"], store)) == [("learned-centre", ref, None)]


def test_cv_plan_with_one_group_runs_non_learned_methods_only(tmp_path, configs):
    """Every experiment of one group: no fold leaves anything to train on. Catches a learned method
    planned anyway (trained on nothing, or on its own test group) and dropped without a word."""
    ref = write_spec(tmp_path / "task", [3], groups={"all": ["g0m0", "g0m1", "g0m2"]})
    cv = load_suite("cv").model_copy(update={"seeds": 1, "budgets": [1]})
    p = plan(cv, [ref], ["random", "learned-centre"], Store(tmp_path / "out"))
    assert {k.method for _, k in p.todo} == {"random"}
    assert {k.experiment for _, k in p.todo} == {"g0m0", "g0m1", "g0m2"}
    (line,) = [s for s in p.skipped if "learned-centre" in s]
    assert "one experiment group" in line and "non-learned methods only" in line
    assert trainings(p) == []


def _record(store: Store, key) -> tuple[dict, list[dict]]:
    """An episode's summary and trials without what was timed or where it was filed."""
    timed = {"ask_seconds", "setup_seconds"}
    summary = {k: v for k, v in store.summary(key).to_json().items() if k not in timed | {"gap"}}
    return summary, [{k: v for k, v in t.items() if k not in timed} for t in store.trials(key)]


def test_episodes_a_ladder_shares_with_cv_or_a_nearer_distance_are_copied(tmp_path, configs, cache):
    """A distance whose prior is `cv`'s (distance 1 always: no cheaper fidelity costs more than the
    target) or a nearer distance's (no fidelity costs in between) has the same episodes: they are
    copied, not run again. Catches a copy of an episode whose prior differs, a distinct one not
    run, and a copy that is not what running it gives (trials, scores, fold) or lacks its own gap."""
    ref = write_spec(tmp_path / "task", [2, 1, 1])
    task = load_task(ref)
    methods, copied = ["random", "learned-centre"], tmp_path / "copied"
    api.run(ref, methods, "cv", copied, budget=1, seeds=2)
    Store(copied).pack()  # copied from packed rows (as from results/)
    ladder = load_suite("ladder").model_copy(update={"seeds": 2, "budgets": [1]})
    p = plan(ladder, [ref], methods, Store(copied))

    def prior(suite: str, experiment: str) -> list[str]:
        gap = None if suite == "cv" else float(suite.rsplit("-gap", 1)[1])
        return [f.name for f in task.prior_fidelities(experiment, Prior("cheaper", gap))]

    assert p.copies and all(prior(k.suite, k.experiment) == prior(s.suite, s.experiment)
                            for k, s in p.copies.items())
    assert {k.suite for k in p.copies} >= {"ladder-gap1", "ladder-gap3", "ladder-gap10"}
    for _, key in p.todo:  # run: no nearer distance, nor cv, gives it the same prior
        nearer = [f"ladder-gap{g:g}" for g in ladder.gaps if g < float(key.suite.rsplit("-gap", 1)[1])]
        assert all(prior(s, key.experiment) != prior(key.suite, key.experiment) for s in ["cv", *nearer])
    assert len(p.todo) + len(p.copies) == 2 * 2 * sum(
        task.offers(e, Prior("cheaper", g)) for g in ladder.gaps for e in task.experiments)

    api.run(ref, methods, "ladder", copied, budget=1, seeds=2)
    store = Store(copied)
    ran = tmp_path / "ran"  # each distance alone: nothing to copy from
    for gap in ladder.gaps:
        alone = tmp_path / f"gap{gap:g}.yaml"
        alone.write_text(yaml.safe_dump({"name": "alone", "cv": True, "gaps": [gap], "budgets": [1],
                                         "seeds": 2, "prior": "cheaper"}))
        api.run(ref, methods, str(alone), ran, budget=1, seeds=2)
    reference = Store(ran)
    for key, source in p.copies.items():
        assert store.summary(key).gap == float(key.suite.rsplit("-gap", 1)[1])
        assert _record(store, key) == _record(store, source)
        alone = dataclasses.replace(key, suite=key.suite.replace("ladder", "alone"))
        assert _record(store, key) == _record(reference, alone)


# ---------------------------------------------------------------------------------------------
# 7. The command line


def _summaries(out: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted(out.rglob("*.done.json"))]


@pytest.mark.slow
def test_cli_cv_and_ladder(tmp_path, configs):
    """`bench run --suite cv` and `--suite ladder` with a learned method and --jobs 2: exit 0,
    one checkpoint per fold (the ladder reuses them), summaries carrying the fold that tested the
    experiment and the ladder's distance. Catches fold and gap not reaching the workers or the
    summaries, training in parallel breaking, and a distance the task cannot offer being run."""
    ref = write_spec(tmp_path / "task", [2, 1, 1])
    task = load_task(ref)
    cache = tmp_path / "cache"
    env = {**os.environ, "BENCH_CONFIGS": str(configs), "PYTHONPATH": str(ROOT), "BENCH_CACHE": str(cache)}
    out = tmp_path / "out"
    common = ["--task", ref, "--method", "random,learned-centre", "--seeds", "1", "--budget", "1",
              "--jobs", "2", "--out", str(out)]
    r = subprocess.run([*BENCH, "run", "--suite", "cv", *common, "--quiet"], env=env,
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    cv = [s for s in _summaries(out) if s["key"]["suite"] == "cv"]
    assert len(cv) == 2 * len(task.experiments) and not any(s["failed"] for s in cv)
    assert all(s["fold"] == task.cv_fold(s["key"]["experiment"]).fold for s in cv)
    assert all(s["gap"] is None for s in cv)
    folders = sorted(p.name for p in (cache / "checkpoints").iterdir())
    assert folders == ["cvtoy-cv1of3", "cvtoy-cv2of3", "cvtoy-cv3of3"]
    checkpoints = sorted((cache / "checkpoints").rglob("*.pt"))
    assert len(checkpoints) == 3
    r = subprocess.run([*BENCH, "run", "--suite", "ladder", *common], env=env, capture_output=True,
                       text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    assert "skipped ladder-gap1000 cvtoy/g0m1: no prior fidelity" in " ".join(r.stdout.split())
    ladder = [s for s in _summaries(out) if s["key"]["suite"].startswith("ladder-gap")]
    assert not any(s["failed"] for s in ladder)
    assert all(s["key"]["suite"] == f"ladder-gap{s['gap']:g}" for s in ladder)
    assert all(s["fold"] == task.cv_fold(s["key"]["experiment"]).fold for s in ladder)
    cells = {(s["key"]["experiment"], s["gap"]) for s in ladder}
    assert ("g0m1", 1000) not in cells and ("g0m1", 100) in cells and ("g0m0", 1000) in cells
    assert len(ladder) == 2 * (6 * len(task.experiments) - 1)  # 6 distances, one not offered
    assert sorted((cache / "checkpoints").rglob("*.pt")) == checkpoints  # same folds: reused
