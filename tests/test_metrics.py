import dataclasses
import json

import numpy as np
import pytest

from bench.episode import run_episode
from bench.errors import BenchError
from bench.methods import MethodSpec
from bench.metrics import (
    ACROSS_COLS,
    ALL_TASKS,
    across_tasks,
    differences,
    episodes_frame,
    experiment_scores,
    hierarchical_bootstrap,
    identical,
    leaderboard,
    missing_tasks,
    rank_curves,
    unpaired,
)
from bench.scores import Scorer
from bench.store import EpisodeKey, Store
from bench.summary import EpisodeSummary


def scripted(lrs):
    return MethodSpec(name="scripted", cls="tests.helpers:Scripted", family="test", params={"lrs": lrs})


def test_scores_on_hand_made_table(tiny_task, tmp_path):
    # Experiment b, target pool (lr -> loss): 1e-4 3.4, 3e-4 3.1, 1e-3 3.0, 3e-3 3.6.
    key = EpisodeKey("s", "tiny", "scripted", "b", "trials", 3, 0)
    store = Store(tmp_path)
    summary = run_episode(key, tiny_task, scripted([3e-3, 2.9e-4, 3e-3]), store)
    scorer = tiny_task.scorer("b")
    assert scorer.optimum == pytest.approx(3.0) and scorer.median == pytest.approx(3.25)
    assert summary.curve == pytest.approx([3.6, 3.1, 3.1])  # best so far; re-ask costs a trial
    trials = [json.loads(line) for line in store.trial_log(key).read_text().splitlines()]
    assert [t["snapped"] for t in trials] == [False, True, False]
    assert trials[1]["config"]["lr"] == pytest.approx(3e-4) and trials[1]["asked"]["lr"] == 2.9e-4
    ep = episodes_frame(store.summaries())
    assert ep.pregret.iloc[0] == pytest.approx(1 / 4)  # only 3.0 is better than 3.1
    assert ep.pregret_curve.iloc[0] == pytest.approx([3 / 4, 1 / 4, 1 / 4])
    assert ep.regret.iloc[0] == pytest.approx(0.1)
    assert ep.nregret.iloc[0] == pytest.approx(0.1 / 0.25)
    assert ep.nregret_curve.iloc[0] == pytest.approx([2.4, 0.4, 0.4])
    assert not ep.diverged.iloc[0]


def test_pregret_of_a_hand_built_pool_ties_count_as_not_better():
    pool = [3.0, 2.0, 2.0, 5.0, 1.0]
    low = Scorer(pool, "minimize")
    assert low.pregret(1.0) == 0.0  # the optimum
    assert low.pregret(2.0) == pytest.approx(1 / 5)  # 1.0 is better; the other 2.0 ties, not better
    assert low.pregret(2.5) == pytest.approx(3 / 5)
    assert low.pregret(5.0) == pytest.approx(4 / 5)  # the worst: all but itself are better
    high = Scorer(pool, "maximize")
    assert high.pregret(5.0) == 0.0 and high.pregret(2.0) == pytest.approx(2 / 5)
    assert high.pregret(1.0) == pytest.approx(4 / 5)


def test_regret_direction_and_degenerate_pools():
    high = Scorer([0.9, 0.5, 0.1], "maximize")
    assert high.regret(0.7) == pytest.approx(0.2)
    assert high.nregret(0.7) == pytest.approx(0.5)  # 0.2 / |0.5 - 0.9|
    assert Scorer([1.0, 1.0, 1.0], "minimize").nregret(1.0) == 0.0  # every candidate ties: finite
    assert Scorer([0.0, 0.0, 0.0, 4.0], "minimize").nregret(2.0) == pytest.approx(0.5)  # scale: worst


# optimum 0, median 1, worst 4: nregret equals the value; pregret = (# of POOL below the value) / 9
POOL = [0.0, 0.25, 0.5, 0.75, 1.0, 2.0, 3.0, 3.5, 4.0]


