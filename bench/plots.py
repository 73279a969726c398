"""The paper's figures, each built as a matplotlib Figure (`*_figure`, None when there is nothing
to draw) and written by `save` as PNG and PDF.

Every method keeps one colour, marker and line style in every figure (`method_style`), so lines
stay apart in greyscale too. Figures of scores draw one metric (`metric`: pregret by default, the
share of the target pool better than the best run found, 0 = the optimum and 1 = the worst; or
nregret, 0 = the optimum and 1 = the median candidate), named in their labels and titles. Lower is
better everywhere: scores and ranks (1 = best).
"""

from __future__ import annotations

import io
import re
import textwrap
import zlib
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import PIL.Image  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from bench.gym.diagnostics import moving_params, optimum_shift  # noqa: E402
from bench.gym.space import choices  # noqa: E402
from bench.gym.task import Task  # noqa: E402
from bench.metrics import ALL_TASKS, METRIC, NEAR_TOP, check_metric  # noqa: E402

# tab10, then 14 saturated colours picked to stand apart from it: 24 before one repeats
COLOURS = (*plt.get_cmap("tab10").colors, "black", "#a6761d", "#e6ab02", "#08306b", "#1b9e77",
           "#e7298a", "#7570b3", "#66a61e", "#d95f02", "#67000d", "#00441b", "#6a3d9a", "#b15928",
           "#c51b7d")
MARKERS = ("o", "s", "^", "D", "v", "P", "X")
LINESTYLES = ("-", "--", "-.", ":")
METRIC_LABELS = {"pregret": "pregret (0 = optimum, 1 = worst)",
                 "nregret": "nregret (0 = optimum, 1 = median)"}


def _score_axis(ax, metric: str) -> None:
    """pregret on a linear axis from 0 (it is bounded); nregret on symlog (it is not)."""
    if metric == "nregret":
        ax.set_yscale("symlog", linthresh=0.1)
    else:
        ax.set_ylim(bottom=0)


def method_style(method: str) -> dict:
    """A method's colour, marker and line style, the same in every figure and run: by its position
    in `configs/methods.yaml` (other names, e.g. `openai:MODEL`, by a hash of the name). No two of
    24 methods share a colour, nor two of 28 a (marker, line style) pair, so lines stay apart in
    greyscale."""
    from bench.methods import methods

    names = list(methods())
    i = names.index(method) if method in names else len(names) + zlib.crc32(method.encode()) % 1000
    return {"color": COLOURS[i % len(COLOURS)], "marker": MARKERS[i % len(MARKERS)],
            "linestyle": LINESTYLES[i % len(LINESTYLES)]}


