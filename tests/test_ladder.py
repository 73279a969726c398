"""Distance ladders (suite `ladder`, run as `<ladder>-gap<g>`): the per-distance means and the
headline per (task, method) against hand computations, the figure, the report section and the
leaderboard's headline table, from hand-built summaries scored by `Scorer.episode`."""


import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from bench import plots
from bench.cli import app
from bench.gym.suites import load_suite
from bench.metrics import differences, episodes_frame, ladder, leaderboard
from bench.report import ladder_table, variants_table, write_report
from bench.scores import Scorer
from bench.store import EpisodeKey, Store
from bench.summary import EpisodeSummary

POOL = [float(v) for v in range(10)]  # minimize: a best value v has v better candidates, pregret v / 10

# (task, method, gap) -> {experiment: best values over its seeds}; task t offers g = 1, 10, 100
# (at 100 only e1), task u offers 1 and 10 (100 is not offered); method c ran u at g = 1 only.
RUNS = {
    ("t", "a", 1): {"e1": [1, 3], "e2": [5]},  # experiments weigh equally: (0.2 + 0.5) / 2 = 0.35
    ("t", "a", 10): {"e1": [2, 2], "e2": [4, 4]},  # 0.3
    ("t", "a", 100): {"e1": [8]},  # 0.8
    ("t", "b", 1): {"e1": [0, 0], "e2": [0]},  # 0
    ("t", "b", 10): {"e1": [1, 1], "e2": [1, 1]},  # 0.1
    ("t", "b", 100): {"e1": [9]},  # 0.9
    ("u", "a", 1): {"e3": [6]},
    ("u", "a", 10): {"e3": [2]},
    ("u", "b", 1): {"e3": [3]},
    ("u", "b", 10): {"e3": [3]},
    ("u", "c", 1): {"e3": [7]},
}
HEADLINE = {("t", "a"): (0.35 + 0.3 + 0.8) / 3, ("t", "b"): (0.0 + 0.1 + 0.9) / 3,
            ("u", "a"): (0.6 + 0.2) / 2, ("u", "b"): 0.3, ("u", "c"): 0.7}


def summary(suite: str, task: str, method: str, exp: str, budget: int, seed: int, best: float,
            gap: float | None) -> EpisodeSummary:
    """A summary as `bench.episode` writes it."""
    return EpisodeSummary(best=best, recommend_value=best, curve=[best], gpu_hours=1.0, budget_gpu_hours=1.0,
                          trials=1, pool_size=len(POOL), gap=gap, fold="fold0",
                          scores=Scorer(POOL, "minimize").episode(best, [best], length=budget))


def episodes() -> list[tuple[EpisodeKey, EpisodeSummary]]:
    """RUNS as ladder `toy` at T=1 and T=3 (the same values), plus suites that are no ladder:
    `quick-gap1000` (a `--gap` run of a suite file without `gaps`) and `cv` (no gap); and one rung
    of the real `ladder` suite (its grid comes from configs/suites/ladder.yaml)."""
    out = []
    for (task, method, gap), runs in RUNS.items():
        for budget in (1, 3):
            for exp, values in runs.items():
                for seed, v in enumerate(values):
                    key = EpisodeKey(f"toy-gap{gap:g}", task, method, exp, "trials", budget, seed)
                    out.append((key, summary(key.suite, task, method, exp, budget, seed, v, gap)))
    for suite, gap in (("quick-gap1000", 1000.0), ("cv", None), ("ladder-gap10", 10.0)):
        key = EpisodeKey(suite, "t", "a", "e1", "trials", 1, 0)
        out.append((key, summary(suite, "t", "a", "e1", 1, 0, 4.0, gap)))
    return out


def frame() -> pd.DataFrame:
    return episodes_frame(episodes())


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    out = tmp_path_factory.mktemp("ladder-runs")
    store = Store(out)
    for key, s in episodes():
        store.open_log(key).close()
        store.complete(key, s)
    return out