def _summary(method, exp, seed, best, budget=5, failed=None, diverged=False, task="t"):
    """A summary as `bench.episode` writes it: its scores from `Scorer.episode` on POOL."""
    curve = [best] if best is not None else []
    key = EpisodeKey("s", task, method, exp, "trials", budget, seed)
    return key, EpisodeSummary(
        best=best, recommend_value=best, curve=curve, failed=failed, gpu_hours=10.0, budget_gpu_hours=20.0,
        ask_seconds=0.1, trials=budget, pool_size=9,
        scores=Scorer(POOL, "minimize").episode(best, curve, failed is not None, diverged, budget))


def test_leaderboard_mean_interval_and_rank():
    rows = [_summary("a", "e1", 0, 0.2), _summary("a", "e1", 1, 0.4),
            _summary("b", "e1", 0, 0.1), _summary("b", "e1", 1, 0.8)]
    ep = episodes_frame(rows)
    board = leaderboard(ep, "nregret").set_index("method")
    assert set(board.metric) == {"nregret"}
    assert board.loc["a", "nregret_mean"] == pytest.approx(0.3)
    # one experiment: the bootstrap resamples its two seeds, so the mean's s.d. is about
    # std(0.2, 0.4, ddof=0) / sqrt 2 = 0.0707
    assert board.loc["a", "nregret_sem"] == pytest.approx(0.0707, abs=0.005)
    assert board.loc["a", "nregret_lo"] == pytest.approx(0.2) and board.loc["a", "nregret_hi"] == 0.4
    assert board.loc["a", "rank_mean"] == pytest.approx(1.5)  # on nregret: 2nd on seed 0, 1st on seed 1
    assert board.loc["b", "rank_mean"] == pytest.approx(1.5)
    assert board.loc["a", "episodes"] == 2 and board.loc["a", "failed"] == 0
    assert board.loc["a", "pool_size"] == 9 and board.loc["a", "budget_spent"] == 0.5
    assert board.loc["a", "experiments"] == 1 and board.loc["a", "few_experiments"]

    # the default ranks on pregret: 0.2 and 0.1 both have one candidate (0) better: a tie on seed 0
    board = leaderboard(ep).set_index("method")
    assert set(board.metric) == {"pregret"}
    assert board.loc["a", "pregret_mean"] == pytest.approx((1 / 9 + 2 / 9) / 2)
    assert board.loc["b", "pregret_mean"] == pytest.approx((1 / 9 + 4 / 9) / 2)
    assert board.loc["a", "rank_mean"] == pytest.approx(1.25) and board.loc["b", "rank_mean"] == 1.75
    assert board.loc["a", "nregret_mean"] == pytest.approx(0.3)  # both metrics in every board
    assert {"task", "method", "budget", "pregret_mean", "pregret_lo", "pregret_hi", "nregret_mean",
            "nregret_sem", "rank_mean", "episodes", "experiments", "few_experiments",
            "diverged_rate"} <= set(board.reset_index().columns)


def test_unknown_metric_and_old_summaries_are_user_errors():
    ep = episodes_frame([_summary("a", "e1", 0, 0.2)])
    for call in (leaderboard, across_tasks):
        with pytest.raises(BenchError, match="unknown metric 'regret'; known: pregret, nregret"):
            call(ep, "regret")
    old = {k: v for k, v in _summary("a", "e1", 0, 0.2)[1].to_json().items() if k != "scores"}
    with pytest.raises(BenchError, match="older version of the benchmark"):
        EpisodeSummary.from_json(old)


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


