"""Every method preset runs a short episode on real data; what it runs comes from the table."""

import json
import subprocess
import sys

import pandas as pd
import pytest

from bench.episode import run_episode
from bench.errors import BenchError
from bench.gym.problem import Budget
from bench.gym.registry import load_task
from bench.methods import methods, resolve_methods
from bench.store import EpisodeKey, Store
from tests.helpers import with_presets

SLOW = {"smac-bb"}  # seconds per ask on 17 dimensions
PRESETS = [pytest.param(m, marks=pytest.mark.slow) if m in SLOW else m
           for m, spec in methods().items()
           if not spec.missing() and not spec.learned and spec.family != "llm"]


@pytest.mark.parametrize("method", PRESETS)
def test_preset_runs_a_short_episode(tmp_path, method):
    task = load_task("data_mixture")
    key = EpisodeKey("s", task.name, method, "pile_cc", "trials", 3, 0)
    store = Store(tmp_path)
    summary = run_episode(key, task, methods()[method], store)
    assert summary.trials == 3 and summary.target_trials == 3, summary.failed
    scores = summary.scores
    assert summary.recommend_value is not None and summary.best == scores["value"]
    assert summary.best >= task.scorer("pile_cc").optimum and 0 <= scores["pregret"] < 1
    pool = task.problem("pile_cc", Budget("trials", 3)).candidates()
    for line in store.trial_log(key).read_text().splitlines():
        row = json.loads(line)
        assert row["ask_seconds"] >= 0
        assert (pool == pd.Series(row["config"])).all(axis=1).any()


@pytest.fixture
def misspelled(tmp_path, monkeypatch):
    """The project's configs plus a preset whose parameter is misspelled (`top-k` for `top_k`)."""
    yield from with_presets(tmp_path, monkeypatch, typo={
        "class": "baselines.extrapolate:Extrapolate", "family": "heuristic", "in_all": False,
        "params": {"top-k": 3}})


def test_a_misspelled_preset_parameter_is_a_config_error(misspelled, tmp_path):
    """Catches a preset key the class does not take failing every episode as a method failure
    (a scored, silent result) instead of stopping the run with one message and exit 2."""
    with pytest.raises(BenchError, match=r"typo: unknown parameter\(s\) \['top-k'\].*top_k"):
        resolve_methods("typo")
    assert resolve_methods("extrapolate") == ["extrapolate"]  # the real preset passes
    r = subprocess.run([sys.executable, "-c", "from bench.cli import main; main()", "run", "--task",
                        "data_mixture", "--method", "random,typo", "--suite", "quick", "--out",
                        str(tmp_path / "out")], capture_output=True, text=True, timeout=300)
    assert r.returncode == 2 and "top-k" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").rglob("*.done.json"))