def test_headline_is_the_mean_over_offered_distances_of_the_per_distance_means():
    ep = frame()
    assert ep.gap.notna().sum() == len(ep) - 1 and set(ep.fold) == {"fold0"}
    points, head = ladder(ep)
    assert set(points.ladder) == set(head.ladder) == {"toy", "ladder"}  # not quick-gap1000, not cv
    toy = points[(points.ladder == "toy") & (points.budget == 1)].set_index(["task", "method", "gap"])
    assert toy.loc[("t", "a", 1.0), "mean"] == pytest.approx(0.35)  # not the episodes' mean, 0.3
    assert toy.loc[("t", "a", 100.0), "experiments"] == 1 and toy.loc[("t", "a", 1.0), "episodes"] == 3
    # the per-distance points are the rungs' leaderboard means, with their intervals
    board = leaderboard(ep).set_index(["suite", "task", "budget", "method"])
    for (task, method, gap), r in toy.iterrows():
        row = board.loc[(f"toy-gap{gap:g}", task, 1, method)]
        assert (r["mean"], r.lo, r.hi) == pytest.approx((row.pregret_mean, row.pregret_lo, row.pregret_hi))

    toy = head[(head.ladder == "toy") & (head.budget == 1)].set_index(["task", "method"])
    assert toy["mean"].to_dict() == pytest.approx(HEADLINE)
    pooled = ep[ep.suite.str.startswith("toy") & (ep.task == "t") & (ep.method == "a") & (ep.budget == 1)]
    assert toy.loc[("t", "a"), "mean"] != pytest.approx(pooled.pregret.mean())  # not the episodes' mean
    assert toy.loc[("t", "a"), "offered"] == (1.0, 10.0, 100.0) and toy.loc[("t", "a"), "missing"] == ()
    assert toy.loc[("u", "a"), "offered"] == (1.0, 10.0) and toy.loc[("u", "a"), "missing"] == (100.0,)
    assert toy.loc[("u", "c"), "gaps"] == 1 and toy.loc[("u", "b"), "gaps"] == 2
    assert set(head.metric) == {"pregret"} and ladder(ep, "nregret")[1].metric.eq("nregret").all()

    real = head[head.ladder == "ladder"].iloc[0]  # one rung: the grid is the suite file's
    assert real.offered == (10.0,)
    assert real.missing == tuple(sorted(set(map(float, load_suite("ladder").gaps)) - {10.0}))
    assert ladder(ep[ep.suite == "cv"])[0].empty


def test_ladder_figure_has_a_line_per_method_at_log10_g_and_is_written(tmp_path):
    points, head = ladder(frame())
    fig = plots.ladder_figure(points, head, "toy")
    axes = [ax for ax in fig.axes if ax.get_visible()]
    assert [ax.get_title() for ax in axes] == ["t, T=1", "u, T=1", "t, T=3", "u, T=3"]
    for ax, methods in zip(axes, (["a", "b"], ["a", "b", "c"]) * 2, strict=True):
        lines = {line.get_label(): line for line in ax.get_lines() if not line.get_label().startswith("_")}
        assert sorted(lines) == methods
    t1 = {line.get_label(): line for line in axes[0].get_lines()}
    assert list(t1["a"].get_xdata()) == pytest.approx(np.log10([1, 10, 100]))
    assert list(t1["a"].get_ydata()) == pytest.approx([0.35, 0.3, 0.8])
    u1 = {line.get_label(): line for line in axes[1].get_lines()}
    assert list(u1["c"].get_xdata()) == pytest.approx([0.0])
    assert any(t.get_text() == "not offered: g = 100" for t in axes[1].texts)
    assert not any("not offered" in t.get_text() for t in axes[0].texts)
    assert plots.ladder_figure(points, head, "nosuch") is None
    first = plots.save(plots.ladder_figure(points, head, "toy"), tmp_path / "a", "ladder_toy")
    paths = plots.save(fig, tmp_path, "ladder_toy")
    assert [p.suffix for p in paths] == [".png", ".pdf"] and all(p.stat().st_size > 0 for p in paths)
    assert [p.read_bytes() for p in first] == [p.read_bytes() for p in paths]  # no timestamp: same bytes