def test_an_ablation_is_ranked_apart_and_moves_no_other_rank():
    """The policy beats random on every cell; its ablations (presets `--method all` does not run)
    beat both, and `no-rl` ran seeds 0-1 of 0-3. Each is ranked among the others and itself."""
    rows = [_summary(m, "e1", s, best) for m, best in [("autollmresearch", 0.3), ("random", 2.0)]
            for s in range(4)]
    alone = leaderboard(episodes_frame(rows)).set_index("method")
    rows += [_summary("autollmresearch-no-xfid", "e1", s, 0.1) for s in range(4)]
    rows += [_summary("autollmresearch-no-rl", "e1", s, 0.1) for s in range(2)]
    ep = episodes_frame(rows)
    board = leaderboard(ep).set_index("method")
    for method in ["autollmresearch", "random"]:
        assert board.loc[method, ["rank_mean", "rank_cells"]].tolist() == \
            alone.loc[method, ["rank_mean", "rank_cells"]].tolist()
    assert board.loc["autollmresearch", ["rank_mean", "rank_cells"]].tolist() == [1.0, 4]
    assert board.loc["autollmresearch-no-xfid", ["rank_mean", "rank_cells"]].tolist() == [1.0, 4]
    assert board.loc["autollmresearch-no-rl", ["rank_mean", "rank_cells"]].tolist() == [1.0, 2]
    assert unpaired(ep).empty  # every reported method has all the cells of its own ranking
    curves = rank_curves(ep).set_index("method")
    assert curves.rank_mean.to_dict() == board.rank_mean.to_dict()  # one trial: the curve ends at the rank
    scores, left_out = experiment_scores(ep)
    assert sorted(scores.columns) == ["autollmresearch", "random"] and left_out == []


def test_failed_episode_scores_the_worst_candidate_and_is_counted():
    rows = [_summary("a", "e1", 0, 0.1, failed="RuntimeError: boom"), _summary("a", "e1", 1, 0.1),
            _summary("b", "e1", 0, None, failed="no target observation"), _summary("b", "e1", 1, 0.3)]
    ep = episodes_frame(rows)
    assert ep.failed.tolist() == [True, False, True, False]
    assert ep.pregret.tolist() == pytest.approx([1.0, 1 / 9, 1.0, 2 / 9])  # failure: pregret 1
    assert ep.nregret.tolist() == [4.0, 0.1, 4.0, 0.3]  # worst candidate: (4 - 0) / (1 - 0)
    assert ep.pregret_curve.iloc[0] == [1.0] * 5 and ep.nregret_curve.iloc[0] == [4.0] * 5  # whole curve
    assert ep.nregret_curve.iloc[1] == [0.1] * 5  # a shorter curve keeps its best to the budget
    assert ep.pregret_curve.iloc[1] == pytest.approx([1 / 9] * 5)
    board = leaderboard(ep).set_index("method")
    assert board.failed.tolist() == [1, 1]
    assert board.loc["a", "pregret_mean"] == pytest.approx((1 + 1 / 9) / 2)
    assert board.loc["a", "nregret_mean"] == pytest.approx(2.05)
    assert not board.pregret_mean.isna().any() and not board.nregret_mean.isna().any()


def test_diverged_rate_is_the_share_of_episodes_whose_best_run_diverged():
    rows = [_summary("a", "e1", 0, 3.5, diverged=True), _summary("a", "e1", 1, 0.1),
            _summary("a", "e2", 0, 0.2), _summary("a", "e2", 1, 0.0, failed="boom", diverged=True)]
    ep = episodes_frame(rows)
    assert ep.diverged.tolist() == [True, False, False, False]  # a failure is not a divergence
    row = leaderboard(ep).iloc[0]
    assert row.diverged_rate == pytest.approx(1 / 4) and row.failed == 1


