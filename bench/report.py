"""`bench report`: a results directory as a report, tables and figures.

Under the report directory:
  report.md, report.html    per suite: the headline table, the leaderboard at every budget (per
                            task first, then every task weighed once), the figures; simulated
                            tasks marked. Both link the figures' PNGs under figures/ (a page of
                            embedded figures grew to 7 MB in git).
  leaderboard.csv           `bench.metrics.leaderboard`, the file `bench leaderboard` writes
  leaderboard_overall.csv   each suite's tasks weighed once (`bench.metrics.across_tasks`)
  table_<suite>.tex, .md    the paper's layout: methods x tasks, the metric at T=1 and T=3, best bold;
                            no ablation (`without_apart`; Variants has them)
  Distance ladder           per ladder (suites `<ladder>-gap<g>`, `bench.metrics.ladder`): the
                            headline (methods x tasks, the mean over the distances each task
                            offers) as table_<ladder>.tex/.md, the distances offered and not,
                            ladder_<ladder>.csv (the metric per distance) and the ladder figure
  Variants                  each preset's variants in the results (`bench.methods.variants`:
                            ablations, warm starts) against it, paired (`bench.metrics.differences`),
                            a table per preset; every row in variants.csv
  figures/                  `write_figures` (what `bench plot` renders), PNG and PDF
Tables, ranks and figures use one metric (`--metric`: pregret by default, or nregret); the CSVs
hold both. Every number comes from `bench.metrics`; this module only selects, formats and lays out.
"""

from __future__ import annotations

import html
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from bench import plots
from bench.errors import BenchError
from bench.gym.task import Task
from bench.methods import ranked_apart, variants
from bench.metrics import (
    ALL_TASKS,
    FEW_EXPERIMENTS,
    KEY_COLS,
    METRIC,
    METRICS,
    NEAR_TOP,
    across_tasks,
    check_metric,
    critical_difference,
    differences,
    discrimination,
    episodes_frame,
    experiment_scores,
    identical,
    ladder,
    ladder_rungs,
    leaderboard,
    missing_tasks,
    near_optimum,
    near_threshold,
    rank_curves,
    unpaired,
    without_apart,
)
from bench.store import EpisodeKey, Store

HEADLINE_BUDGETS = (1, 3)  # the paper's table: T=1 and T=3 target trials
CD_MIN_EXPERIMENTS, CD_MIN_METHODS = 5, 3  # autorank needs 5 blocks; Nemenyi needs 3 methods

METRIC_TEXT = {
    "pregret": "pregret: the share of the experiment's target pool strictly better than the best "
               "target run found (0 = the optimum, 1 = the worst candidate; ties count as not better)",
    "nregret": "nregret: the gap to the pool's optimum over |median - optimum| (|worst - optimum| "
               "where half the pool ties at the optimum; 0 = the optimum, 1 = the median candidate; "
               "unbounded: one diverged pick can weigh more than the rest)",
}
CAPTIONS = {
    "regret": "{metric} (mean ± s.e. over episodes; {scale}) of the best target outcome after each "
              "target-fidelity trial, at each task's largest budget. Cost suites: the {metric} of "
              "recommend() against the GPU-hours spent, one point per budget.",
    "rank": "Mean rank on {metric} (1 = best) after each target trial over the (experiment, seed) "
            "cells every method has, at each task's largest budget; last panel: the mean of the "
            "per-task ranks (each task weighs once), at the largest budget all tasks have.",
    "cd": "Critical-difference diagrams (autorank: Friedman test, Nemenyi post-hoc, alpha 0.05), one "
          "per budget: mean rank over every task's test experiments (each scored by its mean {metric} "
          "over the seeds every method has); methods joined by a bar are not significantly different. "
          "Variants that `--method all` does not run (ablations) are left out.",
    "near_optimum": f"Share of target-fidelity proposals whose outcome is within the best {NEAR_TOP:.0%} "
                    "of the experiment's target pool (mean over experiments, largest budget per task, "
                    "from the trial logs); dashed: what a uniform draw from the pool reaches.",
    "discrimination": "Per task and budget: are the best and the median method (by mean {metric}) told "
                      "apart (disjoint intervals)? Filled: yes. With fewer than "
                      f"{FEW_EXPERIMENTS} experiments an interval is a range of few experiments.",
    "extrapolation": "{metric} at T=1 against the extrapolation distance, log10(target cost / cost of "
                     "the most expensive prior fidelity): a suite and its --gap sweep (suites "
                     "<suite>-gap<g>), the same protocol with the prior's top fidelity moved.",
    "ladder": "{metric} (mean over experiments of the mean over seeds, bars: 95% interval) against "
              "the extrapolation distance g (the prior holds only fidelities costing at most target / g; "
              "log10 axis), one line per method, per task at T=1 (and T=3); the distances a task does "
              "not offer are named in its panel.",
    "landscape": "Where the optimum lies at each fidelity: its unit-cube distance from the target's "
                 "optimum and the best value of the parameters that move most, against GPU-hours per run.",
}
_SCALE = {"pregret": "0 = the optimum, 1 = the worst candidate",
          "nregret": "0 = the optimum, 1 = the median candidate; symlog scale"}


