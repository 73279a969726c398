"""The paper's figures: normalised regret against target-fidelity trials, one panel per task;
and per task, the landscape: where the optimum lies at each fidelity."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from bench.gym.diagnostics import moving_params, optimum_shift  # noqa: E402
from bench.gym.space import choices  # noqa: E402
from bench.gym.task import Task  # noqa: E402


def _mean_sem(rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Column-wise mean and standard error of a (episodes x points) array."""
    mean = np.nanmean(rows, axis=0)
    sem = np.nanstd(rows, axis=0, ddof=1) / np.sqrt(len(rows)) if len(rows) > 1 else 0 * mean
    return mean, sem


def _series(grp: pd.DataFrame, kind: str) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """x, mean and s.e. of one method on one task.

    Trial budgets: the anytime curve of the largest-budget episodes against target trials.
    Cost budgets: the nregret of `recommend()` against the budget (target-run equivalents).
    """
    if kind == "trials":
        grp = grp[grp.budget == grp.budget.max()]
        curves = np.array([c for c in grp.nregret_curve if len(c)], dtype=float)
        if curves.size == 0:
            return None
        return np.arange(1, curves.shape[1] + 1), *_mean_sem(curves)
    stats = grp.groupby("budget").nregret.agg(["mean", "std", "count"])
    sem = (stats["std"] / np.sqrt(stats["count"])).fillna(0.0)
    return stats.index.to_numpy(float), stats["mean"].to_numpy(float), sem.to_numpy(float)