def test_across_tasks_weighs_each_task_once():
    """Task `big` has 10 experiments, `small` 2. `a` is best on big and worst on small, diverging
    there; `b` the reverse. A pool of the 12 experiments would favour `a`; each task weighed once,
    `b` is ahead, and both have mean rank 1.5 (1st on one task, 2nd on the other)."""
    rows = []
    for e in range(10):
        rows += [_summary("a", f"e{e}", 0, 0.0, task="big"), _summary("b", f"e{e}", 0, 0.5, task="big")]
    for e, a in (("x", 2.0), ("y", 1.0)):
        rows += [_summary("a", e, 0, a, task="small", diverged=True), _summary("b", e, 0, 0.0, task="small")]
    ep = episodes_frame(rows)
    across = across_tasks(ep)
    assert list(across.columns) == ACROSS_COLS and set(across.task) == {ALL_TASKS}
    row = across.set_index("method")
    small_a = (5 / 9 + 4 / 9) / 2  # 2.0: five candidates better; 1.0: four
    assert row.loc["a", "mean"] == pytest.approx((0 + small_a) / 2)  # not (10 * 0 + 2 * small_a) / 12
    assert row.loc["b", "mean"] == pytest.approx((2 / 9 + 0) / 2)
    assert across.method.tolist() == ["b", "a"]  # ranks tie at 1.5; then the lower mean
    assert row.loc["a", "rank_mean"] == 1.5 and row.loc["b", "rank_mean"] == 1.5
    assert row.loc["a", "diverged_rate"] == pytest.approx(0.5)  # (0 + 1) / 2, not 2 / 12
    assert row.loc["a", "tasks"] == 2 and row.loc["a", "experiments"] == 12 and row.loc["a", "episodes"] == 12
    # the interval: big's mean is 0 in every resample, small's between 4/9 and 5/9
    assert 4 / 18 - 1e-9 <= row.loc["a", "lo"] < row.loc["a", "hi"] <= 5 / 18 + 1e-9
    assert row.loc["b", "lo"] == pytest.approx(1 / 9) and row.loc["b", "hi"] == pytest.approx(1 / 9)
    board = leaderboard(ep).set_index(["task", "method"])
    assert not board.loc[("big", "a"), "few_experiments"] and board.loc[("small", "a"), "few_experiments"]
    nreg = across_tasks(ep, "nregret").set_index("method")
    assert set(nreg.metric) == {"nregret"} and nreg.loc["a", "mean"] == pytest.approx((0 + 1.5) / 2)


def test_across_tasks_leaves_out_a_method_that_lacks_a_task():
    """`c` ran only the easy task: a mean over it would put `c` ahead of methods that also faced the
    hard one, so `c` gets no all-tasks row and `missing_tasks` names what it lacks."""
    rows = []
    for e in ("e1", "e2"):
        rows += [_summary("a", e, 0, 0.5, task="easy"), _summary("c", e, 0, 0.0, task="easy"),
                 _summary("a", e, 0, 2.0, task="hard")]
    ep = episodes_frame(rows)
    across = across_tasks(ep)
    assert across.method.tolist() == ["a"] and across.tasks.tolist() == [2]
    missing = missing_tasks(ep)
    assert missing[["method", "ran", "of", "missing"]].values.tolist() == [["c", 1, 2, "hard"]]
    assert missing_tasks(ep[ep.method == "a"]).empty


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


def test_interquartile_mean_and_pregret_resist_a_diverged_run():
    rows = [_summary("a", "e1", s, v) for s, v in enumerate([0.1, 0.2, 0.3, 0.2, 0.1, 0.3, 0.2, 90.0])]
    row = leaderboard(episodes_frame(rows)).iloc[0]
    assert row.nregret_mean > 11 and row.nregret_median == 0.2
    assert row.nregret_iqm == pytest.approx(0.225)  # the middle half: 0.2, 0.2, 0.2, 0.3
    # pregret is bounded: 90 costs 1 (every candidate is better), 0.1 and 0.2 cost 1/9, 0.3 2/9
    assert row.pregret_mean == pytest.approx((1 + 1 + 2 + 1 + 1 + 2 + 1 + 9) / 9 / 8)
    assert row.pregret_median == pytest.approx(1 / 9)