def figure_caption(kind: str, metric: str = METRIC) -> str:
    """The caption of a figure of `kind` drawn on `metric`."""
    return CAPTIONS[kind].format(metric=metric, scale=_SCALE[metric])


def legend(metric: str = METRIC) -> str:
    """How to read the tables of `board_view` and `across_view`, for `metric`."""
    check_metric(metric)
    about = METRIC_TEXT["pregret"] + (f"; {METRIC_TEXT['nregret']}" if metric == "nregret" else "")
    return (
        f"{about}. Tables, ranks and figures use {metric}. mean: over experiments of the mean over "
        "seeds, with an interval from a hierarchical bootstrap (experiments, then seeds); `interval` "
        "says what it rests on: '95%, n exps' is a 95% interval from n independent experiments; "
        f"'range of n exps' (fewer than {FEW_EXPERIMENTS}) is the spread of resampling so few "
        "experiments, not a confidence statement. IQM: the interquartile mean of the episodes. rank "
        "(1 = best) and win% vs centroid (the floor: the target candidates nearest the pool's "
        "centroid, no outcome used; ties count half) use only the (experiment, seed) cells every "
        "method has (`cells`, `rank_cells`); a variant that `--method all` does not run (an ablation) is "
        "ranked among the other methods and itself, so it moves no other rank. diverged: the share of "
        "episodes whose best target run diverged. "
        "failed: episodes that failed, scored as the worst target candidate (pregret 1). GPU-h: "
        "GPU-hours spent per episode. All tasks: each task weighs once: the mean of the per-task "
        "means (interval from the per-task bootstraps) and the mean of the per-task ranks."
    )


@dataclass(frozen=True)
class Drawn:
    """A written figure: its kind (a key of CAPTIONS), suite or task, and files (PNG first)."""

    kind: str
    stem: str
    paths: list[Path]
    suite: str | None = None
    task: str | None = None


def load_episodes(runs: Path) -> pd.DataFrame:
    ep = episodes_frame(Store(runs).summaries())
    if ep.empty:
        raise BenchError(f"no completed episodes under {runs}; run `bench run --out {runs}` first")
    return ep


def pick_suites(ep: pd.DataFrame, suites: str | None) -> list[str]:
    """`--suite a,b` (default: every suite in the results), checked against the results; a
    ladder's name (`ladder`) not in the results picks its rungs (`ladder-gap<g>`)."""
    have = sorted(ep.suite.unique())
    if not suites:
        return have
    picked = []
    for name in (s.strip() for s in suites.split(",") if s.strip()):
        rungs = [s for s in have if s not in picked and re.fullmatch(re.escape(name) + r"-gap[0-9.e+-]+", s)]
        rungs.sort(key=lambda s: float(s.rsplit("-gap", 1)[1]))
        picked += [name] if name in have or not rungs else rungs
    missing = [s for s in picked if s not in have]
    if missing or not picked:
        raise BenchError(f"no episodes of suite {', '.join(missing) or repr(suites)} in the results; "
                         f"they hold: {', '.join(have)}")
    return picked


def load_tasks(names: set[str], refs: list[str], say: Callable[[str], None]) -> dict[str, Task]:
    """The tasks behind the results: built-in ones by name, the others from `refs` (spec paths);
    `say` names those left without (no landscape, no near-optimum share)."""
    from bench.gym.registry import load_task, task_names

    tasks = {t.name: t for t in map(load_task, refs)}
    tasks |= {n: load_task(n) for n in sorted(names & set(task_names())) if n not in tasks}
    for name in sorted(names - set(tasks)):
        say(f"no landscape or near-optimum share for {name}: not a built-in task; pass --task "
            "path/to/spec.yaml")
    return tasks


def target_proposals(store: Store, ep: pd.DataFrame, tasks: dict[str, Task]) -> pd.DataFrame:
    """One row per target-fidelity trial of each (suite, task)'s largest budget, read from the
    trial logs, with its experiment's near-optimum threshold (`bench.metrics.near_threshold`) and
    the share of the pool a uniform draw reaches."""
    ep = ep[ep.task.isin(tasks)]
    ep = ep[ep.budget == ep.groupby(["suite", "task"]).budget.transform("max")]
    pools: dict[tuple[str, str], tuple[str, float, float]] = {}
    rows = []
    for r in ep[KEY_COLS].itertuples(index=False):
        task = tasks[r.task]
        if (r.task, r.experiment) not in pools:
            target = task.experiment(r.experiment).target.name
            values = task.arrays(r.experiment, target)[1]
            threshold = near_threshold(values, task.objective.direction)
            reached = values <= threshold if task.objective.direction == "minimize" else values >= threshold
            pools[r.task, r.experiment] = target, threshold, float(reached.mean())
        target, threshold, uniform = pools[r.task, r.experiment]
        trials = store.trials(EpisodeKey(*r))
        rows += [{"suite": r.suite, "task": r.task, "method": r.method, "experiment": r.experiment,
                  "value": t["value"], "threshold": threshold, "uniform": uniform,
                  "direction": task.objective.direction} for t in trials if t["fidelity"] == target]
    return pd.DataFrame(rows, columns=["suite", "task", "method", "experiment", "value", "threshold",
                                       "uniform", "direction"])