def regret_curves(ep: pd.DataFrame, suite: str, out: Path, columns: int = 3) -> list[Path]:
    """Normalised regret (mean ± s.e.) of every method, one panel per task; PNG and PDF.

    Against target trials for trial-budget suites, against the budget for cost suites. A method
    keeps its colour across panels, and one legend serves them all.
    """
    ep = ep[ep.suite == suite]
    tasks = sorted(ep.task.unique())
    if not tasks:
        return []
    kind = ep.budget_kind.iloc[0]
    methods = sorted(ep.method.unique())
    colours = dict(zip(methods, plt.get_cmap("tab20").colors * 2, strict=False))
    ncols = min(len(tasks), columns)
    nrows = -(-len(tasks) // ncols)
    fig, grid = plt.subplots(nrows, ncols, figsize=(4.6 * ncols, 3.5 * nrows), squeeze=False)
    axes = grid.ravel()
    for ax in axes[len(tasks):]:
        ax.set_visible(False)
    for ax, task in zip(axes, tasks, strict=False):
        sub = ep[ep.task == task]
        for method, grp in sub.groupby("method", sort=True):
            series = _series(grp, kind)
            if series is None:
                continue
            x, mean, sem = series
            ax.plot(x, mean, marker="o", ms=3, color=colours[method], label=method)
            ax.fill_between(x, mean - sem, mean + sem, color=colours[method], alpha=0.15)
        simulated = " (simulated)" if sub.simulated.any() else ""
        xlabel = ("target-fidelity trials" if kind == "trials"
                  else "budget (GPU-hours, in target runs); score: recommend()")
        ax.set(title=f"{task}{simulated}", xlabel=xlabel, ylabel="nregret (0 = optimum, 1 = median)")
        ax.set_yscale("symlog", linthresh=0.1)
        ax.grid(alpha=0.3)
    handles = [plt.Line2D([], [], color=colours[m], marker="o", ms=3, label=m) for m in methods]
    fig.legend(handles=handles, loc="lower center", ncol=min(len(methods), 6), fontsize=8,
               bbox_to_anchor=(0.5, 0.0), frameon=False)
    fig.suptitle(f"suite {suite}", fontsize=10)
    fig.tight_layout(rect=(0, 0.04 + 0.025 * -(-len(methods) // 6), 1, 1))
    return _save(fig, out, f"regret_{suite}", layout=False)


def discrimination_figure(disc: pd.DataFrame, suite: str, out: Path) -> list[Path]:
    """Per task x budget: the best method's upper 95% bound and the median method's lower bound
    (nregret); a filled cell when they are disjoint. PNG and PDF."""
    disc = disc[disc.suite == suite]
    if disc.empty:
        return []
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
    ax.set(xlabel="budget", title=f"suite {suite}: best vs median method separated in "
           f"{disc.separated.mean():.0%} of cells")
    ax.title.set_fontsize(9)
    return _save(fig, out, f"discrimination_{suite}")


def extrapolation_figure(ep: pd.DataFrame, out: Path, columns: int = 3) -> list[Path]:
    """nregret at T=1 against the extrapolation distance (log10 of the target cost over the most
    expensive prior fidelity's), one line per method, one panel per task, from every trial suite
    holding T=1 episodes (a `--gap` sweep gives the points). PNG and PDF; none with < 2 distances."""
    ep = ep[(ep.budget_kind == "trials") & (ep.budget == 1) & ep.extrapolation.notna()]
    points = ep.groupby(["task", "method", "suite"]).agg(x=("extrapolation", "mean"), y=("nregret", "mean"),
                                                        n=("nregret", "size")).reset_index()
    tasks = [t for t, g in points.groupby("task") if g.x.round(2).nunique() >= 2]
    if not tasks:
        return []
    methods = sorted(points.method.unique())
    colours = dict(zip(methods, plt.get_cmap("tab20").colors * 2, strict=False))
    ncols = min(len(tasks), columns)
    nrows = -(-len(tasks) // ncols)
    fig, grid = plt.subplots(nrows, ncols, figsize=(4.4 * ncols, 3.3 * nrows), squeeze=False)
    for ax in grid.ravel()[len(tasks):]:
        ax.set_visible(False)
    for ax, task in zip(grid.ravel(), tasks, strict=False):
        for method, g in points[points.task == task].groupby("method"):
            g = g.sort_values("x")
            ax.plot(g.x, g.y, marker="o", ms=3, color=colours[method], label=method)
        ax.set(title=task, xlabel="extrapolation distance, log10(target cost / top prior cost)",
               ylabel="nregret at T=1")
        ax.set_yscale("symlog", linthresh=0.1)
        ax.grid(alpha=0.3)
    handles = [plt.Line2D([], [], color=colours[m], marker="o", ms=3, label=m) for m in methods]
    fig.legend(handles=handles, loc="lower center", ncol=min(len(methods), 6), fontsize=8, frameon=False)
    fig.tight_layout(rect=(0, 0.04 + 0.025 * -(-len(methods) // 6), 1, 1))
    return _save(fig, out, "extrapolation", layout=False)


def landscape(task: Task, out: Path, panels: int = 7, columns: int = 4) -> list[Path]:
    """Optimum location against fidelity cost, one line per experiment (test in colour, train in
    grey): the optimum's unit-cube distance from the target's, then the best value of up to
    `panels` parameters, those that move most. PNG and PDF."""
    shift = optimum_shift(task)
    params = moving_params(task.space, shift, most=panels)
    n = 1 + len(params)
    ncols = min(n, columns)
    nrows = -(-n // ncols)
    fig, grid = plt.subplots(nrows, ncols, figsize=(3.6 * ncols, 3.1 * nrows), squeeze=False)
    axes = grid.ravel()
    for ax in axes[n:]:
        ax.set_visible(False)
    for exp, grp in shift.groupby("experiment", sort=False):
        style = (dict(marker="o", ms=3, lw=1.5, label=exp) if grp.split.iat[0] == "test"
                 else dict(marker="o", ms=2, lw=0.8, color="0.7"))
        axes[0].plot(grp.cost, grp.distance, **style)
        for ax, name in zip(axes[1:n], params, strict=True):
            hp = task.space[name]
            y = grp[name] if hasattr(hp, "lower") else grp[name].map(
                {c: i for i, c in enumerate(choices(hp))})
            ax.plot(grp.cost, y, **style)
    axes[0].set(ylabel="distance to target optimum")
    for ax, name in zip(axes[1:n], params, strict=True):
        hp = task.space[name]
        ax.set(ylabel=f"best {name}")
        if getattr(hp, "log", False):
            ax.set_yscale("log")
        if not hasattr(hp, "lower"):
            ax.set_yticks(range(len(choices(hp))), [str(c) for c in choices(hp)])
    for ax in axes[:n]:
        ax.set_xscale("log")
        ax.set(xlabel="GPU-hours per run")
        ax.grid(alpha=0.3)
    if (shift.split == "test").any():
        axes[0].legend(fontsize=7, title="test experiments", title_fontsize=7)
    fig.suptitle(f"{task.name}: optimum location vs fidelity" + (" (simulated)" if task.simulated else "")
                 + "; train experiments in grey", fontsize=10)
    return _save(fig, out, f"landscape_{task.name}")


def _save(fig, out: Path, stem: str, layout: bool = True) -> list[Path]:
    """Write `fig` as PNG and PDF under `out` (after tight_layout unless done); close it."""
    if layout:
        fig.tight_layout()
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / f"{stem}.{ext}" for ext in ("png", "pdf")]
    for p in paths:
        fig.savefig(p, dpi=150)
    plt.close(fig)
    return paths
