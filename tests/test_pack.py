"""Packed results (`bench pack`): every completed episode moves into one Parquet file per suite,
losslessly; leaderboards, reports and reruns read packed and loose episodes alike."""

import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from bench import api
from bench.errors import BenchError
from bench.gym.registry import load_task
from bench.metrics import episodes_frame
from bench.report import target_proposals
from bench.store import Store
from tests.helpers import bench_here

RESULTS = Path(__file__).resolve().parents[1] / "results"


def _proposals(out) -> pd.DataFrame:
    """What `bench report` reads of the trial logs: every target trial of the largest budget."""
    store = Store(out)
    tasks = {"data_mixture": load_task("data_mixture")}
    return target_proposals(store, episodes_frame(store.summaries()), tasks)


def _everything(out) -> dict:
    """Each episode's summary and trials, by key."""
    store = Store(out)
    return {key: (summary.to_json(), store.trials(key)) for key, summary in store.summaries()}


def test_packed_results_read_and_grow_like_loose_ones(tmp_path, monkeypatch, cache):
    out = tmp_path / "runs"
    api.run("data_mixture", ["random", "centroid"], "quick", out, budget=3, seeds=2)
    before, board = _everything(out), api.leaderboard(out)
    near = _proposals(out)
    assert len(before) == 2 * 2 * 2  # methods x experiments x seeds

    assert bench_here(monkeypatch, "pack", "--runs", str(out)) == 0
    assert not list(out.rglob("*.jsonl")) and not list(out.rglob("*.done.json"))
    assert [p.name for p in (out / "packed").iterdir()] == ["quick.parquet"]
    assert _everything(out) == before
    pd.testing.assert_frame_equal(api.leaderboard(out), board)
    pd.testing.assert_frame_equal(_proposals(out), near)
    rows = pd.read_parquet(out / "packed" / "quick.parquet")  # the documented form, read by anyone
    assert len(rows) == 8 and rows.trials.str.count("\n").sum() == sum(len(t) for _, t in before.values())

    api.run("data_mixture", ["random", "centroid"], "quick", out, budget=3, seeds=2)  # nothing to redo
    assert not list(out.rglob("*.done.json"))
    api.run("data_mixture", ["random", "centroid", "best-prior"], "quick", out, budget=3, seeds=2)
    assert len(list(out.rglob("*.done.json"))) == 4  # only the new method ran, loose beside the packed
    grown = _everything(out)
    assert {k: v for k, v in grown.items() if k.method != "best-prior"} == before
    assert bench_here(monkeypatch, "pack", "--runs", str(out)) == 0
    assert _everything(out) == grown and not list(out.rglob("*.done.json"))


def test_corrupt_packed_results_are_one_message(tmp_path, monkeypatch, cache, capsys):
    out = tmp_path / "runs"
    api.run("data_mixture", ["random"], "quick", out, budget=1, seeds=1)
    assert bench_here(monkeypatch, "pack", "--runs", str(out)) == 0
    (out / "packed" / "quick.parquet").write_bytes(b"not parquet")
    with pytest.raises(BenchError, match="packed results .*quick.parquet are unreadable"):
        list(Store(out).summaries())
    assert bench_here(monkeypatch, "leaderboard", "--runs", str(out)) == 2
    assert "unreadable" in capsys.readouterr().err
    assert bench_here(monkeypatch, "pack", "--runs", str(tmp_path / "absent")) == 2
    assert "no results directory" in capsys.readouterr().err


def test_a_report_from_packed_results_reproduces_the_leaderboard(tmp_path, monkeypatch, cache):
    """What a fresh clone of published results holds (packed episodes and the leaderboard written
    from them) is enough to write the same leaderboard again, byte for byte."""
    out = tmp_path / "runs"
    api.run("sft_lora", ["random", "centroid"], "quick", out, budget=1, seeds=2)
    assert bench_here(monkeypatch, "pack", "--runs", str(out)) == 0
    assert bench_here(monkeypatch, "report", "--runs", str(out), "--out", str(out)) == 0
    clone = tmp_path / "clone"
    shutil.copytree(out / "packed", clone / "packed")
    assert bench_here(monkeypatch, "report", "--runs", str(clone), "--out", str(tmp_path / "check")) == 0
    assert (tmp_path / "check" / "leaderboard.csv").read_bytes() == (out / "leaderboard.csv").read_bytes()


@pytest.mark.slow
@pytest.mark.skipif(not (RESULTS / "packed").is_dir(), reason="results/ holds no packed episodes yet "
                    "(scripts/reference_results.sh publishes them)")
def test_the_published_results_reproduce_their_leaderboard(tmp_path, monkeypatch, cache):
    assert bench_here(monkeypatch, "report", "--runs", str(RESULTS), "--out", str(tmp_path)) == 0
    assert (tmp_path / "leaderboard.csv").read_bytes() == (RESULTS / "leaderboard.csv").read_bytes()


@pytest.mark.skipif(not (RESULTS / "packed").is_dir(), reason="results/ holds no packed episodes yet")
def test_the_readme_headline_tables_are_the_published_leaderboard():
    readme = (RESULTS.parent / "README.md").read_text()
    for suite, budget in (("cv", "1"), ("cv", "3"), ("ladder-gap3", "1")):
        table = subprocess.run([sys.executable, str(RESULTS.parent / "scripts" / "readme_headline.py"),
                                str(RESULTS), "--suite", suite, "--budget", budget],
                               capture_output=True, text=True, check=True).stdout.strip()
        assert table.count("\n") > 10 and table in readme, f"README's {suite} T={budget} table is stale"


def test_forget_deletes_one_methods_episodes_and_nothing_else(tmp_path, monkeypatch, cache, capsys):
    out = tmp_path / "runs"
    for task in ("data_mixture", "sft_lora"):
        api.run(task, ["random", "centroid"], "quick", out, budget=1, seeds=1)
    assert bench_here(monkeypatch, "pack", "--runs", str(out)) == 0
    api.run("data_mixture", ["best-prior", "centroid"], "quick", out, budget=3, seeds=1)  # loose, beside
    stray = Store(out).trial_log(next(k for k, _ in Store(out).summaries() if k.method == "centroid"))
    stray = stray.with_name("T9-s0.jsonl")  # an episode cut short: loose, no marker
    stray.write_text("{}\n")
    before = _everything(out)

    assert bench_here(monkeypatch, "forget", "--runs", str(out), "--method", "centroid",
                      "--task", "data_mixture") == 0
    assert "deleted 4 episodes of centroid" in capsys.readouterr().out  # 2 packed (T=1), 2 loose (T=3)
    left = _everything(out)
    assert left == {k: v for k, v in before.items()
                    if not (k.method == "centroid" and k.task == "data_mixture")}
    assert {k.task for k in left if k.method == "centroid"} == {"sft_lora"} and not stray.exists()
    assert not (out / "episodes" / "quick" / "data_mixture" / "centroid").exists()

    assert bench_here(monkeypatch, "forget", "--runs", str(out), "--method", "centroid") == 0
    assert not any(k.method == "centroid" for k in _everything(out))
    for argv in (["--method", "centroid"], ["--method", "random", "--task", "grpo"],
                 ["--method", "random", "--suite", "cv"]):
        assert bench_here(monkeypatch, "forget", "--runs", str(out), *argv) == 2
    message = capsys.readouterr().err
    assert "holds: best-prior, random" in message and "it has: data_mixture, sft_lora" in message
    assert "no episodes of suite cv" in message
    assert {k.method for k in _everything(out)} == {"best-prior", "random"}  # nothing lost to bad input
