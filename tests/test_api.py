"""The Python API (`bench.api`): the loops `bench run` and `bench leaderboard` run, with the same
results, and one episode by hand; learned methods are left out, with the reason, on a task without
train experiments."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from baselines.centroid import Centroid
from bench import api
from bench.errors import BenchError
from bench.gym.suites import load_suite
from bench.gym.task import method_seed
from bench.loop import run as play
from bench.methods import method
from bench.runner import plan
from bench.store import Store

ROOT = Path(__file__).resolve().parents[1]
QUICK = ["--suite", "quick", "--seeds", "1", "--budget", "1"]


def bench(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "bench", *map(str, args)], capture_output=True, text=True,
                          timeout=300, cwd=ROOT)


def no_train_spec(tmp_path: Path) -> Path:
    """examples/my_sweep as a spec whose experiments are all test: nothing to train on."""
    spec = yaml.safe_load((ROOT / "examples" / "my_sweep" / "spec.yaml").read_text())
    del spec["test"]
    spec["table"] = str(ROOT / "examples" / "my_sweep" / spec["table"])
    path = tmp_path / "no_train.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def test_run_and_leaderboard_are_what_the_cli_gives(tmp_path):
    ep = api.run(task="sft_lora", methods=["random", Centroid], suite="quick", out=tmp_path / "api",
                 seeds=1, budget=1)
    assert sorted(ep.method.unique()) == ["baselines.centroid:Centroid", "random"]
    assert len(ep) == 2 * 2 and not ep.failed.any()  # methods x quick's 2 experiments
    again = api.run(task="sft_lora", methods="random", suite="quick", out=tmp_path / "api", seeds=1, budget=1)
    assert len(again) == 2  # resumed: nothing rerun, only this run's episodes returned
    r = bench("run", "--task", "sft_lora", "--method", "random,baselines.centroid:Centroid", *QUICK,
              "--out", tmp_path / "cli", "--quiet")
    assert r.returncode == 0, r.stderr
    board, cli = api.leaderboard(ep), api.leaderboard(tmp_path / "cli")
    timed = [c for c in board if "seconds" in c]
    pd.testing.assert_frame_equal(board.drop(columns=timed), cli.drop(columns=timed))
    assert set(board.method) == {"random", "baselines.centroid:Centroid"} and "rank_mean" in board
    with pytest.raises(BenchError, match="no completed episodes"):
        api.leaderboard(tmp_path / "empty")


def test_make_problem_is_the_episode_the_harness_plays(tmp_path):
    ep = api.run(task="data_mixture", methods="random", suite="quick", out=tmp_path, seeds=1, budget=3)
    row = ep.iloc[0]
    problem, oracle = api.make_problem("data_mixture", row.experiment, budget=3, suite="quick", seed=0)
    trace = play(method("random").make(problem, method_seed(0)), oracle, problem)
    assert trace.best == row.score and oracle.scorer.point(trace.best)[0] == row.pregret
    cv_problem, _ = api.make_problem("data_mixture", row.experiment, suite="cv")
    assert cv_problem.budget.amount == 1  # the suite's first budget
    with pytest.raises(BenchError, match="no experiment 'nope'"):
        api.make_problem("data_mixture", "nope")


class InMain(Centroid):
    pass


def test_a_class_is_named_module_colon_class():
    assert api._method_name(Centroid) == "baselines.centroid:Centroid"
    InMain.__module__ = "__main__"  # as in a notebook: worker processes could not import it
    with pytest.raises(BenchError, match="define it in a module"):
        api._method_name(InMain)


def test_learned_methods_are_skipped_on_a_task_without_train_experiments(tmp_path):
    """`nap` and the policy train on the task's train experiments: left out, with the reason; the
    cross-family policy (trained on the built-in tasks) and the rest still run."""
    spec = str(no_train_spec(tmp_path))
    suite = load_suite("quick").overridden(seeds=1)
    learned = ["nap", "autollmresearch", "autollmresearch-xfamily"]
    p = plan(suite, [spec], ["random", *learned], Store(tmp_path / "out"))
    assert {key.method for _, key in p.todo} == {"random", "autollmresearch-xfamily"}
    for name in learned[:2]:
        assert any(line.startswith(f"my_sweep: {name} not run: learned") for line in p.skipped), p.skipped
    cv = plan(load_suite("cv").overridden(budget=1, seeds=1), [spec], ["random", "nap"],
              Store(tmp_path / "out"))
    # under cv the folds train on the other groups
    assert "nap" in {key.method for _, key in cv.todo}


def test_the_cli_runs_the_rest_and_says_why(tmp_path):
    spec = no_train_spec(tmp_path)
    presets = tmp_path / "methods.yaml"
    presets.write_text(yaml.safe_dump({"learned-centre": {"class": "tests.helpers:LearnedCentre",
                                                          "family": "learned-bo"}}))
    r = bench("run", "--task", spec, "--method", "random,learned-centre", "--methods", presets, *QUICK,
              "--out", tmp_path / "out")
    assert r.returncode == 0, r.stderr
    out = " ".join(r.stdout.split())
    assert "skipped my_sweep: learned-centre not run: learned, it trains on the task's train" in out
    assert "2 episodes to run" in out
    assert {p.parent.parent.name for p in (tmp_path / "out").rglob("*.done.json")} == {"random"}