def test_win_rate_against_the_centroid_floor():
    rows = [_summary("centroid", "e1", s, 0.5) for s in range(4)]
    rows += [_summary("a", "e1", s, v) for s, v in enumerate([0.1, 0.5, 0.9, 0.2])]
    board = leaderboard(episodes_frame(rows)).set_index("method")
    assert board.loc["a", "win_vs_centroid"] == pytest.approx((1 + 0.5 + 0 + 1) / 4)
    assert np.isnan(board.loc["centroid", "win_vs_centroid"])


def test_regret_figures_for_trial_and_cost_suites(tmp_path):
    from bench.plots import regret_figure, save

    rows = [_summary(m, "e1", s, v) for m, s, v in (("a", 0, 0.2), ("a", 1, 0.4), ("b", 0, 0.1))]
    cost = [(dataclasses.replace(key, suite="c", budget_kind="cost", budget=b), s)
            for key, s in rows for b in (1, 2)]
    ep = episodes_frame(rows + cost)
    for suite in ("s", "c"):
        for metric in ("pregret", "nregret"):
            fig = regret_figure(ep, suite, metric)
            assert fig.axes[0].get_ylabel().startswith(metric) and metric in fig.texts[0].get_text()
            png, pdf = save(fig, tmp_path, f"regret_{suite}_{metric}")
            assert png.stat().st_size > 5_000 and pdf.is_file()
    assert regret_figure(ep, "none") is None


def test_differences_pair_a_variant_with_its_preset_cell_by_cell():
    """variant - preset on the cells both have: e1 -1/9 on both seeds, e2 0 (a tie); a cell only
    the preset has is left out; a pair whose method did not run gives no row."""
    rows = [_summary("a", "e1", 0, 0.3), _summary("a", "e1", 1, 0.3), _summary("a", "e2", 0, 1.5),
            _summary("a", "e2", 1, 1.5), _summary("a", "e2", 2, 0.0),
            _summary("a-x", "e1", 0, 0.1), _summary("a-x", "e1", 1, 0.1), _summary("a-x", "e2", 0, 1.5),
            _summary("a-x", "e2", 1, 1.5), _summary("b", "e1", 0, 4.0)]
    diffs = differences(episodes_frame(rows), {"a-x": "a", "c": "a"})
    assert len(diffs) == 1
    r = diffs.iloc[0]
    assert (r.method, r.against, r.metric, r.suite, r.gaps) == ("a-x", "a", "pregret", "s", 0)
    assert r["diff"] == pytest.approx(-1 / 18) and (r.experiments, r.cells) == (2, 4)
    assert r.better == pytest.approx(0.75)  # 2 wins, 2 ties
    assert r.lo == pytest.approx(-1 / 9) and r.hi == pytest.approx(0.0)  # resampling the 2 experiments
    flipped = differences(episodes_frame(rows), {"a": "a-x"}).iloc[0]
    assert flipped["diff"] == pytest.approx(1 / 18) and flipped.better == pytest.approx(0.25)
    assert differences(episodes_frame(rows), {"a-x": "a"}, "nregret").iloc[0].metric == "nregret"


def test_identical_names_methods_with_the_same_scores_on_every_cell_unless_constant():
    """a and b score alike on every cell (e.g. one seeded draw): named; c and d both find the
    optimum everywhere: not named (no common draw is needed for that); e differs on one cell."""
    values = {"a": [0.3, 1.5, 2.0], "b": [0.3, 1.5, 2.0], "c": [0.0] * 3, "d": [0.0] * 3,
              "e": [0.3, 1.5, 3.0]}
    rows = [_summary(m, f"e{i}", 0, v) for m, vs in values.items() for i, v in enumerate(vs)]
    same = identical(episodes_frame(rows))
    assert same.methods.tolist() == [("a", "b")] and same.suite.tolist() == ["s"]
    assert identical(episodes_frame(rows[:3])).empty  # one method