def cd_results(ep: pd.DataFrame, metric: str = METRIC) -> list[tuple[float, object, int, list[str]]]:
    """Per budget of one suite: (budget, autorank result on `metric`, experiments, methods left
    out), where at least CD_MIN_EXPERIMENTS experiments and CD_MIN_METHODS complete methods exist."""
    out = []
    for budget, group in ep.groupby("budget", sort=True):
        scores, left_out = experiment_scores(group, metric)
        if len(scores) >= CD_MIN_EXPERIMENTS and scores.shape[1] >= CD_MIN_METHODS:
            out.append((budget, critical_difference(scores), len(scores), left_out))
    return out


def suite_ranks(ep: pd.DataFrame, metric: str = METRIC) -> pd.DataFrame:
    """`rank_curves` on `metric` per task and, with several tasks, across them (task `all`) at the
    largest budget every task has: after each trial, the mean of the per-task mean ranks (each
    task weighs once; `rank_cells` sums the tasks' cells), for the methods that ran every task."""
    ranks = rank_curves(ep, check_metric(metric))
    if ep.task.nunique() > 1:
        common = set.intersection(*(set(g.budget) for _, g in ep.groupby("task")))
        at = ranks[ranks.budget == max(common)] if common else ranks.iloc[:0]
        if not at.empty:
            across = (at.groupby(["suite", "budget_kind", "budget", "trial", "method"], sort=True)
                      .agg(rank_mean=("rank_mean", "mean"), rank_cells=("rank_cells", "sum"),
                           tasks=("task", "nunique"))
                      .reset_index().assign(task=ALL_TASKS))
            across = across[across.tasks == at.task.nunique()]
            ranks = pd.concat([ranks, across[ranks.columns]], ignore_index=True)
    return ranks


def write_figures(store: Store, ep: pd.DataFrame, board: pd.DataFrame, out: Path, suites: list[str],
                  tasks: dict[str, Task], metric: str = METRIC) -> list[Drawn]:
    """Every figure of these suites on `metric` (the extrapolation figure from every trial suite in
    `ep`, a ladder figure per distance ladder among them, landscapes of `tasks` in them) into `out`,
    PNG and PDF; `board` is `leaderboard(ep, metric)`."""
    check_metric(metric)
    drawn = []

    def keep(fig, kind: str, stem: str, **where) -> None:
        if fig is not None:
            drawn.append(Drawn(kind, stem, plots.save(fig, out, stem), **where))

    simulated = set(ep.task[ep.simulated.astype(bool)])
    for suite in suites:
        se = ep[ep.suite == suite]
        keep(plots.regret_figure(se, suite, metric), "regret", f"regret_{suite}", suite=suite)
        if (se.budget_kind == "trials").all():
            keep(plots.rank_figure(suite_ranks(se, metric), suite, simulated, metric), "rank",
                 f"rank_{suite}", suite=suite)
        keep(plots.cd_figure(cd_results(se, metric), suite, metric), "cd", f"cd_{suite}", suite=suite)
        proposals = target_proposals(store, se, tasks)
        if not proposals.empty:
            keep(plots.near_optimum_figure(near_optimum(proposals), suite, simulated), "near_optimum",
                 f"near_optimum_{suite}", suite=suite)
        disc = discrimination(board[board.suite == suite], metric)
        keep(plots.discrimination_figure(disc, suite, metric), "discrimination", f"discrimination_{suite}",
             suite=suite)
    keep(plots.extrapolation_figure(ep, metric), "extrapolation", "extrapolation")
    points, head = ladder(ep[ep.suite.isin(suites)], metric, board)
    for name in sorted(points.ladder.unique()):
        keep(plots.ladder_figure(points, head, name, metric), "ladder", f"ladder_{name}", suite=name)
    for name in sorted(set(ep[ep.suite.isin(suites)].task) & set(tasks)) or sorted(tasks):
        keep(plots.landscape_figure(tasks[name]), "landscape", f"landscape_{name}", task=name)
    return drawn


def _interval(mean, lo, hi) -> list[str]:
    return ["-" if pd.isna(m) else f"{m:.3g} [{a:.3g}, {b:.3g}]"
            for m, a, b in zip(mean, lo, hi, strict=True)]


def _basis(experiments: pd.Series, tasks: pd.Series | None = None, few: pd.Series | None = None
           ) -> list[str]:
    """What an interval rests on: '95%, n exps', or where `few` (default: below FEW_EXPERIMENTS
    experiments) 'range of n exps'; `tasks`: 'in t tasks'."""
    tasks = [None] * len(experiments) if tasks is None else list(tasks)
    few = [int(n) < FEW_EXPERIMENTS for n in experiments] if few is None else list(few)
    out = []
    for n, t, f in zip(experiments, tasks, few, strict=True):
        n = int(n)
        where = f" in {int(t)} tasks" if t is not None else ""
        out.append(f"range of {n} exp{'s' * (n != 1)}{where}" if f else f"95%, {n} exps{where}")
    return out


def _fmt(values: pd.Series, spec: str) -> pd.Series:
    return values.map(lambda v: "-" if pd.isna(v) else format(v, spec))


