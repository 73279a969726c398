"""examples/my_optimizer (README: "Writing an optimizer"): a user's optimizer benchmarked with no
edit to the package, through the API from any directory, and through `bench run` as
`module:Class`, a user presets file and `--method-params`. Lighter than the documented command
(one small task, two baselines, one seed and budget), on the same code path."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from bench import api

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "my_optimizer"
BENCH = Path(sys.executable).parent / "bench"  # the script: the working directory is not on its path
LIGHT = ["--seeds", "1", "--budget", "1"]
pytestmark = pytest.mark.slow


def _run(*args, cwd, code: int = 0) -> subprocess.CompletedProcess:
    r = subprocess.run([str(a) for a in args], cwd=cwd, capture_output=True, text=True, timeout=300,
                       env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"})  # no __pycache__ in examples/
    assert r.returncode == code, r.stderr
    return r


def test_the_example_prints_where_my_optimizer_ranks(tmp_path):
    r = _run(sys.executable, EXAMPLE / "compare.py", "--task", "sft_lora", "--against", "random,centroid",
             *LIGHT, "--out", "runs", cwd=tmp_path)  # outside the checkout: workers import it by name
    assert re.search(r"^sft_lora \(cv\), T=1: my_optimizer:TopKCentre ranks [123] of 3 \(mean rank",
                     r.stdout, re.M), r.stdout
    board = api.leaderboard(tmp_path / "runs")
    assert set(board.method) == {"my_optimizer:TopKCentre", "random", "centroid"}
    assert (board.failed == 0).all() and (board.suite == "cv").all()


def test_the_example_through_bench_run(tmp_path):
    """`module:Class` from the working directory, the example's presets file, `--method-params`."""
    args = ["run", "--task", "sft_lora", "--suite", "quick", *LIGHT, "--quiet"]
    _run(BENCH, *args, "--method", "my_optimizer:TopKCentre,topk-centre-3", "--methods", "methods.yaml",
         "--out", tmp_path / "a", cwd=EXAMPLE)
    _run(BENCH, *args, "--method", "my_optimizer:TopKCentre", "--method-params", json.dumps({"top_k": 1}),
         "--out", tmp_path / "b", cwd=EXAMPLE)
    a, b = api.leaderboard(tmp_path / "a"), api.leaderboard(tmp_path / "b")
    assert set(a.method) == {"my_optimizer:TopKCentre", "topk-centre-3"} and not a.failed.any()
    assert not b.failed.any()
    r = _run(BENCH, *args, "--method", "my_optimizer:TopKCentre", "--method-params", json.dumps({"top-k": 1}),
             "--out", tmp_path / "c", cwd=EXAMPLE, code=2)
    assert len(r.stderr.strip().splitlines()) == 1
    assert "unknown parameter(s) ['top-k'] for my_optimizer:TopKCentre; it takes: top_k" in r.stderr


def test_the_example_beside_published_results(tmp_path):
    """`--reference DIR` runs only my optimizer and ranks it beside every method of packed
    results, paired; results that do not hold this run's episodes are one message, exit 2."""
    api.run("sft_lora", ["random", "centroid"], "cv", tmp_path / "ref", seeds=1, budget=1)
    _run(BENCH, "pack", "--runs", tmp_path / "ref", cwd=tmp_path)
    r = _run(sys.executable, EXAMPLE / "compare.py", "--task", "sft_lora", "--reference", tmp_path / "ref",
             *LIGHT, "--out", "mine", cwd=tmp_path)
    assert re.search(r"^sft_lora \(cv\), T=1: my_optimizer:TopKCentre ranks [123] of 3 ", r.stdout,
                     re.M), r.stdout
    assert set(api.leaderboard(tmp_path / "mine").method) == {"my_optimizer:TopKCentre"}
    r = _run(sys.executable, EXAMPLE / "compare.py", "--task", "sft_lora", "--reference", tmp_path / "ref",
             "--seeds", "2", "--budget", "1", "--out", "mine", cwd=tmp_path, code=2)
    assert [line for line in r.stderr.splitlines() if "error" in line] == [
        f"error: {tmp_path / 'ref'} has no method with every episode of this run; "
        "run the suite and seeds it holds"]
