import json

import pandas as pd
import pytest

from bench.episode import run_episode
from bench.methods import MethodSpec
from bench.metrics import episodes_frame, leaderboard, nregret, regret
from bench.store import EpisodeKey, Store


def scripted(lrs):
    return MethodSpec(name="scripted", target="helpers:Scripted", family="test", params={"lrs": lrs})


def test_regret_arithmetic_on_hand_made_table(tiny_task, tmp_path):
    # Experiment b, target pool (lr -> loss): 1e-4 3.4, 3e-4 3.1, 1e-3 3.0, 3e-3 3.6.
    key = EpisodeKey("s", "tiny", "scripted", "b", "trials", 3, 0)
    store = Store(tmp_path)
    summary = run_episode(key, tiny_task, scripted([3e-3, 2.9e-4, 3e-3]), store)
    assert summary["optimum"] == pytest.approx(3.0)
    assert summary["median"] == pytest.approx(3.25)
    assert summary["curve"] == pytest.approx([3.6, 3.1, 3.1])  # best so far; re-ask costs a trial
    trials = [json.loads(line) for line in store.trial_log(key).read_text().splitlines()]
    assert [t["snapped"] for t in trials] == [False, True, False]
    assert trials[1]["config"]["lr"] == pytest.approx(3e-4) and trials[1]["asked"]["lr"] == 2.9e-4
    ep = episodes_frame(store.summaries())
    assert ep.regret.iloc[0] == pytest.approx(0.1)
    assert ep.nregret.iloc[0] == pytest.approx(0.1 / 0.25)
    assert ep.nregret_curve.iloc[0] == pytest.approx([2.4, 0.4, 0.4])


def test_regret_direction_and_degenerate_pool():
    assert regret(0.7, 0.9, "maximize") == pytest.approx(0.2)
    assert nregret(0.7, 0.9, 0.5, "maximize") == pytest.approx(0.5)
    assert pd.isna(nregret(1.0, 1.0, 1.0, "minimize"))


def _summary(method, exp, seed, best, budget=5):
    return {"key": {"suite": "s", "task": "t", "method": method, "experiment": exp,
                    "budget_kind": "trials", "budget": budget, "seed": seed},
            "best": best, "recommend_value": best, "curve": [best], "optimum": 0.0, "median": 1.0,
            "direction": "minimize", "gpu_hours": 10.0, "ask_seconds": 0.1, "trials": budget}


def test_leaderboard_mean_sem_and_rank():
    rows = [_summary("a", "e1", 0, 0.2), _summary("a", "e1", 1, 0.4),
            _summary("b", "e1", 0, 0.1), _summary("b", "e1", 1, 0.8)]
    board = leaderboard(episodes_frame(rows)).set_index("method")
    assert board.loc["a", "nregret_mean"] == pytest.approx(0.3)
    assert board.loc["a", "nregret_sem"] == pytest.approx(0.1)  # std(0.2, 0.4) / sqrt 2
    assert board.loc["a", "rank_mean"] == pytest.approx(1.5)  # 2nd on seed 0, 1st on seed 1
    assert board.loc["b", "rank_mean"] == pytest.approx(1.5)
    assert board.loc["a", "episodes"] == 2
    assert {"task", "method", "budget", "nregret_mean", "nregret_sem", "rank_mean", "episodes"} <= set(
        leaderboard(episodes_frame(rows)).columns)


def test_regret_figures_for_trial_and_cost_suites(tmp_path):
    from bench.plots import regret_curves

    rows = [_summary(m, "e1", s, v) for m, s, v in (("a", 0, 0.2), ("a", 1, 0.4), ("b", 0, 0.1))]
    cost = [{**r, "key": {**r["key"], "suite": "c", "budget_kind": "cost", "budget": b}}
            for r in rows for b in (1, 2)]
    ep = episodes_frame(rows + cost)
    for suite in ("s", "c"):
        png, pdf = regret_curves(ep, suite, tmp_path)
        assert png.name == f"regret_{suite}.png" and png.stat().st_size > 5_000 and pdf.is_file()
    assert regret_curves(ep, "none", tmp_path) == []