def board_view(sub: pd.DataFrame, metric: str = METRIC, compact: bool = False) -> pd.DataFrame:
    """Leaderboard rows as printed and reported, on `metric`: its mean and IQM with their
    intervals as text and what the intervals rest on (`_basis`), the other metric's mean,
    divergence, failures; GPU-hours per episode (cost suites: the share of the budget spent); LLM
    tokens, dollars and fallbacks when any method used them. `compact` (a terminal's width): the
    IQM without its interval, and no cells, pool or other metric (they stay in the CSV)."""
    m = check_metric(metric)
    other = next(o for o in METRICS if o != m)
    view = pd.DataFrame({
        "method": sub.method, "budget": sub.budget.map("{:g}".format),
        f"{m} mean [interval]": _interval(sub[f"{m}_mean"], sub[f"{m}_lo"], sub[f"{m}_hi"]),
        "IQM [interval]": _interval(sub[f"{m}_iqm"], sub[f"{m}_iqm_lo"], sub[f"{m}_iqm_hi"]),
        "interval": _basis(sub.experiments, few=sub.few_experiments.astype(bool)),
        "median": _fmt(sub[f"{m}_median"], ".3g"), "rank": _fmt(sub.rank_mean, ".2f"),
        "cells": sub.rank_cells, "win% vs centroid": _fmt(100 * sub.win_vs_centroid, ".0f"),
        f"{other} mean": _fmt(sub[f"{other}_mean"], ".3g"),
        "diverged": _fmt(sub.diverged_rate, ".0%"), "episodes": sub.episodes, "failed": sub.failed,
        "pool": _fmt(sub.pool_size, "g"), "GPU-h": _fmt(sub.gpu_hours_mean, ".4g"),
    })
    if (sub.budget_kind == "cost").any():
        view["budget spent"] = _fmt(sub.budget_spent, ".0%")
    if sub.tokens_in_mean.notna().any():
        view["tokens in"] = _fmt(sub.tokens_in_mean, ".0f")
        view["tokens out"] = _fmt(sub.tokens_out_mean, ".0f")
        view["$ total"], view["fallbacks"] = _fmt(sub.dollars_total, ".2f"), sub.fallbacks
    if compact:
        view = view.drop(columns=["cells", "pool", f"{other} mean"])
        view["IQM [interval]"] = _fmt(sub[f"{m}_iqm"], ".3g")
        view = view.rename(columns={"IQM [interval]": "IQM"})
    return view


def across_view(rows: pd.DataFrame) -> pd.DataFrame:
    """`across_tasks` rows as printed and reported: the mean of the per-task means with its
    interval and what it rests on, the mean of the per-task ranks, divergence, failures."""
    m = check_metric(rows.metric.iloc[0]) if len(rows) else METRIC
    return pd.DataFrame({
        "method": rows.method, "budget": rows.budget.map("{:g}".format),
        f"{m} mean of task means [interval]": _interval(rows["mean"], rows.lo, rows.hi),
        "interval": _basis(rows.experiments, rows.tasks,
                           rows.few_experiments.astype(bool) if "few_experiments" in rows else None),
        "rank (mean over tasks)": _fmt(rows.rank_mean, ".2f"), "diverged": _fmt(rows.diverged_rate, ".0%"),
        "tasks": rows.tasks, "episodes": rows.episodes, "failed": rows.failed,
    })


def shown_budgets(budgets: pd.Series) -> list[float]:
    """The budgets a ladder's or the variants' table shows: HEADLINE_BUDGETS where there are any,
    else the smallest ones."""
    have = sorted(budgets.unique())
    return [b for b in HEADLINE_BUDGETS if b in have] or have[: len(HEADLINE_BUDGETS)]


def budget_mark(kind: str) -> str:
    """How a budget is written: `T` for target trials, `C` for a cost budget (target-run equivalents)."""
    return "C" if kind == "cost" else "T"


def missing_note(missing: pd.DataFrame, suite: str) -> str | None:
    """One line naming the methods of `suite` left out of its `all tasks` rows (`missing_tasks`),
    with the tasks they lack and at which budgets; None when none is (`without_apart`)."""
    rows = without_apart(missing[missing.suite == suite])
    if rows.empty:
        return None
    said = [f"{method} ({g.ran.iloc[0]} of {g.of.iloc[0]} tasks, not {lack}; "
            f"{budget_mark(g.budget_kind.iloc[0])}={', '.join(f'{b:g}' for b in g.budget)})"
            for (method, lack), g in rows.groupby(["method", "missing"], sort=True)]
    return "Not in `all tasks` (it averages only the methods that ran every task): " + "; ".join(said) + "."


