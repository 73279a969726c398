"""`bench report` and the figures: panels and series from a small real run, the critical
difference against a hand computation, and the report's numbers against the leaderboard's."""

import re
import subprocess
import sys

import numpy as np
import pandas as pd
import PIL.Image
import pytest
from scipy.stats import chi2
from typer.testing import CliRunner

from bench import plots
from bench.cli import app
from bench.episode import run_episode
from bench.errors import BenchError
from bench.gym.registry import load_task
from bench.gym.suites import load_suite
from bench.methods import method, methods
from bench.metrics import (
    ALL_TASKS,
    across_tasks,
    critical_difference,
    discrimination,
    episodes_frame,
    experiment_scores,
    identical,
    leaderboard,
    near_optimum,
    near_threshold,
    rank_curves,
)
from bench.report import (
    board_view,
    cd_results,
    headline_table,
    identical_note,
    load_episodes,
    missing_note,
    suite_ranks,
    target_proposals,
    write_report,
)
from bench.runner import plan
from bench.scores import Scorer
from bench.store import EpisodeKey, Store
from bench.summary import EpisodeSummary

TASKS = ["data_mixture", "grpo", "sft_lora"]  # grpo is simulated
METHODS = ["random", "centroid", "best-prior"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """The quick suite (2 experiments per task, T in {1, 5}, 2 seeds) for three cheap methods on
    three tasks, plus `quick-gap1000` at T=1 on data_mixture (a second extrapolation distance: only
    the 1M runs left in the prior), run in-process."""
    out = tmp_path_factory.mktemp("runs")
    store = Store(out)
    quick = load_suite("quick")
    gap = quick.model_copy(update={"gap": 1000, "name": "quick-gap1000", "budgets": [1]})
    for suite, tasks in ((quick, TASKS), (gap, ["data_mixture"])):
        for ref, key in plan(suite, tasks, METHODS, store).todo:
            run_episode(key, load_task(ref), method(key.method), store, suite.prior_for(key.task))
    return out


@pytest.fixture(scope="module")
def ep(runs):
    return episodes_frame(Store(runs).summaries())


def summary(key: dict, best: float, pool=(0.0, 0.5, 1.0, 2.0, 4.0), budget_gpu_hours=1.0,
            gpu_hours=1.0) -> dict:
    """A summary as `bench.episode` writes it, scored by `Scorer.episode` on `pool` (optimum 0,
    median 1, worst 4: nregret = the value)."""
    length = int(key["budget"]) if key["budget_kind"] == "trials" else None
    return EpisodeKey(**key), EpisodeSummary(
        best=best, recommend_value=best, curve=[best], gpu_hours=gpu_hours,
        budget_gpu_hours=budget_gpu_hours, trials=1, pool_size=len(pool),
        scores=Scorer(list(pool), "minimize").episode(best, [best], length=length))


def lines(ax):
    return [line for line in ax.get_lines() if not line.get_label().startswith("_")]


def visible(fig):
    return [ax for ax in fig.axes if ax.get_visible()]


def test_method_styles_are_fixed_and_tell_methods_apart():
    names = list(methods())
    styles = [plots.method_style(m) for m in names]
    assert plots.method_style("random") == styles[0] == plots.method_style("random")
    assert len({str(s["color"]) for s in styles[:24]}) == min(24, len(names))
    assert len({(s["marker"], s["linestyle"]) for s in styles[:28]}) == min(28, len(names))
    assert plots.method_style("openai:some-model") == plots.method_style("openai:some-model")


def test_regret_rank_and_near_optimum_figures_have_a_panel_per_task_and_a_line_per_method(runs, ep):
    quick = ep[ep.suite == "quick"]
    fig = plots.regret_figure(quick, "quick")
    assert [ax.get_title() for ax in visible(fig)] == ["data_mixture", "grpo (simulated)", "sft_lora"]
    assert all(len(lines(ax)) == 3 for ax in visible(fig))
    x = lines(visible(fig)[0])[0].get_xdata()
    assert list(x) == [1, 2, 3, 4, 5]  # the anytime curve of the T=5 episodes
    assert visible(fig)[0].get_ylabel().startswith("pregret") and "pregret" in fig.texts[0].get_text()
    line = lines(visible(fig)[0])[0]  # the first method on data_mixture: its T=5 curves' mean
    episodes = quick[(quick.task == "data_mixture") & (quick.budget == 5)
                     & (quick.method == line.get_label())]
    nfig = plots.regret_figure(quick, "quick", "nregret")
    for name, y in (("pregret", line.get_ydata()), ("nregret", lines(visible(nfig)[0])[0].get_ydata())):
        assert y == pytest.approx(np.array(episodes[f"{name}_curve"].tolist()).mean(axis=0))
    assert visible(nfig)[0].get_yscale() == "symlog" and visible(fig)[0].get_yscale() == "linear"

    ranks = suite_ranks(quick)
    fig = plots.rank_figure(ranks, "quick", {"grpo"})
    assert [ax.get_title() for ax in visible(fig)] == [
        "data_mixture", "grpo (simulated)", "sft_lora", "all tasks (mean of per-task ranks)"]
    assert all(len(lines(ax)) == 3 for ax in visible(fig))
    assert "pregret" in visible(fig)[0].get_ylabel()
    # the `all` panel at the last trial: the mean of the per-task ranks, as across_tasks has it
    last = ranks[(ranks.task == ALL_TASKS) & (ranks.trial == 5)].set_index("method").rank_mean
    across = across_tasks(quick).query("budget == 5").set_index("method").rank_mean
    assert last.sort_index().to_numpy() == pytest.approx(across.sort_index().to_numpy())

    shares = near_optimum(target_proposals(Store(runs), quick, {t: load_task(t) for t in TASKS}))
    fig = plots.near_optimum_figure(shares, "quick", {"grpo"})
    assert len(visible(fig)) == 3 and all(len(ax.patches) == 3 for ax in visible(fig))
    # each of the 2 x 2 T=5 episodes per (task, method) proposes 5 target candidates
    assert (shares.proposals == 20).all() and shares.near_share.between(0, 1).all()
    assert (shares.uniform >= 0.1).all()


def test_cd_extrapolation_discrimination_and_landscape_figures(ep):
    quick = ep[ep.suite == "quick"]
    results = cd_results(quick)  # 6 experiments (2 per task), 3 methods, per budget
    assert [(b, n, left) for b, _, n, left in results] == [(1, 6, []), (5, 6, [])]
    fig = plots.cd_figure(results, "quick")
    assert len(fig.axes) == 2
    labels = {t.get_text() for t in fig.axes[0].texts}
    assert set(METHODS) <= labels and "CD" in labels
    assert "mean rank on pregret" in fig.texts[0].get_text()
    # the blocks are the chosen metric's experiment means
    assert experiment_scores(quick[quick.budget == 1], "nregret")[0].to_numpy().max() > 1  # unbounded
    assert [n for _, _, n, _ in cd_results(quick, "nregret")] == [6, 6]

    for metric in ("pregret", "nregret"):
        fig = plots.extrapolation_figure(ep, metric)  # quick and quick-gap1000 on data_mixture
        assert [ax.get_title() for ax in visible(fig)] == ["data_mixture"]
        assert len(lines(visible(fig)[0])) == 3
        assert all(len(line.get_xdata()) == 2 for line in lines(visible(fig)[0]))
        assert visible(fig)[0].get_ylabel() == f"{metric} at T=1"

    fig = plots.discrimination_figure(discrimination(leaderboard(quick), "pregret"), "quick")
    assert fig.axes[0].images[0].get_array().shape == (3, 2)  # tasks x budgets
    assert "by pregret" in fig.axes[0].get_title()

    task = load_task("sft_lora")
    fig = plots.landscape_figure(task)
    assert len(visible(fig)) == 1 + len(task.space)  # distance, then lr and lora_rank
    assert len(lines(visible(fig)[0])) == len(task.split("test"))  # train experiments unlabelled


def test_cost_regret_is_drawn_against_the_gpu_hours_spent():
    rows = []
    for budget, spent in ((1, 1.0), (2, 1.5)):  # target runs' worth: budget 2 leaves 0.5 unspent
        key = {"suite": "c", "task": "t", "method": "random", "experiment": "e", "budget_kind": "cost",
               "budget": budget, "seed": 0}
        rows.append(summary(key, 0.5, gpu_hours=10.0 * spent, budget_gpu_hours=10.0 * budget))
    for metric, y in (("pregret", 0.2), ("nregret", 0.5)):  # one of five candidates is better
        fig = plots.regret_figure(episodes_frame(rows), "c", metric)
        assert list(lines(fig.axes[0])[0].get_xdata()) == [1.0, 1.5]  # target runs' worth spent
        assert list(lines(fig.axes[0])[0].get_ydata()) == pytest.approx([y, y])
        assert "GPU-hours spent" in fig.axes[0].get_xlabel() and fig.axes[0].get_ylabel().startswith(metric)


def test_critical_difference_matches_a_hand_computed_friedman_test():
    scores = pd.DataFrame({"a": [0.1, 0.1, 0.2, 0.1, 0.1, 0.3], "b": [0.2, 0.3, 0.1, 0.2, 0.2, 0.1],
                           "c": [0.3, 0.2, 0.3, 0.3, 0.3, 0.2]})
    # ranks per row (1 = lowest): a 1,1,2,1,1,3; b 2,3,1,2,2,1; c 3,2,3,3,3,2 -> sums 9, 11, 16
    n, k = 6, 3
    statistic = 12 / (n * k * (k + 1)) * (9**2 + 11**2 + 16**2) - 3 * n * (k + 1)  # = 13/3
    result = critical_difference(scores)
    assert result.rankdf.index.tolist() == ["a", "b", "c"]
    assert result.rankdf.meanrank.tolist() == pytest.approx([9 / 6, 11 / 6, 16 / 6])
    assert result.pvalue == pytest.approx(chi2.sf(statistic, k - 1)) and statistic == pytest.approx(13 / 3)
    # Nemenyi: q_0.05 = 2.343 for k = 3 (Demsar 2006, table 5), CD = q sqrt(k (k + 1) / (6 n))
    assert result.cd == pytest.approx(2.343 * np.sqrt(k * (k + 1) / (6 * n)), abs=1e-3)


def test_experiment_scores_average_common_seeds_and_drop_incomplete_methods():
    def row(m, exp, seed, v, task="t"):
        return summary({"suite": "s", "task": task, "method": m, "experiment": exp, "budget_kind": "trials",
                        "budget": 1, "seed": seed}, v)
    rows = [row("a", "e1", 0, 0.2), row("a", "e1", 1, 0.6), row("a", "e1", 2, 0.9),  # seed 2: a only
            row("b", "e1", 0, 0.1), row("b", "e1", 1, 0.3), row("a", "e2", 0, 3.0, task="u")]
    ep = episodes_frame(rows)
    scores, left_out = experiment_scores(ep, "nregret")
    assert left_out == ["b"]  # not run on task u
    assert scores.loc[("t", "e1"), "a"] == pytest.approx(0.4)  # seeds 0 and 1, those b has too
    assert scores.loc[("u", "e2"), "a"] == pytest.approx(3.0)
    scores, _ = experiment_scores(ep)  # pregret: 0.2 has one candidate of five better, 0.6 two, 3.0 four
    assert scores.loc[("t", "e1"), "a"] == pytest.approx((0.2 + 0.4) / 2)
    assert scores.loc[("u", "e2"), "a"] == pytest.approx(0.8)


@pytest.mark.parametrize("metric", ["pregret", "nregret"])
def test_rank_curves_end_at_the_leaderboard_rank(ep, metric):
    board = leaderboard(ep, metric).set_index(["suite", "task", "budget", "method"]).rank_mean
    ranks = rank_curves(ep, metric)
    last = ranks[ranks.trial == ranks.budget].set_index(["suite", "task", "budget", "method"]).rank_mean
    assert len(last) == len(board)
    assert last.sort_index().to_numpy() == pytest.approx(board.sort_index().to_numpy())


def test_near_optimum_share_by_hand():
    assert near_threshold(np.arange(10.0), "minimize") == 0.0  # the best 10% of 10: one candidate
    assert near_threshold(np.arange(25.0), "minimize") == 2.0  # ceil(2.5) = 3 candidates
    assert near_threshold(np.arange(25.0), "maximize") == 22.0
    proposals = pd.DataFrame({"suite": "s", "task": "t", "method": "m", "direction": "minimize",
                              "experiment": ["e1", "e1", "e1", "e2"], "value": [0.0, 1.0, 0.0, 5.0],
                              "threshold": [0.0, 0.0, 0.0, 2.0], "uniform": [0.1, 0.1, 0.1, 0.12]})
    row = near_optimum(proposals).iloc[0]
    assert row.near_share == pytest.approx((2 / 3 + 0) / 2)  # experiments weigh equally
    assert row.proposals == 4 and row.uniform == pytest.approx(0.11)


def _report_rows(md: str, suite: str, task: str) -> pd.DataFrame:
    """The leaderboard table under `### task` of `## Suite suite` in report.md."""
    section = md.split(f"## Suite {suite}\n", 1)[1].split("\n## ", 1)[0]
    block = re.split(rf"\n### {re.escape(task)}(?: — ⚠ SIMULATED)?\n", section)[1].split("\n### ", 1)[0]
    table = [line.strip("| ").split(" | ") for line in block.strip().splitlines() if line.startswith("|")]
    return pd.DataFrame(table[2:], columns=table[0])


def _numbers(cell: str) -> list[float]:
    return [float(x) for x in re.findall(r"[-+0-9.e]+", cell)]


def test_report_numbers_equal_the_leaderboard(runs, ep, tmp_path):
    cli = CliRunner()
    result = cli.invoke(app, ["leaderboard", "--runs", str(runs)])
    assert result.exit_code == 0, result.output
    rep = tmp_path / "report"
    result = cli.invoke(app, ["report", "--runs", str(runs), "--out", str(rep), "--suite", "quick"])
    assert result.exit_code == 0, result.output
    board = pd.read_csv(runs / "leaderboard.csv")
    pd.testing.assert_frame_equal(pd.read_csv(rep / "leaderboard.csv"), board)  # one computation
    assert set(board.metric) == {"pregret"}

    md = (rep / "report.md").read_text()
    quick = board[board.suite == "quick"]
    for task, sub in quick.groupby("task"):
        shown = _report_rows(md, "quick", task).set_index(["method", "budget"])
        assert len(shown) == len(sub)
        for r in sub.itertuples():
            cells = shown.loc[(r.method, f"{r.budget:g}")]
            assert _numbers(cells["pregret mean [interval]"]) == pytest.approx(
                [r.pregret_mean, r.pregret_lo, r.pregret_hi], rel=5e-3, abs=1e-12)
            assert _numbers(cells["IQM [interval]"]) == pytest.approx(
                [r.pregret_iqm, r.pregret_iqm_lo, r.pregret_iqm_hi], rel=5e-3, abs=1e-12)
            assert cells["interval"] == "range of 2 exps"  # quick: 2 test experiments per task
            assert float(cells["nregret mean"]) == pytest.approx(r.nregret_mean, rel=5e-3, abs=1e-12)
            assert float(cells["rank"]) == pytest.approx(r.rank_mean, abs=0.005)
            assert cells["diverged"] == f"{r.diverged_rate:.0%}"
            assert int(cells["episodes"]) == r.episodes and int(cells["failed"]) == r.failed
    overall = pd.read_csv(rep / "leaderboard_overall.csv")
    expected = across_tasks(ep[ep.suite == "quick"])
    pd.testing.assert_frame_equal(overall, expected, check_dtype=False)
    assert set(overall.task) == {"all"} and overall.episodes.sum() == (ep.suite == "quick").sum()
    per_task = quick.groupby(["budget", "method"])[["pregret_mean", "rank_mean"]].mean()
    for r in overall.itertuples():  # each task weighs once
        assert r.mean == pytest.approx(per_task.loc[(r.budget, r.method), "pregret_mean"])
        assert r.rank_mean == pytest.approx(per_task.loc[(r.budget, r.method), "rank_mean"])
    shown = _report_rows(md, "quick", "All tasks, each weighed once (mean of per-task means, mean of "
                         "per-task ranks); includes simulated grpo").set_index(["method", "budget"])
    for r in overall.itertuples():
        cells = shown.loc[(r.method, f"{r.budget:g}")]
        assert _numbers(cells["pregret mean of task means [interval]"]) == pytest.approx(
            [r.mean, r.lo, r.hi], rel=5e-3, abs=1e-12)
        assert cells["interval"] == "range of 6 exps in 3 tasks"  # 2 experiments a task: a range
    assert "range of n exps" in md and "not a confidence statement" in md  # the legend says it

    assert "### grpo — ⚠ SIMULATED" in md and "### data_mixture — ⚠" not in md
    assert md.index("### data_mixture") < md.index("### All tasks, each weighed once")  # per task first
    page = (rep / "report.html").read_text()
    pngs = sorted((rep / "figures").glob("*.png"))
    assert {p.stem for p in pngs} == {"regret_quick", "rank_quick", "cd_quick", "near_optimum_quick",
                                      "discrimination_quick", "extrapolation", "landscape_data_mixture",
                                      "landscape_grpo", "landscape_sft_lora"}
    assert all(p.with_suffix(".pdf").is_file() for p in pngs)
    assert {PIL.Image.open(p).mode for p in pngs} == {"P"}  # palette PNGs: a third of full colour's size
    linked = re.findall(r'<img alt="[^"]+" src="([^"]+)">', page)
    assert sorted(linked) == [f"figures/{p.name}" for p in pngs] and "base64" not in page
    assert '<span class="sim">SIMULATED</span>' in page

    tex = (rep / "table_quick.tex").read_text()
    assert "mean pregret" in tex
    t1 = quick[quick.budget == 1].set_index(["task", "method"]).pregret_mean
    for task in TASKS:  # the best method of each column is bold, and only it (T=1 and T=5)
        assert f"\\textbf{{{t1[task].min():.3f}}}" in tex
    columns = pd.concat([quick, expected.rename(columns={"mean": "pregret_mean"})])
    assert tex.count("\\textbf") == sum((g.pregret_mean == g.pregret_mean.min()).sum()
                                         for _, g in columns.groupby(["task", "budget"]))


def test_board_view_says_what_each_interval_rests_on(ep):
    quick = ep[(ep.suite == "quick") & (ep.task == "data_mixture")]
    few = leaderboard(quick, "nregret")
    view = board_view(few, "nregret")
    assert view.columns[2] == "nregret mean [interval]" and "pregret mean" in view.columns
    assert set(view.interval) == {"range of 2 exps"}
    many = few.assign(experiments=12, few_experiments=False)
    assert set(board_view(many, "nregret").interval) == {"95%, 12 exps"}
    compact = board_view(few, "nregret", compact=True)
    assert {"cells", "pool", "pregret mean"}.isdisjoint(compact.columns) and "IQM" in compact.columns
    with pytest.raises(BenchError, match="unknown metric 'foo'"):
        board_view(few, "foo")


@pytest.mark.slow
def test_report_on_nregret(runs, tmp_path):
    rep = tmp_path / "report"
    result = CliRunner().invoke(app, ["report", "--runs", str(runs), "--out", str(rep), "--suite", "quick",
                                      "--metric", "nregret"])
    assert result.exit_code == 0, result.output
    board = pd.read_csv(rep / "leaderboard.csv")
    assert set(board.metric) == {"nregret"} and set(pd.read_csv(rep / "leaderboard_overall.csv").metric) == {
        "nregret"}
    md = (rep / "report.md").read_text()
    assert "Headline: nregret at" in md and "nregret mean [interval]" in md and "nregret: the gap" in md
    assert "mean nregret" in (rep / "table_quick.tex").read_text()


def test_report_bad_input_is_one_line_exit_2(runs, tmp_path):
    r = subprocess.run([sys.executable, "-c", "from bench.cli import main; main()", "report",
                        "--runs", str(tmp_path / "empty"), "--out", str(tmp_path / "rep")],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "no completed episodes under" in r.stderr
    assert "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1
    with pytest.raises(BenchError, match="no episodes of suite nosuch in the results; they hold: quick"):
        write_report(runs, tmp_path / "rep", "nosuch")


def test_a_cost_suite_headline_writes_its_budgets_as_cost_not_trials():
    board = pd.DataFrame({"suite": "cost", "task": ["a", "a", "b"], "method": ["m", "m", "m"],
                          "budget_kind": "cost", "budget": [1.0, 5.0, 1.0], "pregret_mean": [0.5, 0.2, 0.4],
                          "simulated": False})
    overall = pd.DataFrame({"suite": ["cost"], "task": ["all"], "method": ["m"], "budget": [1.0],
                            "mean": [0.45]})
    assert {b for _, b in headline_table(board, overall, "cost").columns} == {"C=1", "C=5"}
    missing = pd.DataFrame({"suite": ["cost"], "budget_kind": ["cost"], "budget": [5.0], "method": ["m"],
                            "ran": [1], "of": [2], "missing": ["b"]})
    assert "(1 of 2 tasks, not b; C=5)" in missing_note(missing, "cost")


def test_an_ablation_is_left_out_of_the_missing_tasks_note_whoever_else_lacks_a_task():
    """The policy ran every task, its ablation one of two: the note names only random, also
    short, never the ablation, although the policy itself is not among the rows."""
    missing = pd.DataFrame({"suite": "cv", "budget_kind": "trials", "budget": [1.0, 1.0],
                            "method": ["autollmresearch-no-rl", "random"], "ran": 1, "of": 2,
                            "missing": "b"})
    note = missing_note(missing, "cv")
    assert "random (1 of 2 tasks" in note and "no-rl" not in note
    assert missing_note(missing[missing.method != "random"], "cv") is None


def test_report_compares_a_preset_s_variants_with_it(tmp_path):
    """optuna-tpe-warm (a variant of optuna-tpe) gains 0.4 on arxiv and ties on github: -0.2 [-0.4, 0],
    two experiments (a range); random is no variant and is not in the section or variants.csv."""
    store = Store(tmp_path / "runs")
    for exp, (base, warm) in {"arxiv": (1.0, 0.0), "github": (2.0, 2.0)}.items():
        for seed in (0, 1):
            for name, value in (("optuna-tpe", base), ("optuna-tpe-warm", warm), ("random", 4.0)):
                key, s = summary(dict(suite="quick", task="data_mixture", method=name, experiment=exp,
                                      budget_kind="trials", budget=1, seed=seed), value)
                store.open_log(key).close()
                store.complete(key, s)
    written = write_report(tmp_path / "runs", tmp_path / "rep", say=lambda _: None)
    section = (tmp_path / "rep" / "report.md").read_text().split("## Variants against their preset\n")[1]
    assert "### Variants of optuna-tpe\n" in section and "random" not in section
    assert "| data_mixture | optuna-tpe-warm | -0.200 [-0.400, +0.000]† |" in section
    rows = pd.read_csv(tmp_path / "rep" / "variants.csv")
    assert tmp_path / "rep" / "variants.csv" in written
    assert rows[["method", "against", "diff", "cells"]].values.tolist() == [
        ["optuna-tpe-warm", "optuna-tpe", pytest.approx(-0.2), 4]]
    shown = CliRunner().invoke(app, ["leaderboard", "--runs", str(tmp_path / "runs")], terminal_width=250)
    assert shown.exit_code == 0 and "variants of optuna-tpe" in shown.output
    assert "-0.200 [-0.400, +0.000]†" in shown.output


def test_identical_note_names_each_set_once_with_its_tasks():
    same = pd.DataFrame([("cv", t, "trials", b, m) for t, b, m in (
        ("t1", 1.0, ("a", "b")), ("t2", 1.0, ("a", "b")), ("t1", 3.0, ("c", "d")), ("t1", 5.0, ("a", "e")))],
        columns=["suite", "task", "budget_kind", "budget", "methods"])
    board = pd.DataFrame({"suite": "cv", "task": ["t1", "t2", "t1", "t2"], "budget": [1.0, 1.0, 3.0, 3.0],
                          "method": "a"})
    note = identical_note(same, board, "cv")
    assert note.endswith("T=1: a = b (every task); T=3: c = d (t1).")  # T=5 is no headline budget
    assert identical_note(same, board, "paper") is None


def test_an_ablation_stays_out_of_the_paper_tables_and_is_compared_in_variants(tmp_path):
    """The policy's ablation (a preset `--method all` does not run) beats both methods: the
    paper-layout table and its notes leave it out, the leaderboard ranks it apart, Variants has it."""
    store = Store(tmp_path / "runs")
    for exp in ("arxiv", "github"):
        for seed in (0, 1):
            for name, value in (("autollmresearch", 1.0), ("autollmresearch-no-rl", 0.0),
                                ("autollmresearch-no-xfid", 0.0), ("random", 4.0)):
                key, s = summary(dict(suite="quick", task="data_mixture", method=name, experiment=exp,
                                      budget_kind="trials", budget=1, seed=seed), value + seed / 2)
                store.open_log(key).close()
                store.complete(key, s)
    write_report(tmp_path / "runs", tmp_path / "rep", say=lambda _: None)
    same = identical(load_episodes(tmp_path / "runs")).methods.tolist()
    assert same == [("autollmresearch-no-rl", "autollmresearch-no-xfid")]  # not named under the table
    table = (tmp_path / "rep" / "table_quick.md").read_text()
    assert "| autollmresearch |" in table and "no-rl" not in table  # nor in the note of identical scores
    board = pd.read_csv(tmp_path / "rep" / "leaderboard.csv").set_index("method").rank_mean
    assert board.to_dict() == {"autollmresearch": 1.0, "autollmresearch-no-rl": 1.0,
                               "autollmresearch-no-xfid": 1.0, "random": 2.0}
    section = (tmp_path / "rep" / "report.md").read_text().split("## Variants against their preset\n")[1]
    assert "| data_mixture | autollmresearch-no-rl |" in section