def test_report_has_a_distance_ladder_section(runs, tmp_path):
    rep = tmp_path / "report"
    written = write_report(runs, rep, "toy", say=lambda _: None)  # the ladder's name picks its rungs
    md = (rep / "report.md").read_text()
    assert [h for h in md.splitlines() if h.startswith("## ")][:4] == [
        "## Suite toy-gap1", "## Suite toy-gap10", "## Suite toy-gap100", "## Distance ladder: toy"]
    section = md.split("## Distance ladder: toy\n", 1)[1]
    rows = {line.split(" | ")[0].strip("| "): line for line in section.splitlines()
            if line.startswith("| a ") or line.startswith("| b ") or line.startswith("| c ")}
    t, u = HEADLINE["t", "a"], HEADLINE["u", "a"]  # T=3 repeats T=1; all tasks: the mean of the two
    expected = ["a", *(f"{v:.3f}" for v in (t, t, u, u, (t + u) / 2, (t + u) / 2))]
    assert rows["a"].strip("| ").split(" | ") == expected
    assert f"**{HEADLINE['t', 'b']:.3f}**" in rows["b"]  # the best of column t T=1
    assert "toy / u T=1, 3: offers g = 1 (1 exp), 10 (1 exp); not offered: 100" in section
    assert "toy / t T=1, 3: offers g = 1 (2 exps), 10 (2 exps), 100 (1 exp); not offered: none" in section
    assert "toy / u T=1: c ran 1 of the 2 offered distances" in section
    assert "![ladder_toy](figures/ladder_toy.png)" in section
    assert {rep / "figures/ladder_toy.png", rep / "figures/ladder_toy.pdf", rep / "table_toy.md",
            rep / "table_toy.tex", rep / "ladder_toy.csv"} <= set(written)
    assert pd.read_csv(rep / "ladder_toy.csv").gap.tolist()[:3] == [1, 10, 100]
    table = ladder_table(ladder(frame())[1], "toy")
    assert table.loc["c", ("u", "T=1")] == pytest.approx(0.7) and np.isnan(table.loc["c", ("t", "T=1")])
    assert np.isnan(table.loc["c", ("all tasks", "T=1")])  # c lacks task t: no pooled number
    assert "Not in `all tasks` (it averages only the methods that ran every task): c (1 of 2 tasks, not t; " \
        "T=1, 3)." in (rep / "table_toy-gap1.md").read_text()
    overall = pd.read_csv(rep / "leaderboard_overall.csv")
    assert "c" not in set(overall.method) and {"a", "b"} <= set(overall.method)
    assert '<img alt="ladder_toy"' in (rep / "report.html").read_text()


def test_leaderboard_prints_the_ladder_headline(runs):
    result = CliRunner().invoke(app, ["leaderboard", "--runs", str(runs)])
    assert result.exit_code == 0, result.output
    text = result.output
    assert "toy: mean pregret over the distances each task offers" in text
    tail = text.split("toy: mean pregret over the distances each task offers", 1)[1]
    assert f"{HEADLINE['t', 'a']:.3f}" in tail and f"{HEADLINE['u', 'c']:.3f}" in tail
    assert "toy / u T=1, 3: offers g = 1 (1 exp), 10 (1 exp); not offered: 100" in text
    assert "quick: mean pregret over" not in text and "cv: mean" not in text


def test_a_variant_on_a_ladder_is_paired_per_distance_and_averaged_over_them():
    """`differences` on the ladder `toy` with b as a variant of a: per rung the paired difference,
    and the ladder's headline row the mean over the distances both ran (task t: g = 1, 10, 100),
    with experiments resampled once for all rungs: drawing e2 twice leaves g = 100 (e1 only) out."""
    diffs = differences(frame(), {"b": "a", "c": "a"})
    t1 = diffs[(diffs.task == "t") & (diffs.budget == 1)].set_index("suite")
    assert t1.loc["toy-gap1", "diff"] == pytest.approx(-0.35) and t1.loc["toy-gap1", "gaps"] == 0
    assert t1.loc["toy-gap100", "diff"] == pytest.approx(0.1)
    head = t1.loc["toy"]
    assert head["diff"] == pytest.approx(HEADLINE["t", "b"] - HEADLINE["t", "a"]) == pytest.approx(-0.15)
    assert (head.gaps, head.experiments, head.cells, head.better) == (3, 2, 8, 7 / 8)
    assert head.fewest_experiments == 1  # g = 100: e1 only
    assert head.lo == pytest.approx(-0.4) and -0.15 < head.hi <= -0.1 / 3 + 1e-9
    u = diffs[(diffs.task == "u") & (diffs.budget == 1) & (diffs.suite == "toy")].set_index("method")
    assert u.loc["b", "diff"] == pytest.approx(-0.1) and u.loc["b", "gaps"] == 2
    assert u.loc["c", "diff"] == pytest.approx(0.1) and u.loc["c", "gaps"] == 1  # c ran g = 1 only

    table = variants_table(diffs, "a", rungs={f"toy-gap{g}" for g in (1, 10, 100)} | {"ladder-gap10"})
    assert list(table.columns) == ["task", "variant", "toy T=1", "toy T=3"]  # cv: a alone
    cell = table.set_index(["task", "variant"]).loc[("t", "b"), "toy T=1"]
    assert cell == "**-0.150 [-0.400, " + f"{head.hi:+.3f}" + "]†**"  # excludes 0; 2 experiments
    for fewest, dagger in ((4, True), (5, False)):  # 11 experiments in all: the dagger is the fewest's
        many = diffs.assign(experiments=11, fewest_experiments=fewest)
        text = variants_table(many, "a", rungs={f"toy-gap{g}" for g in (1, 10, 100)}).iloc[0]["toy T=1"]
        assert text.rstrip("*").endswith("†") == dagger