def _panels(n: int, columns: int, width: float, height: float) -> tuple[Figure, list]:
    """A figure with `n` visible panels in rows of at most `columns`."""
    ncols = min(n, columns)
    nrows = -(-n // ncols)
    fig, grid = plt.subplots(nrows, ncols, figsize=(width * ncols, height * nrows), squeeze=False)
    axes = list(grid.ravel())
    for ax in axes[n:]:
        ax.set_visible(False)
    return fig, axes[:n]


def _legend(fig: Figure, methods: list[str], per_row: int = 6) -> None:
    """One legend for every panel, below them, with each method's full style."""
    handles = [plt.Line2D([], [], ms=5, label=m, **method_style(m)) for m in methods]
    rows = -(-len(methods) // per_row)
    fig.legend(handles=handles, loc="lower center", ncol=min(len(methods), per_row), fontsize=8,
               frameon=False, handlelength=3, bbox_to_anchor=(0.5, 0.0))
    fig.tight_layout(rect=(0, (0.1 + 0.22 * rows) / fig.get_figheight(), 1, 1))


def _left_labels(axes: list, label: str, columns: int) -> None:
    """The y label once per row, on the leftmost panel."""
    for ax in axes[::columns]:
        ax.set_ylabel(label)


def _title(task: str, simulated: bool) -> str:
    return ("all tasks (mean of per-task ranks)" if task == ALL_TASKS else task) + (
        " (simulated)" if simulated else "")


def _mean_sem(rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Column-wise mean and standard error of a (episodes x points) array."""
    mean = np.nanmean(rows, axis=0)
    sem = np.nanstd(rows, axis=0, ddof=1) / np.sqrt(len(rows)) if len(rows) > 1 else 0 * mean
    return mean, sem


def _series(grp: pd.DataFrame, kind: str, metric: str = METRIC
            ) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """x, mean and s.e. of `metric` of one method on one task.

    Trial budgets: the anytime curve of the largest-budget episodes against target trials.
    Cost budgets: the score of `recommend()` against the GPU-hours spent (mean over the
    episodes of each budget, in target runs), one point per budget.
    """
    if kind == "trials":
        grp = grp[grp.budget == grp.budget.max()]
        curves = np.array([c for c in grp[f"{metric}_curve"] if len(c)], dtype=float)
        if curves.size == 0:
            return None
        return np.arange(1, curves.shape[1] + 1), *_mean_sem(curves)
    spent = grp.assign(spent=grp.budget * grp.budget_spent)
    stats = spent.groupby("budget").agg(x=("spent", "mean"), mean=(metric, "mean"),
                                        std=(metric, "std"), n=(metric, "size"))
    sem = (stats["std"] / np.sqrt(stats["n"])).fillna(0.0)
    return stats.x.to_numpy(float), stats["mean"].to_numpy(float), sem.to_numpy(float)


def regret_figure(ep: pd.DataFrame, suite: str, metric: str = METRIC, columns: int = 3) -> Figure | None:
    """`metric` (mean ± s.e. over episodes) of every method, one panel per task: against
    target-fidelity trials for trial-budget suites, against GPU-hours spent for cost suites."""
    check_metric(metric)
    ep = ep[ep.suite == suite]
    tasks = sorted(ep.task.unique())
    if not tasks:
        return None
    kind = ep.budget_kind.iloc[0]
    fig, axes = _panels(len(tasks), columns, 4.6, 3.5)
    for ax, task in zip(axes, tasks, strict=True):
        sub = ep[ep.task == task]
        for method, grp in sub.groupby("method", sort=True):
            series = _series(grp, kind, metric)
            if series is None:
                continue
            x, mean, sem = series
            style = method_style(method)
            ax.plot(x, mean, ms=4, label=method, **style)
            ax.fill_between(x, mean - sem, mean + sem, color=style["color"], alpha=0.12, lw=0)
        if kind == "trials":
            ax.set_xlabel(f"target-fidelity trials (T={sub.budget.max():g} episodes)")
            ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
        else:
            ax.set_xlabel("GPU-hours spent (1 = one target run); score: recommend()")
        ax.set(title=_title(task, sub.simulated.any()))
        _score_axis(ax, metric)
        ax.grid(alpha=0.3)
    _left_labels(axes, METRIC_LABELS[metric], columns)
    fig.suptitle(f"suite {suite}: {metric}, mean ± s.e. over episodes", fontsize=10)
    _legend(fig, sorted(ep.method.unique()))
    return fig


def rank_figure(ranks: pd.DataFrame, suite: str, simulated: set[str] = frozenset(), metric: str = METRIC,
                columns: int = 4) -> Figure | None:
    """Mean rank on `metric` after each target trial (`bench.metrics.rank_curves`), one panel per
    task at its largest budget, the `all` task (the mean of per-task ranks, `bench.report.suite_ranks`)
    last at the largest budget every task has; `simulated` names the tasks to mark."""
    check_metric(metric)
    ranks = ranks[ranks.suite == suite]
    tasks = sorted(set(ranks.task) - {ALL_TASKS}) + ([ALL_TASKS] if ALL_TASKS in set(ranks.task) else [])
    if not tasks:
        return None
    fig, axes = _panels(len(tasks), columns, 3.8, 3.2)
    for ax, task in zip(axes, tasks, strict=True):
        sub = ranks[(ranks.task == task) & (ranks.budget == ranks[ranks.task == task].budget.max())]
        for method, grp in sub.groupby("method", sort=True):
            ax.plot(grp.trial, grp.rank_mean, ms=4, label=method, **method_style(method))
        n = sub.method.nunique()
        ax.set(title=_title(task, task in simulated), ylim=(0.8, n + 0.2),
               xlabel=f"target-fidelity trials ({sub.rank_cells.max()} cells)")
        ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
    _left_labels(axes, f"mean rank on {metric} (1 = best)", columns)
    fig.suptitle(f"suite {suite}: mean rank on {metric} over the (experiment, seed) cells every method has",
                 fontsize=10)
    _legend(fig, sorted(ranks.method.unique()))
    return fig


def cd_figure(results: list[tuple[float, object, int, list[str]]], suite: str, metric: str = METRIC
              ) -> Figure | None:
    """Critical-difference diagrams drawn by autorank, one panel per budget: `results` holds
    (budget, autorank RankResult on `metric`, number of experiments, methods left out)."""
    from autorank import plot_stats

    if not results:
        return None
    heights = [1.3 + 0.12 * len(r.rankdf) for _, r, _, _ in results]
    fig, axes = plt.subplots(len(results), 1, figsize=(8, sum(heights) + 0.5 * len(results) + 0.4),
                             gridspec_kw={"height_ratios": heights}, squeeze=False)
    for ax, (budget, result, n, left_out) in zip(axes[:, 0], results, strict=True):
        plot_stats(result, allow_insignificant=True, ax=ax)
        title = (f"T={budget:g}: {n} experiments, Friedman p = {result.pvalue:.2g}, "
                 f"Nemenyi CD = {result.cd:.2f}")
        if left_out:
            title += "\n" + textwrap.fill("not run on every experiment, left out: " + ", ".join(left_out),
                                          110, break_on_hyphens=False)
        ax.set_title(title, fontsize=8, loc="left")
    fig.suptitle(textwrap.fill(f"suite {suite}: mean rank on {metric} across test experiments (1 = best, "
                               "on the right); a bar joins methods not significantly different "
                               "(alpha 0.05)", 90),
                 fontsize=9)
    fig.tight_layout()
    return fig


def near_optimum_figure(shares: pd.DataFrame, suite: str, simulated: set[str] = frozenset(),
                        columns: int = 3) -> Figure | None:
    """Per task, the share of each method's target proposals within the best NEAR_TOP of the
    target pool (`bench.metrics.near_optimum`), against what a uniform draw reaches; the same
    rows in every panel (a method not run on a task says so)."""
    shares = shares[shares.suite == suite]
    tasks = sorted(shares.task.unique())
    if not tasks:
        return None
    methods = sorted(shares.method.unique())
    fig, axes = _panels(len(tasks), columns, 4.2, 0.9 + 0.28 * len(methods))
    for ax, task in zip(axes, tasks, strict=True):
        sub = shares[shares.task == task].set_index("method").reindex(methods)
        y = np.arange(len(methods))
        ax.barh(y, sub.near_share.fillna(0), color=[method_style(m)["color"] for m in methods],
                edgecolor="black", lw=0.5)
        for yi, (share, n) in enumerate(zip(sub.near_share, sub.proposals, strict=True)):
            label = "not run" if np.isnan(share) else f"{share:.0%} of {n:g}"
            ax.text(0.01 if np.isnan(share) else share + 0.01, yi, label, va="center", fontsize=7,
                    color="0.5" if np.isnan(share) else "black",
                    bbox=dict(facecolor="white", edgecolor="none", alpha=0.7, pad=0.5))
        ax.axvline(sub.uniform.mean(), color="black", ls="--", lw=1, label="a uniform draw")
        ax.set_yticks(y, methods, fontsize=8)
        ax.invert_yaxis()
        ax.set(title=_title(task, task in simulated), xlim=(0, 1.15),
               xlabel=f"share of target proposals in the best {NEAR_TOP:.0%}")
        ax.xaxis.set_major_formatter(matplotlib.ticker.PercentFormatter(1.0))
        ax.grid(alpha=0.3, axis="x")
    axes[0].legend(fontsize=7, loc="lower right")
    fig.suptitle(f"suite {suite}: proposals near the target optimum (largest budget per task)", fontsize=10)
    fig.tight_layout()
    return fig


def discrimination_figure(disc: pd.DataFrame, suite: str, metric: str = METRIC) -> Figure | None:
    """Per task x budget: the best method's upper bound and the median method's lower bound of
    their intervals of `metric` (`bench.metrics.discrimination` on it); a filled cell when they
    are disjoint."""
    disc = disc[disc.suite == suite]
    if disc.empty:
        return None
    tasks, budgets = sorted(disc.task.unique()), sorted(disc.budget.unique())
    fig, ax = plt.subplots(figsize=(1.6 + 1.3 * len(budgets), 0.8 + 0.55 * len(tasks)))
    grid = np.full((len(tasks), len(budgets)), np.nan)
    for row in disc.itertuples(index=False):
        i, j = tasks.index(row.task), budgets.index(row.budget)
        grid[i, j] = float(row.separated)
        ax.text(j, i, f"{row.best}\n{row.best_hi:.2f} < {row.median_lo:.2f}" if row.separated
                else f"{row.best} ~ {row.median}", ha="center", va="center", fontsize=6)
    ax.imshow(grid, cmap="Greens", vmin=-0.5, vmax=1.5, aspect="auto")
    ax.set_xticks(range(len(budgets)), [f"{b:g}" for b in budgets])
    ax.set_yticks(range(len(tasks)), tasks)
    ax.set(xlabel="budget", title=f"suite {suite}: best vs median method by {metric}\nseparated in "
           f"{disc.separated.mean():.0%} of cells")
    ax.title.set_fontsize(9)
    fig.tight_layout()
    return fig


def gap_sweep_base(suite: str) -> str:
    """The suite a `--gap` run derives from: `paper-gap30` -> `paper`."""
    return re.sub(r"-gap[0-9.e+]+$", "", suite)


def extrapolation_figure(ep: pd.DataFrame, metric: str = METRIC, columns: int = 3) -> Figure | None:
    """`metric` at T=1 against the extrapolation distance (log10 of the target cost over the most
    expensive prior fidelity's), one line per method, one panel per task, from a suite and its
    `--gap` sweep (`<suite>-gap<g>`; the base with the most such suites, `paper` on a tie): one
    protocol, the prior's top fidelity moved. Methods with < 2 distances on a task are left out."""
    check_metric(metric)
    ep = ep[(ep.budget_kind == "trials") & (ep.budget == 1) & ep.extrapolation.notna()]
    families = ep.assign(base=ep.suite.map(gap_sweep_base)).groupby("base").suite.nunique()
    if families.empty:
        return None
    base = max(families.index, key=lambda b: (families[b], b == "paper"))
    ep = ep[ep.suite.map(gap_sweep_base) == base]
    points = ep.groupby(["task", "method", "suite"]).agg(x=("extrapolation", "mean"), y=(metric, "mean"),
                                                        n=(metric, "size")).reset_index()
    points = points[points.groupby(["task", "method"]).x.transform(lambda x: x.round(2).nunique()) >= 2]
    tasks = sorted(points.task.unique())
    if not tasks:
        return None
    fig, axes = _panels(len(tasks), columns, 4.4, 3.3)
    for ax, task in zip(axes, tasks, strict=True):
        for method, g in points[points.task == task].groupby("method"):
            g = g.sort_values("x")
            ax.plot(g.x, g.y, ms=4, label=method, **method_style(method))
        ax.set(title=_title(task, ep[ep.task == task].simulated.any()),
               xlabel="log10(target cost / top prior cost)")
        _score_axis(ax, metric)
        ax.grid(alpha=0.3)
    _left_labels(axes, f"{metric} at T=1", columns)
    fig.suptitle(f"extrapolation distance: suite {base} and its --gap sweep, {metric} at T=1", fontsize=10)
    _legend(fig, sorted(points[points.task.isin(tasks)].method.unique()))
    return fig


LADDER_BUDGETS = (1, 3)  # the ladder figure's rows: T=1, and T=3 where the ladder has it


def ladder_figure(points: pd.DataFrame, headline: pd.DataFrame, name: str, metric: str = METRIC
                  ) -> Figure | None:
    """One distance ladder (`bench.metrics.ladder`: `points`, `headline`): `metric` (mean over
    experiments with its 95% interval as error bars) against log10 g, one line per method, one
    panel per task; a row per budget of LADDER_BUDGETS the ladder has (else its smallest); the
    distances a task does not offer are named in its panel. None without rungs of `name`."""
    check_metric(metric)
    points, headline = points[points.ladder == name], headline[headline.ladder == name]
    if points.empty:
        return None
    if (points.budget_kind == "trials").any():
        points = points[points.budget_kind == "trials"]
    have = sorted(points.budget.unique())
    budgets = [b for b in LADDER_BUDGETS if b in have] or have[:1]
    tasks = sorted(points.task.unique())
    unit = "T" if points.budget_kind.iloc[0] == "trials" else "budget "
    simulated = set(points.task[points.simulated.astype(bool)])
    grid = sorted(set(points.gap) | {g for m in headline.missing for g in m})
    fig, axes = plt.subplots(len(budgets), len(tasks), figsize=(4.2 * len(tasks), 3.3 * len(budgets)),
                             squeeze=False)
    for row, budget in zip(axes, budgets, strict=True):
        for ax, task in zip(row, tasks, strict=True):
            sub = points[(points.task == task) & (points.budget == budget)]
            for method, g in sub.groupby("method", sort=True):
                g = g.sort_values("gap")
                x, style = np.log10(g.gap.to_numpy(float)), method_style(method)
                ax.plot(x, g["mean"], ms=4, label=method, **style)
                below, above = (g["mean"] - g.lo).clip(lower=0), (g.hi - g["mean"]).clip(lower=0)  # rounding
                ax.errorbar(x, g["mean"], yerr=[below, above], fmt="none",
                            ecolor=style["color"], elinewidth=0.8, capsize=2, alpha=0.6)
            missing = headline[(headline.task == task) & (headline.budget == budget)].missing
            if len(missing) and missing.iloc[0]:
                ax.text(0.98, 0.98, "not offered: g = " + ", ".join(f"{g:g}" for g in missing.iloc[0]),
                        transform=ax.transAxes, ha="right", va="top", fontsize=7, color="0.4")
            ax.set_xticks(np.log10(grid), [f"{g:g}" for g in grid])
            ax.set_xlim(np.log10(grid[0]) - 0.2, np.log10(grid[-1]) + 0.2)
            ax.set(title=f"{_title(task, task in simulated)}, {unit}={budget:g}",
                   xlabel="distance g (log10 axis): prior costs ≤ target / g")
            _score_axis(ax, metric)
            ax.grid(alpha=0.3)
        row[0].set_ylabel(f"{metric} (mean, 95% interval)")
    fig.suptitle(f"distance ladder {name}: {metric} against the extrapolation distance g, one line per "
                 "method", fontsize=10)
    _legend(fig, sorted(points.method.unique()))
    return fig


def landscape_figure(task: Task, panels: int = 7, columns: int = 4) -> Figure:
    """Optimum location against fidelity cost, one line per experiment (test in colour, train in
    grey): the optimum's unit-cube distance from the target's, then the best value of up to
    `panels` parameters, those that move most."""
    shift = optimum_shift(task)
    params = moving_params(task.space, shift, most=panels)
    fig, axes = _panels(1 + len(params), columns, 3.6, 3.1)
    tests = list(dict.fromkeys(shift.experiment[shift.split == "test"]))
    for exp, grp in shift.groupby("experiment", sort=False):
        i = tests.index(exp) if exp in tests else -1
        style = (dict(marker=MARKERS[i % len(MARKERS)], linestyle=LINESTYLES[i % len(LINESTYLES)],
                      color=COLOURS[i], ms=4, lw=1.5, label=exp, zorder=3) if i >= 0
                 else dict(marker="o", ms=2, lw=0.8, color="0.7", zorder=2))
        axes[0].plot(grp.cost, grp.distance, **style)
        for ax, name in zip(axes[1:], params, strict=True):
            hp = task.space[name]
            y = grp[name] if hasattr(hp, "lower") else grp[name].map(
                {c: i for i, c in enumerate(choices(hp))})
            ax.plot(grp.cost, y, **style)
    axes[0].set(ylabel="distance to target optimum")
    for ax, name in zip(axes[1:], params, strict=True):
        hp = task.space[name]
        ax.set(ylabel=f"best {name}")
        if getattr(hp, "log", False):
            ax.set_yscale("log")
            if "Integer" in type(hp).__name__:  # 2, 4, 8 rather than 2 x 10^0 (and 12, 24 if few)
                lo, hi = ax.get_ylim()
                subs = (1.0, 1.5) if np.log2(hi / lo) < 3 else (1.0,)
                ax.yaxis.set_major_locator(matplotlib.ticker.LogLocator(base=2, subs=subs))
                ax.yaxis.set_major_formatter(matplotlib.ticker.ScalarFormatter())
                ax.yaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        if not hasattr(hp, "lower"):
            ax.set_yticks(range(len(choices(hp))), [str(c) for c in choices(hp)])
    for ax in axes:
        ax.set_xscale("log")
        lo, hi = ax.get_xlim()
        if np.log10(hi / lo) < 2:  # a short range: ticks at 1, 2, 5 of each decade
            ax.xaxis.set_major_locator(matplotlib.ticker.LogLocator(subs=(1, 2, 5)))
        ax.xaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:g}"))
        ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        ax.set(xlabel="GPU-hours per run")
        ax.grid(alpha=0.3)
    if (shift.split == "test").any():
        axes[0].legend(fontsize=7, title="test experiments", title_fontsize=7)
    fig.suptitle(f"{task.name}: optimum location vs fidelity" + (" (simulated)" if task.simulated else "")
                 + "; train experiments in grey", fontsize=10)
    fig.tight_layout()
    return fig


def save(fig: Figure, out: Path, stem: str, dpi: int = 150) -> list[Path]:
    """Write `fig` as `<stem>.png` and `<stem>.pdf` under `out`, byte for byte the same for the same
    figure (no timestamp in the PDF); close it.

    The PNG is a 256-colour palette image: the reference report's 52 figures took 15.0 MB as
    full-colour PNGs and take 4.9 MB so (their PDFs, 1.9 MB), with no change one can see in line plots.
    """
    out.mkdir(parents=True, exist_ok=True)
    png, pdf = out / f"{stem}.png", out / f"{stem}.pdf"
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi)
    PIL.Image.open(buffer).convert("RGB").quantize(256, PIL.Image.Quantize.MEDIANCUT).save(png, optimize=True)
    fig.savefig(pdf, dpi=dpi, metadata={"CreationDate": None})  # the same figure, the same bytes
    plt.close(fig)
    return [png, pdf]