def identical_note(same: pd.DataFrame, board: pd.DataFrame, suite: str) -> str | None:
    """One line naming the methods of `suite` that score the same on every cell (`identical`),
    at HEADLINE_BUDGETS, with the tasks where they do (`board`: the leaderboard, for the suite's tasks);
    None when none do. Variants ranked apart are not named (`without_apart`)."""
    rows = same[(same.suite == suite) & same.budget.isin(HEADLINE_BUDGETS)]
    apart = ranked_apart({m for methods in rows.methods for m in methods})
    rows = rows.assign(methods=[tuple(m for m in methods if m not in apart) for methods in rows.methods])
    rows = rows[rows.methods.map(len) > 1]
    if rows.empty:
        return None
    tasks_at = board[board.suite == suite].groupby("budget").task.nunique()
    said = []
    for (kind, budget, methods), g in rows.groupby(["budget_kind", "budget", "methods"], sort=True):
        every = g.task.nunique() == tasks_at[budget] > 1
        tasks = "every task" if every else ", ".join(sorted(g.task))
        said.append(f"{budget_mark(kind)}={budget:g}: {' = '.join(methods)} ({tasks})")
    return ("The same score on every (experiment, seed) cell, e.g. the same seeded first trial (common "
            "random numbers): " + "; ".join(said) + ".")


def headline_table(board: pd.DataFrame, overall: pd.DataFrame, suite: str, metric: str = METRIC
                   ) -> pd.DataFrame:
    """Methods x (task, T=b, or C=b for a cost suite): mean `metric` at HEADLINE_BUDGETS (one the
    suite lacks is replaced by its smallest other budget), every task, then all of them (`overall`:
    `across_tasks`, each task weighed once); simulated tasks say so; no variant ranked apart
    (`without_apart`)."""
    check_metric(metric)
    board = without_apart(board[board.suite == suite])
    across = without_apart(overall[overall.suite == suite]).rename(columns={"mean": f"{metric}_mean"})
    across = across.assign(simulated=bool(board.simulated.any()))
    rows = pd.concat([board[["task", "method", "budget", f"{metric}_mean", "simulated"]],
                      across[["task", "method", "budget", f"{metric}_mean", "simulated"]]])
    have = sorted(rows.budget.unique())
    budgets = [b for b in HEADLINE_BUDGETS if b in have]
    budgets = sorted(budgets + [b for b in have if b not in budgets][: len(HEADLINE_BUDGETS) - len(budgets)])
    rows = rows[rows.budget.isin(budgets)]
    sim = rows.groupby("task").simulated.any()
    label = {t: ("all tasks" + (" (incl. simulated)" if sim[t] else "")) if t == ALL_TASKS
             else t + (" (simulated)" if sim[t] else "") for t in sim.index}
    order = [*sorted(set(rows.task) - {ALL_TASKS}), ALL_TASKS]
    table = rows.pivot_table(index="method", columns=["task", "budget"], values=f"{metric}_mean")
    table = table.reindex(columns=[(t, b) for t in order for b in budgets if (t, b) in table.columns])
    mark = budget_mark(board.budget_kind.iloc[0])
    table.columns = pd.MultiIndex.from_tuples([(label[t], f"{mark}={b:g}") for t, b in table.columns])
    return table


def latex_table(table: pd.DataFrame, caption: str, label: str) -> str:
    """The headline table as LaTeX (booktabs rules), three decimals, the best of each column bold."""
    return (table.style.format("{:.3f}", na_rep="--").format_index(escape="latex", axis=0)
            .format_index(escape="latex", axis=1).hide(names=True, axis="index")
            .highlight_min(axis=0, props="textbf:--rwrap;")
            .to_latex(hrules=True, multicol_align="c", caption=caption, label=label,
                      column_format="l" + "r" * table.shape[1], position="t"))


def markdown_table(df: pd.DataFrame) -> str:
    """A GitHub-flavoured Markdown table of `df` (its index is not shown)."""
    cells = [[str(c) for c in df.columns]] + [[str(v) for v in row] for row in df.itertuples(index=False)]
    cells = [[c.replace("|", "\\|") for c in row] for row in cells]
    return "\n".join(["| " + " | ".join(cells[0]) + " |", "|" + "---|" * len(cells[0])]
                     + ["| " + " | ".join(row) + " |" for row in cells[1:]])


def headline_markdown(table: pd.DataFrame) -> pd.DataFrame:
    """The headline table as text cells, the best of each column in bold."""
    text = table.map(lambda v: "-" if np.isnan(v) else f"{v:.3f}")
    text = text.mask(table.eq(table.min()), "**" + text + "**")
    text.columns = [f"{t} {b}" for t, b in table.columns]
    return text.reset_index()


class _Doc:
    """Report blocks rendered twice: Markdown and HTML, the figures linked."""

    def __init__(self, root: Path, metric: str = METRIC):
        self.root, self.metric, self.md, self.html = root, metric, [], []

    def heading(self, level: int, text: str, simulated: bool = False) -> None:
        self.md.append("#" * level + " " + text + (" — ⚠ SIMULATED" if simulated else ""))
        badge = ' <span class="sim">SIMULATED</span>' if simulated else ""
        self.html.append(f"<h{level}>{html.escape(text)}{badge}</h{level}>")

    def text(self, text: str) -> None:
        self.md.append(text)
        self.html.append("<p>" + re.sub(r"`([^`]+)`", r"<code>\1</code>", html.escape(text)) + "</p>")

    def table(self, df: pd.DataFrame) -> None:
        self.md.append(markdown_table(df))
        body = df.to_html(index=False, escape=True, na_rep="-", border=0)
        self.html.append(re.sub(r"\*\*([^*]+)\*\*", r"<b>\1</b>", body))

    def figure(self, drawn: Drawn) -> None:
        png = drawn.paths[0]
        text, link = figure_caption(drawn.kind, self.metric), png.relative_to(self.root).as_posix()
        self.md.append(f"![{drawn.stem}]({link})\n\n*{text}*")
        self.html.append(f'<figure><img alt="{drawn.stem}" src="{html.escape(link)}">'
                         f"<figcaption>{html.escape(text)}</figcaption></figure>")

    def write(self, title: str) -> list[Path]:
        md, page = self.root / "report.md", self.root / "report.html"
        md.write_text("\n\n".join(self.md) + "\n")
        page.write_text(f"<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>{html.escape(title)}"
                        f"</title><style>{_CSS}</style></head><body>\n" + "\n".join(self.html)
                        + "\n</body></html>\n")
        return [md, page]


