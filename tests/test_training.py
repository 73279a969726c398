"""Meta-training of learned methods: train-only data, checkpoints, train on first use."""

import dataclasses

import numpy as np
import pytest

from bench.episode import run_episode
from bench.gym.registry import load_task
from bench.methods import MethodSpec
from bench.store import EpisodeKey, Store
from bench.training import TrainingData, checkpoint_path, load, train, train_only
from tests.helpers import noisy_test_experiments

SPEC = MethodSpec(name="learned-centre", cls="tests.helpers:LearnedCentre", family="learned-bo")


def test_training_never_reads_test_experiments(cache):
    task = load_task("pretrain_hparams")
    data = TrainingData.of(task)
    assert set(data.task.experiments) == set(task.split("train"))
    assert set(data.fit) | set(data.validation) == set(task.split("train"))
    assert not set(data.fit) & set(data.validation)
    noisy = noisy_test_experiments(task)
    a, path_a = train(SPEC, task)
    b, path_b = train(SPEC, noisy, force=True)
    assert path_a == path_b and a.meta["digest"] == b.meta["digest"]
    assert a.meta["validation"] == data.validation and a.meta["task"] == "pretrain_hparams"
    assert np.isfinite(a.meta["validation_pregret"]) and a.meta["train_seconds"] >= 0


def test_checkpoints_are_reused_and_keyed_by_params_and_data(cache):
    task = load_task("sft_lora")
    ckpt, path = train(SPEC, task)
    assert path.exists() and load(path).meta == ckpt.meta
    shifted = SPEC.model_copy(update={"params": {"shift": 0.1}})
    data = TrainingData.of(task)
    assert checkpoint_path(shifted, data, 0) != path
    table = task.table.copy()
    train_rows = table.experiment.isin(task.split("train"))
    table.loc[train_rows, "value"] += 1e-6  # other train data: another checkpoint
    other = dataclasses.replace(task, table=table)
    assert checkpoint_path(SPEC, TrainingData.of(other), 0) != path
    path.write_bytes(b"truncated")
    load.cache_clear()
    with pytest.raises(Exception, match="unreadable"):
        load(path)


def test_episode_trains_on_first_use(cache, tmp_path):
    task = load_task("sft_lora")
    key = EpisodeKey("t", task.name, SPEC.name, task.split("test")[0], "trials", 2, 0)
    summary = run_episode(key, task, SPEC, Store(tmp_path / "out"))
    assert summary.failed is None and summary.trials == 2
    assert list((cache / "checkpoints" / "sft_lora").glob("learned-centre-*.pt"))


def test_train_only_copy_has_no_test_rows():
    task = load_task("grpo")
    copy = train_only(task)
    assert set(copy.table.experiment) == set(task.split("train")) and not copy.split("test")


@pytest.mark.parametrize("name", ["pretrain_hparams", "sft_lora", "grpo"])
def test_inner_folds_hold_out_whole_groups_of_train_experiments(name):
    data = TrainingData.of(load_task(name))
    groups = {e: data.task.experiment(e).group for e in data.experiments}
    folds = data.inner_folds(3)
    assert len(folds) == 3 and not set(data.experiments) & set(load_task(name).split("test"))
    for fold in folds:
        assert sorted(set(fold.fit) | set(fold.validation)) == data.experiments
        assert not {groups[e] for e in fold.fit} & {groups[e] for e in fold.validation}
    # each experiment is held out once (a task with fewer groups than folds repeats a fold)
    distinct = {tuple(f.validation) for f in folds}
    assert sorted(e for v in distinct for e in v) == data.experiments


def test_bench_train_command(cache, tmp_path):
    """`bench train` writes the checkpoint and prints what it was trained on; a method that does
    not train is one clear error."""
    import os
    import shutil
    import subprocess
    import sys
    from pathlib import Path

    import yaml

    from bench.paths import configs_dir

    configs = tmp_path / "configs"
    shutil.copytree(configs_dir(), configs)
    presets = yaml.safe_load((configs / "methods.yaml").read_text())
    presets["learned-centre"] = {"class": "tests.helpers:LearnedCentre", "family": "learned-bo"}
    (configs / "methods.yaml").write_text(yaml.safe_dump(presets))
    env = {**os.environ, "BENCH_CONFIGS": str(configs), "PYTHONPATH": str(Path(__file__).parents[1])}
    cli = [sys.executable, "-c", "from bench.cli import main; main()", "train"]
    ok = subprocess.run([*cli, "--method", "learned-centre", "--task", "sft_lora", "--quiet"], env=env,
                        capture_output=True, text=True, timeout=300)
    assert ok.returncode == 0, ok.stderr
    assert "learned-centre on sft_lora: 7 fit / 2 validation experiments" in ok.stdout
    assert list((cache / "checkpoints" / "sft_lora").glob("learned-centre-*.pt"))
    bad = subprocess.run([*cli, "--method", "random", "--task", "sft_lora"], env=env, capture_output=True,
                         text=True, timeout=120)
    assert bad.returncode == 2 and "do not train" in bad.stderr
