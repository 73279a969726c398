"""Every method preset runs a short episode on real data; what it runs comes from the table."""

import json

import pandas as pd
import pytest

from bench.episode import run_episode
from bench.gym.problem import Budget
from bench.gym.registry import load_task
from bench.methods import methods
from bench.store import EpisodeKey, Store

SLOW = {"smac-bb"}  # seconds per ask on 17 dimensions
PRESETS = [pytest.param(m, marks=pytest.mark.slow) if m in SLOW else m
           for m, spec in methods().items()
           if not spec.missing() and not spec.needs_training and spec.family != "llm"]


@pytest.mark.parametrize("method", PRESETS)
def test_preset_runs_a_short_episode(tmp_path, method):
    task = load_task("data_mixture")
    key = EpisodeKey("s", task.name, method, "pile_cc", "trials", 3, 0)
    store = Store(tmp_path)
    summary = run_episode(key, task, methods()[method], store)
    assert summary["trials"] == 3 and summary["target_trials"] == 3, summary["failed"]
    scores = summary["scores"]
    assert summary["recommend_value"] is not None and summary["best"] == scores["value"]
    assert summary["best"] >= task.scorer("pile_cc").optimum and 0 <= scores["pregret"] < 1
    pool = task.problem("pile_cc", Budget("trials", 3)).candidates()
    for line in store.trial_log(key).read_text().splitlines():
        row = json.loads(line)
        assert row["ask_seconds"] >= 0
        assert (pool == pd.Series(row["config"])).all(axis=1).any()