_CSS = ("body{font-family:sans-serif;max-width:1200px;margin:2em auto;padding:0 1em;color:#222}"
        "table{border-collapse:collapse;font-size:13px;margin:1em 0}td,th{padding:2px 8px;"
        "border-bottom:1px solid #ddd;text-align:right}td:first-child,th:first-child{text-align:left}"
        "img{max-width:100%}figcaption{font-size:13px;color:#555}"
        ".sim{background:#c0392b;color:#fff;font-size:12px;padding:1px 6px;border-radius:3px}")


def write_report(runs: Path, out: Path, suites: str | None = None, task_refs: list[str] = (),
                 say: Callable[[str], None] = print, metric: str = METRIC) -> list[Path]:
    """The report of the results under `runs` (these suites; default all) into `out`, its tables,
    ranks and figures on `metric`."""
    check_metric(metric)
    ep = load_episodes(runs)
    picked = pick_suites(ep, suites)
    Store(out).check_writable()
    board = leaderboard(ep, metric)
    overall = across_tasks(ep[ep.suite.isin(picked)], metric, board[board.suite.isin(picked)])
    missing = missing_tasks(ep[ep.suite.isin(picked)])
    same = identical(ep[ep.suite.isin(picked)], metric)
    written = [out / "leaderboard.csv", out / "leaderboard_overall.csv"]
    board.to_csv(written[0], index=False)
    overall.to_csv(written[1], index=False)
    tasks = load_tasks(set(ep[ep.suite.isin(picked)].task), list(task_refs), say)
    drawn = write_figures(Store(runs), ep, board, out / "figures", picked, tasks, metric)
    doc = _Doc(out, metric)
    doc.heading(1, "LLMConfig-Bench report")
    doc.text(f"Results: `{runs}`, {len(ep)} completed episodes; suites {', '.join(picked)}; metric "
             f"{metric}. Regenerate with `bench report`" + (f" --metric {metric}" if metric != METRIC else "")
             + ".")
    doc.text(legend(metric))
    for suite in picked:
        written += _suite_section(doc, suite, board, overall, missing, same, drawn, out, metric)
    written += _ladder_section(doc, ep[ep.suite.isin(picked)], board, drawn, out, metric)
    written += _variants_section(doc, ep[ep.suite.isin(picked)], out, metric)
    for d in drawn:
        if d.suite is None and d.task is None:
            doc.heading(2, "Across suites: extrapolation distance")
            doc.figure(d)
    landscapes = [d for d in drawn if d.task is not None]
    if landscapes:
        doc.heading(2, "Landscapes: the optimum across fidelities")
        for d in landscapes:
            doc.heading(3, d.task, simulated=tasks[d.task].simulated)
            doc.figure(d)
    left = unpaired(ep[ep.suite.isin(picked)])
    if not left.empty:
        doc.heading(2, "Left out of the paired comparisons")
        doc.table(left.assign(budget=left.budget.map("{:g}".format)))
    return written + doc.write("LLMConfig-Bench report") + [p for d in drawn for p in d.paths]


def _suite_section(doc: _Doc, suite: str, board: pd.DataFrame, overall: pd.DataFrame, missing: pd.DataFrame,
                   same: pd.DataFrame, drawn: list[Drawn], out: Path, metric: str = METRIC) -> list[Path]:
    """One suite: headline table (also written as .tex and .md; `same`: `identical`, named under
    it), the leaderboard per task, then every task weighed once (`missing`: `missing_tasks`, those
    left out of it), the figures."""
    from bench.gym.suites import load_suite

    doc.heading(2, f"Suite {suite}")
    try:
        doc.text(load_suite(suite).description.strip())
    except BenchError:  # a derived suite (`paper-gap30`) has no file of its own
        pass
    table = headline_table(board, overall, suite, metric)
    budgets = sorted({b for _, b in table.columns}, key=lambda b: float(b[2:]))
    cost = (board[board.suite == suite].budget_kind == "cost").any()
    unit = "target-run equivalents of GPU-hours" if cost else "target trials"
    text = (f"Suite {suite}: mean {metric} ({_SCALE[metric].split(';')[0]}) at {' and '.join(budgets)} "
            f"{unit}, per task, then all tasks (the mean of the per-task means, each task "
            "weighed once); best per column in bold.")
    note = " ".join(filter(None, [missing_note(missing, suite), identical_note(same, board, suite)]))
    tex, md = out / f"table_{suite}.tex", out / f"table_{suite}.md"
    tex.write_text(latex_table(table, text, f"tab:{suite}"))
    text += f" {note}" if note else ""
    md.write_text(f"{text}\n\n{markdown_table(headline_markdown(table))}\n")
    doc.heading(3, f"Headline: {metric} at {' and '.join(budgets)}")
    doc.text(text)
    doc.table(headline_markdown(table))
    doc.text(f"LaTeX: `{tex.name}`; Markdown: `{md.name}`.")
    for task, sub in board[board.suite == suite].groupby("task", sort=True):
        doc.heading(3, task, simulated=sub.simulated.any())
        doc.table(board_view(sub, metric))
    rows = overall[overall.suite == suite]
    if rows.tasks.max() > 1:
        sim = sorted(board[(board.suite == suite) & board.simulated].task.unique())
        doc.heading(3, "All tasks, each weighed once (mean of per-task means, mean of per-task ranks)"
                    + (f"; includes simulated {', '.join(sim)}" if sim else ""))
        doc.table(across_view(rows))
    doc.heading(3, "Figures")
    for d in drawn:
        if d.suite == suite and d.kind != "ladder":
            doc.figure(d)
    return [tex, md]


