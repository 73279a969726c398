import json

import numpy as np
import pandas as pd
import pytest

from bench.episode import run_episode
from bench.methods import MethodSpec
from bench.metrics import episodes_frame, hierarchical_bootstrap, leaderboard, nregret, regret, unpaired
from bench.store import EpisodeKey, Store


def scripted(lrs):
    return MethodSpec(name="scripted", target="tests.helpers:Scripted", family="test", params={"lrs": lrs})


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


def _summary(method, exp, seed, best, budget=5, failed=None):
    return {"key": {"suite": "s", "task": "t", "method": method, "experiment": exp,
                    "budget_kind": "trials", "budget": budget, "seed": seed},
            "best": best, "recommend_value": best, "curve": [best] if best is not None else [],
            "optimum": 0.0, "median": 1.0, "worst": 4.0, "failed": failed, "direction": "minimize",
            "gpu_hours": 10.0, "budget_gpu_hours": 20.0, "ask_seconds": 0.1, "trials": budget,
            "pool_size": 9}


def test_leaderboard_mean_interval_and_rank():
    rows = [_summary("a", "e1", 0, 0.2), _summary("a", "e1", 1, 0.4),
            _summary("b", "e1", 0, 0.1), _summary("b", "e1", 1, 0.8)]
    board = leaderboard(episodes_frame(rows)).set_index("method")
    assert board.loc["a", "nregret_mean"] == pytest.approx(0.3)
    # one experiment: the bootstrap resamples its two seeds, so the mean's s.d. is about
    # std(0.2, 0.4, ddof=0) / sqrt 2 = 0.0707
    assert board.loc["a", "nregret_sem"] == pytest.approx(0.0707, abs=0.005)
    assert board.loc["a", "nregret_lo"] == pytest.approx(0.2) and board.loc["a", "nregret_hi"] == 0.4
    assert board.loc["a", "rank_mean"] == pytest.approx(1.5)  # 2nd on seed 0, 1st on seed 1
    assert board.loc["b", "rank_mean"] == pytest.approx(1.5)
    assert board.loc["a", "episodes"] == 2 and board.loc["a", "failed"] == 0
    assert board.loc["a", "pool_size"] == 9 and board.loc["a", "budget_spent"] == 0.5
    assert {"task", "method", "budget", "nregret_mean", "nregret_sem", "rank_mean", "episodes"} <= set(
        leaderboard(episodes_frame(rows)).columns)


def test_ranks_use_only_cells_every_method_has():
    """`a` ran seeds 0-9 and `b` seeds 0-2; `a` is better on 0-2 and worse elsewhere."""
    rows = [_summary("a", "e1", s, 0.1 if s < 3 else 0.9) for s in range(10)]
    rows += [_summary("b", "e1", s, 0.5) for s in range(3)]
    ep = episodes_frame(rows)
    board = leaderboard(ep).set_index("method")
    assert board.loc["a", "rank_mean"] == 1.0 and board.loc["b", "rank_mean"] == 2.0
    assert board.loc["a", "rank_cells"] == 3 and board.loc["a", "episodes"] == 10
    left = unpaired(ep)
    assert left.method.tolist() == ["a"] and left.left_out.tolist() == [7]


def test_failed_episode_scores_the_worst_candidate_and_is_counted():
    rows = [_summary("a", "e1", 0, 0.1, failed="RuntimeError: boom"), _summary("a", "e1", 1, 0.1),
            _summary("b", "e1", 0, None), _summary("b", "e1", 1, 0.3)]  # b seed 0: nothing seen
    ep = episodes_frame(rows)
    assert ep.failed.tolist() == [True, False, True, False]
    assert ep.nregret.tolist() == [4.0, 0.1, 4.0, 0.3]  # worst candidate: (4 - 0) / (1 - 0)
    assert ep.nregret_curve.iloc[0] == [4.0] * 5  # the whole anytime curve
    assert ep.nregret_curve.iloc[1] == [0.1] * 5  # a shorter curve keeps its best to the budget
    board = leaderboard(ep).set_index("method")
    assert board.failed.tolist() == [1, 1]
    assert board.loc["a", "nregret_mean"] == pytest.approx(2.05)
    assert not board.nregret_mean.isna().any()


def test_interval_does_not_shrink_by_repeating_a_deterministic_method():
    """Ten identical seeds per experiment carry no more information than one."""
    values = {"e1": 0.2, "e2": 0.6, "e3": 1.0, "e4": 0.4}
    once = [_summary("a", e, 0, v) for e, v in values.items()]
    tenfold = [_summary("a", e, s, v) for e, v in values.items() for s in range(10)]
    b1, b10 = (leaderboard(episodes_frame(r)).iloc[0] for r in (once, tenfold))
    assert b10.nregret_sem == pytest.approx(b1.nregret_sem, rel=0.1)
    assert b10.nregret_sem > 0.1  # the spread of the four experiments: s.d. 0.30 / sqrt 4
    assert b10.nregret_hi - b10.nregret_lo == pytest.approx(b1.nregret_hi - b1.nregret_lo, rel=0.15)


def test_hierarchical_bootstrap_resamples_experiments_then_seeds():
    draws = hierarchical_bootstrap([np.array([0.0, 0.0]), np.array([1.0, 1.0, 1.0, 1.0])], n=4000)
    assert draws.shape == (4000, 2, 4)
    assert not np.isnan(draws).any()  # padding of the shorter experiment is never drawn
    assert draws.mean() == pytest.approx(0.5, abs=0.02)  # experiments weigh equally
    assert set(np.unique(draws.mean(axis=(1, 2)))) == {0.0, 0.5, 1.0}  # whole experiments drawn


def test_interquartile_mean_resists_a_diverged_run():
    rows = [_summary("a", "e1", s, v) for s, v in enumerate([0.1, 0.2, 0.3, 0.2, 0.1, 0.3, 0.2, 90.0])]
    row = leaderboard(episodes_frame(rows)).iloc[0]
    assert row.nregret_mean > 11 and row.nregret_median == 0.2
    assert row.nregret_iqm == pytest.approx(0.225)  # the middle half: 0.2, 0.2, 0.2, 0.3


def test_win_rate_against_the_centroid_floor():
    rows = [_summary("centroid", "e1", s, 0.5) for s in range(4)]
    rows += [_summary("a", "e1", s, v) for s, v in enumerate([0.1, 0.5, 0.9, 0.2])]
    board = leaderboard(episodes_frame(rows)).set_index("method")
    assert board.loc["a", "win_vs_centroid"] == pytest.approx((1 + 0.5 + 0 + 1) / 4)
    assert np.isnan(board.loc["centroid", "win_vs_centroid"])


def test_regret_figures_for_trial_and_cost_suites(tmp_path):
    from bench.plots import regret_figure, save

    rows = [_summary(m, "e1", s, v) for m, s, v in (("a", 0, 0.2), ("a", 1, 0.4), ("b", 0, 0.1))]
    cost = [{**r, "key": {**r["key"], "suite": "c", "budget_kind": "cost", "budget": b}}
            for r in rows for b in (1, 2)]
    ep = episodes_frame(rows + cost)
    for suite in ("s", "c"):
        png, pdf = save(regret_figure(ep, suite), tmp_path, f"regret_{suite}")
        assert png.name == f"regret_{suite}.png" and png.stat().st_size > 5_000 and pdf.is_file()
    assert regret_figure(ep, "none") is None