def ladder_table(headline: pd.DataFrame, name: str) -> pd.DataFrame:
    """Methods x (task, T=b) of one ladder: the headline mean (`bench.metrics.ladder`: over the
    distances each task offers) at HEADLINE_BUDGETS (else its smallest budgets); with several
    tasks then `all tasks`, the mean of a method's task headlines (each task weighed once), for
    the methods that ran every task of the budget (others: NaN); no variant ranked apart
    (`without_apart`)."""
    rows = without_apart(headline[headline.ladder == name])
    budgets = shown_budgets(rows.budget)
    rows = rows[rows.budget.isin(budgets)]
    if rows.task.nunique() > 1:
        across = rows.groupby(["method", "budget"], as_index=False).agg(mean=("mean", "mean"),
                                                                        n=("task", "size"))
        every = rows.groupby("budget").task.nunique()
        across["mean"] = across["mean"].where(across.n == across.budget.map(every))
        rows = pd.concat([rows, across.drop(columns="n").assign(task=ALL_TASKS)])
    sim = rows.groupby("task").simulated.any()
    label = {t: "all tasks" if t == ALL_TASKS else t + (" (simulated)" if sim[t] else "") for t in sim.index}
    order = sorted(set(rows.task) - {ALL_TASKS}) + ([ALL_TASKS] if ALL_TASKS in set(rows.task) else [])
    table = rows.pivot_table(index="method", columns=["task", "budget"], values="mean")
    table = table.reindex(columns=[(t, b) for t in order for b in budgets if (t, b) in table.columns])
    table.columns = pd.MultiIndex.from_tuples([(label[t], f"T={b:g}") for t, b in table.columns])
    return table


def ladder_notes(points: pd.DataFrame, headline: pd.DataFrame, name: str) -> list[str]:
    """Per task of one ladder: the distances it offers (with the experiments at each) and those
    of the grid it does not (budgets that agree share a line); then any method whose headline
    lacks an offered distance."""
    points, headline = points[points.ladder == name], headline[headline.ladder == name]
    lines = []
    for task, rows in headline.groupby("task", sort=True):
        said: dict[str, list[str]] = {}
        for budget, r in rows.groupby("budget", sort=True):
            at = points[(points.task == task) & (points.budget == budget)].groupby("gap").experiments.max()
            offered = ", ".join(f"{g:g} ({n} exp{'s' * (n != 1)})" for g, n in at.items())
            missing = ", ".join(f"{g:g}" for g in r.missing.iloc[0]) or "none"
            said.setdefault(f"offers g = {offered}; not offered: {missing}", []).append(f"{budget:g}")
        lines += [f"{name} / {task} T={', '.join(b)}: {text}" for text, b in said.items()]
    short = headline[headline.gaps < headline.offered.map(len)]
    for r in short.itertuples(index=False):
        lines.append(f"{name} / {r.task} T={r.budget:g}: {r.method} ran {r.gaps} of the {len(r.offered)} "
                     "offered distances; its mean is over those")
    return lines


def ladder_views(ep: pd.DataFrame, board: pd.DataFrame, metric: str = METRIC
                 ) -> list[tuple[str, pd.DataFrame, list[str]]]:
    """Per distance ladder in `ep`, for a terminal: a title, the headline table as text
    (`ladder_table`) and `ladder_notes`; `board` is `leaderboard(ep, metric)`."""
    points, head = ladder(ep, metric, board)
    out = []
    for name in sorted(points.ladder.unique()):
        table = ladder_table(head, name)
        text = table.map(lambda v: "-" if np.isnan(v) else f"{v:.3f}")
        text.columns = [f"{t} {b}" for t, b in table.columns]
        title = f"{name}: mean {metric} over the distances each task offers (each distance weighed once)"
        out.append((title, text.reset_index(), ladder_notes(points, head, name)))
    return out


def _ladder_section(doc: _Doc, ep: pd.DataFrame, board: pd.DataFrame, drawn: list[Drawn], out: Path,
                    metric: str = METRIC) -> list[Path]:
    """The distance ladders among the picked suites: headline (also written as .tex and .md),
    the distances offered, the metric per distance (a CSV), the figure."""
    from bench.gym.suites import load_suite

    points, head = ladder(ep, metric, board)
    written = []
    for name in sorted(points.ladder.unique()):
        doc.heading(2, f"Distance ladder: {name}")
        try:
            doc.text(load_suite(name).description.strip())
        except BenchError:  # a ladder from a suite file elsewhere
            pass
        table = ladder_table(head, name)
        budgets = sorted({b for _, b in table.columns}, key=lambda b: float(b[2:]))
        text = (f"Ladder {name}: mean {metric} ({_SCALE[metric].split(';')[0]}) at {' and '.join(budgets)} "
                "target trials per task: the mean over the extrapolation distances g the task offers of "
                "the mean at each g (experiments weigh equally; each distance weighed once); all tasks: "
                "the mean of the task headlines, for methods that ran every task; best per column in bold.")
        tex, md, csv = out / f"table_{name}.tex", out / f"table_{name}.md", out / f"ladder_{name}.csv"
        tex.write_text(latex_table(table, text, f"tab:{name}"))
        md.write_text(f"{text}\n\n{markdown_table(headline_markdown(table))}\n")
        points[points.ladder == name].to_csv(csv, index=False)
        doc.heading(3, f"Headline: {metric} over the distances each task offers")
        doc.text(text)
        doc.table(headline_markdown(table))
        doc.heading(3, "Distances offered")
        for line in ladder_notes(points, head, name):
            doc.text(line)
        doc.text(f"LaTeX: `{tex.name}`; Markdown: `{md.name}`; {metric} at each distance: `{csv.name}`.")
        for d in drawn:
            if d.kind == "ladder" and d.suite == name:
                doc.figure(d)
        written += [tex, md, csv]
    return written


def variants_table(diffs: pd.DataFrame, against: str, rungs: set[str] = frozenset()) -> pd.DataFrame:
    """(task, variant) x (suite or ladder, T=b) of `against`'s variants (`bench.metrics.differences`
    rows, less the suites in `rungs`: a ladder shows through its headline): the paired difference
    and its interval as text, bold where the interval excludes 0, a dagger where it rests on fewer
    than FEW_EXPERIMENTS experiments (a ladder: at some distance). Budgets: HEADLINE_BUDGETS where
    a suite has them, else its smallest."""
    rows = diffs[(diffs.against == against) & ~diffs.suite.isin(rungs)]
    columns = {}
    for suite, g in rows.groupby("suite", sort=True):
        mark = budget_mark(g.budget_kind.iloc[0])
        for b in shown_budgets(g.budget):
            at = g[g.budget == b].set_index(["task", "method"])
            columns[f"{suite} {mark}={b:g}"] = at.apply(_difference_text, axis=1)
    table = pd.DataFrame(columns).sort_index().fillna("-")
    return table.rename_axis(["task", "variant"]).reset_index()


def _difference_text(r: pd.Series) -> str:
    """One `differences` row as a table cell: `+0.012 [-0.004, +0.030]`, marked as `variants_table` says."""
    few = "†" if r.fewest_experiments < FEW_EXPERIMENTS else ""
    text = f"{r['diff']:+.3f} [{r.lo:+.3f}, {r.hi:+.3f}]{few}"
    return f"**{text}**" if r.lo > 0 or r.hi < 0 else text


def variants_views(ep: pd.DataFrame, metric: str = METRIC) -> tuple[pd.DataFrame, dict[str, pd.DataFrame]]:
    """Each preset's variants in `ep` (`bench.methods.variants`) against it: every
    `bench.metrics.differences` row, and per preset its `variants_table`."""
    diffs = differences(ep, variants(set(ep.method)), metric)
    rungs = set(ladder_rungs(ep)[0])
    presets = sorted(diffs.against.unique())
    return diffs, {against: variants_table(diffs, against, rungs) for against in presets}


def _variants_section(doc: _Doc, ep: pd.DataFrame, out: Path, metric: str = METRIC) -> list[Path]:
    """`variants_views`: a table per preset, every row in variants.csv."""
    diffs, tables = variants_views(ep, metric)
    if diffs.empty:
        return []
    csv = out / "variants.csv"
    diffs.to_csv(csv, index=False)
    doc.heading(2, "Variants against their preset")
    doc.text(f"A preset's variants (the same optimizer, other settings: ablations, warm starts) against "
             f"it, paired on the (experiment, seed) cells both ran: the mean over experiments of the mean "
             f"over seeds of variant - preset {metric} (> 0: the variant is worse) [95% interval from a "
             "hierarchical bootstrap]; bold: the interval excludes 0; †: fewer than "
             f"{FEW_EXPERIMENTS} experiments (a range, not a confidence statement). A ladder's column is "
             "the mean over the distances both ran, experiments resampled once for all of them; its † "
             "marks a distance with fewer. "
             f"Every suite, budget and distance: `{csv.name}`.")
    for against, table in tables.items():
        doc.heading(3, f"Variants of {against}")
        doc.table(table)
    return [csv]
