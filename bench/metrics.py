"""Scores of completed episodes, aggregated: the leaderboard, ranks, paired comparisons.

Every score is computed once, by `bench.scores.Scorer`, when an episode ends: `pregret` (the
primary score: the share of the target pool strictly better than the best target run found; 0 =
the optimum, 1 = the worst), `regret` and `nregret` (secondary), `diverged` (the best target run
diverged), and a failure's worst-candidate score. Trial-budget suites score the best target
outcome seen; cost-budget suites score `recommend()`.

Aggregation, per (suite, task, budget) and method, for each metric M in `METRICS`:
- `M_mean`: the mean over experiments of the mean over seeds (experiments weigh equally);
  `M_iqm`: the interquartile mean of all episodes (`scipy.stats.trim_mean` at 25%), `M_median`.
- 95% intervals (`_lo`, `_hi`) from a hierarchical percentile bootstrap: experiments resampled
  with replacement, then seeds within each; `M_sem` is the bootstrap standard deviation of the
  mean. A method that gives the same trials on every seed gets the variation of its experiments
  only: repeating it cannot shrink its interval. `BOOTSTRAP` resamples, seed 0. `experiments`
  says how many independent experiments an interval rests on; below `FEW_EXPERIMENTS` it is a
  range of few experiments, not a confidence statement (`few_experiments`).
- `diverged_rate`: the share of episodes whose best target run diverged; `failed`: how many
  episodes failed (scored as the worst candidate, pregret 1).
- Paired comparisons, on the leaderboard's `metric` (default pregret): `rank_mean` (1 = best,
  ties share their mean rank) and `win_vs_centroid` (share of cells where the method beats the
  `centroid` floor, ties count half) use only the (experiment, seed) cells that every method of
  the group has; `rank_cells` says how many. `unpaired()` lists what was left out. A method
  ranked apart (`bench.methods.ranked_apart`: an ablation) is ranked among the others and itself
  (`rankings`), so that adding one moves no other method's rank or cells.
- Across tasks (`across_tasks`): a task is weighed once: the mean of per-task means, its
  interval from the per-task bootstraps, and the mean of per-task ranks; never a pool of
  episodes (a task with many experiments, or heavy tails, must not decide it alone). Only the
  methods that ran every task of the suite and budget get a row (a mean over fewer tasks is not
  comparable); `missing_tasks` lists the others.
- Distance ladders (`ladder`): per distance g the rung's leaderboard mean; the headline per (task,
  method) is the mean over the distances the task offers, each weighed once; the distances of
  the ladder's grid a task does not offer are listed.
- Variants (`differences`): a method against another (an ablation against its preset), paired
  cell by cell: the mean difference, its interval, the share of cells it wins; per suite, and
  over each ladder's distances.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator

import numpy as np
import pandas as pd
from scipy.stats import trim_mean

from bench.errors import BenchError
from bench.loop import USAGE
from bench.methods import ranked_apart
from bench.store import EpisodeKey
from bench.summary import EpisodeSummary

KEY_COLS = ["suite", "task", "method", "experiment", "budget_kind", "budget", "seed"]
GROUP = ["suite", "task", "budget_kind", "budget"]
METRICS = ("pregret", "nregret")
METRIC = "pregret"  # the primary score
STATS = ("mean", "sem", "lo", "hi", "iqm", "iqm_lo", "iqm_hi", "median")
EPISODE_COLS = [*KEY_COLS, "score", "regret", "nregret", "pregret", "nregret_curve", "pregret_curve",
                "diverged", "failed", "gpu_hours", "budget_spent", "ask_seconds", "trials", "pool_size",
                "extrapolation", "gap", "fold", "simulated", "tokens_in", "tokens_out", "dollars",
                "fallbacks"]
LEADERBOARD_COLS = ["suite", "task", "method", "budget_kind", "budget", "metric",
                    *(f"{m}_{s}" for m in METRICS for s in STATS), "regret_mean", "diverged_rate",
                    "rank_mean", "rank_cells", "win_vs_centroid", "episodes", "experiments",
                    "few_experiments", "failed", "pool_size", "gpu_hours_mean", "budget_spent",
                    "ask_seconds_mean", "tokens_in_mean", "tokens_out_mean", "dollars_total", "fallbacks",
                    "simulated"]
BOOTSTRAP = 2000
FLOOR = "centroid"
FEW_EXPERIMENTS = 5  # below this many experiments an interval is a range, not a confidence statement


def check_metric(metric: str) -> str:
    """`metric`, or a BenchError naming the known ones."""
    if metric not in METRICS:
        raise BenchError(f"unknown metric {metric!r}; known: {', '.join(METRICS)}")
    return metric


def _episode_row(key: EpisodeKey, s: EpisodeSummary) -> dict:
    sc, usage = s.scores, s.usage
    return {
        **key.record(), "score": sc["value"], "regret": sc["regret"], "nregret": sc["nregret"],
        "pregret": sc["pregret"], "nregret_curve": sc["nregret_curve"], "pregret_curve": sc["pregret_curve"],
        "diverged": sc["diverged"], "failed": s.failed is not None, "gpu_hours": s.gpu_hours,
        "budget_spent": s.gpu_hours / s.budget_gpu_hours if s.budget_gpu_hours else np.nan,
        "ask_seconds": s.ask_seconds, "trials": s.trials, "pool_size": s.pool_size,
        "extrapolation": s.extrapolation, "gap": s.gap, "fold": s.fold, "simulated": s.simulated,
        **{k: np.nan if usage.get(k) is None else usage[k] for k in USAGE},
        "fallbacks": usage.get("fallbacks", 0),
    }


def episodes_frame(episodes: Iterable[tuple[EpisodeKey, EpisodeSummary]]) -> pd.DataFrame:
    """One row per completed episode (`Store.summaries()`) with its scores and failure flag."""
    return pd.DataFrame([_episode_row(key, s) for key, s in episodes], columns=EPISODE_COLS)


def hierarchical_bootstrap(by_experiment: list[np.ndarray], n: int = BOOTSTRAP, seed: int = 0,
                           exps: np.ndarray | None = None) -> np.ndarray:
    """`n` resamples (n x experiments x seeds): experiments with replacement, then seeds within
    each (as many draws as the largest experiment has seeds, so experiments weigh equally).
    `exps`: the experiments' draw (n x experiments indices), when several resamplings must share
    it; an experiment without values then resamples as NaN."""
    rng = np.random.default_rng(seed)
    counts = np.array([len(v) for v in by_experiment])
    width = int(counts.max())
    table = np.full((len(by_experiment), width), np.nan)
    for i, v in enumerate(by_experiment):
        table[i, : len(v)] = v
    if exps is None:
        exps = rng.integers(len(by_experiment), size=(n, len(by_experiment)))
    seeds = (rng.random((n, len(by_experiment), width)) * counts[exps][..., None]).astype(int)
    return table[exps[..., None], seeds]


def _bootstrap_means(ep: pd.DataFrame, metric: str, seed: int = 0) -> tuple[list, np.ndarray, np.ndarray]:
    """Per-experiment values of `metric`, and the bootstrap draws of the mean and of the IQM."""
    by_exp = [g.to_numpy(float) for _, g in ep.groupby("experiment", sort=True)[metric]]
    draws = hierarchical_bootstrap(by_exp, seed=seed).reshape(BOOTSTRAP, -1)
    return by_exp, draws.mean(axis=1), trim_mean(draws, 0.25, axis=1)


def _metric_stats(ep: pd.DataFrame, metric: str) -> dict:
    """Point estimates and 95% bootstrap intervals of one method's `metric` in one group."""
    by_exp, means, iqms = _bootstrap_means(ep, metric)
    values = ep[metric].to_numpy(float)
    stats = {
        "mean": float(np.mean([v.mean() for v in by_exp])), "sem": float(means.std(ddof=1)),
        "lo": float(np.quantile(means, 0.025)), "hi": float(np.quantile(means, 0.975)),
        "iqm": float(trim_mean(values, 0.25)), "iqm_lo": float(np.quantile(iqms, 0.025)),
        "iqm_hi": float(np.quantile(iqms, 0.975)), "median": float(np.median(values)),
    }
    return {f"{metric}_{k}": v for k, v in stats.items()}


def _summary_stats(ep: pd.DataFrame) -> dict:
    """Every metric's statistics and the counts of one method in one group."""
    experiments = ep["experiment"].nunique()
    return {
        **{k: v for m in METRICS for k, v in _metric_stats(ep, m).items()},
        "regret_mean": float(ep.groupby("experiment")["regret"].mean().mean()),
        "diverged_rate": float(ep["diverged"].astype(float).mean()),
        "episodes": len(ep), "experiments": experiments, "few_experiments": experiments < FEW_EXPERIMENTS,
        "failed": int(ep["failed"].sum()),
        "pool_size": float(ep.groupby("experiment")["pool_size"].first().median()),
        "gpu_hours_mean": float(ep["gpu_hours"].mean()), "budget_spent": float(ep["budget_spent"].mean()),
        "ask_seconds_mean": float(ep["ask_seconds"].mean()),
        "tokens_in_mean": float(ep["tokens_in"].astype(float).mean()),
        "tokens_out_mean": float(ep["tokens_out"].astype(float).mean()),
        "dollars_total": float(ep["dollars"].astype(float).sum(min_count=1)),
        "fallbacks": int(ep["fallbacks"].sum()), "simulated": bool(ep["simulated"].any()),
    }


def common_cells(group: pd.DataFrame) -> set[tuple[str, int]]:
    """(experiment, seed) cells that every method of the group has."""
    cells = [set(zip(g.experiment, g.seed, strict=True)) for _, g in group.groupby("method")]
    return set.intersection(*cells) if cells else set()


def rankings(group: pd.DataFrame) -> Iterator[tuple[list[str], pd.DataFrame]]:
    """The rankings of one group's methods, as (the methods it reports, the episodes it ranks):
    every method not ranked apart (`bench.methods.ranked_apart`), together; then each method
    ranked apart, among those and itself."""
    apart = ranked_apart(set(group.method))
    together = sorted(set(group.method) - apart)
    yield together, group[group.method.isin(together)]
    for method in sorted(apart):
        yield [method], group[group.method.isin([*together, method])]


def without_apart(rows: pd.DataFrame) -> pd.DataFrame:
    """`rows` without the methods ranked apart (`bench.methods.ranked_apart`: ablations), for what
    compares the methods of `--method all` alone (the paper-layout tables, `discrimination`)."""
    return rows[~rows.method.isin(ranked_apart(set(rows.method)))]


def paired(group: pd.DataFrame, metric: str = METRIC) -> pd.DataFrame:
    """`metric` as a (experiment, seed) x method table over the common cells."""
    keep = common_cells(group)
    rows = group[[(e, s) in keep for e, s in zip(group.experiment, group.seed, strict=True)]]
    return rows.pivot_table(index=["experiment", "seed"], columns="method", values=metric)


def identical(ep: pd.DataFrame, metric: str = METRIC) -> pd.DataFrame:
    """Per (suite, task, budget): the sets of methods (`methods`, a tuple of 2 or more) that score
    the same `metric` on every common (experiment, seed) cell, not one value on all of them (as
    methods that all find the optimum do): e.g. methods whose only trial is the same seeded draw
    (common random numbers)."""
    check_metric(metric)
    rows = []
    for key, group in ep.groupby(GROUP, sort=True):
        table = paired(group, metric)
        if table.empty:
            continue
        sets: dict[bytes, list[str]] = {}
        for method in table.columns:
            values = table[method].to_numpy(float)
            if np.ptp(values) > 0:
                sets.setdefault(values.tobytes(), []).append(method)
        head = dict(zip(GROUP, key, strict=True))
        rows += [{**head, "methods": tuple(m)} for m in sets.values() if len(m) > 1]
    return pd.DataFrame(rows, columns=[*GROUP, "methods"])


def unpaired(ep: pd.DataFrame) -> pd.DataFrame:
    """Per group and method: the episodes left out of the paired comparisons (not in every
    method's cells), so that nothing is mixed silently."""
    rows = []
    for key, group in ep.groupby(GROUP, sort=True):
        for reported, ranked in rankings(group):
            keep = common_cells(ranked)
            for method in reported:
                g = ranked[ranked.method == method]
                out = [(e, s) for e, s in zip(g.experiment, g.seed, strict=True) if (e, s) not in keep]
                if out:
                    rows.append({**dict(zip(GROUP, key, strict=True)), "method": method,
                                 "left_out": len(out), "paired": len(g) - len(out)})
    return pd.DataFrame(rows, columns=[*GROUP, "method", "left_out", "paired"])


def leaderboard(ep: pd.DataFrame, metric: str = METRIC) -> pd.DataFrame:
    """One row per (suite, task, budget, method): every metric's statistics; ranks, wins and the
    order on `metric`."""
    check_metric(metric)
    if ep.empty:
        return pd.DataFrame(columns=LEADERBOARD_COLS)
    rows = []
    for key, group in ep.groupby(GROUP, sort=True):
        for reported, ranked in rankings(group):
            table = paired(ranked, metric)
            ranks = table.rank(axis=1, method="average")
            floor = table[FLOOR] if FLOOR in table else None
            for method in reported:
                win = float("nan")
                if floor is not None and method != FLOOR and len(table):
                    win = float(((table[method] < floor) + 0.5 * (table[method] == floor)).mean())
                rows.append({
                    **dict(zip(GROUP, key, strict=True)), "method": method, "metric": metric,
                    **_summary_stats(ranked[ranked.method == method]),
                    "rank_mean": float(ranks[method].mean()) if len(table) else float("nan"),
                    "rank_cells": len(table), "win_vs_centroid": win,
                })
    board = pd.DataFrame(rows)
    return board.sort_values([*GROUP, "rank_mean", f"{metric}_mean"])[LEADERBOARD_COLS].reset_index(drop=True)


ALL_TASKS = "all"  # the task name of `across_tasks` rows
ACROSS_COLS = ["suite", "task", "method", "budget_kind", "budget", "metric", "mean", "lo", "hi",
               "rank_mean", "diverged_rate", "failed", "tasks", "experiments", "few_experiments", "episodes"]


def across_tasks(ep: pd.DataFrame, metric: str = METRIC, board: pd.DataFrame | None = None
                 ) -> pd.DataFrame:
    """Per (suite, budget, method), every task weighed once (task `all`): `mean` of `metric`, the
    mean of its per-task means; `lo`/`hi` the 95% interval of that mean from the per-task
    hierarchical bootstraps (tasks independent); `rank_mean` the mean of its per-task mean ranks;
    `diverged_rate` the mean of the per-task rates; the `tasks` and `experiments` behind it, and
    `few_experiments` when some task has fewer than FEW_EXPERIMENTS (its interval is a range).
    `board`: `leaderboard(ep, metric)`, when the caller has it already. A method that lacks some
    of the group's tasks gets no row: its mean over other tasks would not compare with the rest
    (`missing_tasks` lists it)."""
    check_metric(metric)
    if ep.empty:
        return pd.DataFrame(columns=ACROSS_COLS)
    board = (leaderboard(ep, metric) if board is None else board).set_index([*GROUP, "method"])
    outer = ["suite", "budget_kind", "budget"]
    rows = []
    for key, group in ep.groupby(outer, sort=True):
        seeds = {t: i for i, t in enumerate(sorted(group.task.unique()))}  # one bootstrap seed per task
        for method, g in group.groupby("method", sort=True):
            tasks = sorted(g.task.unique())
            if len(tasks) < len(seeds):
                continue
            draws = np.mean([_bootstrap_means(t, metric, seed=seeds[name])[1]
                             for name, t in g.groupby("task", sort=True)], axis=0)
            per_task = board.loc[[(key[0], t, key[1], key[2], method) for t in tasks]]
            rows.append({
                **dict(zip(outer, key, strict=True)), "task": ALL_TASKS, "method": method, "metric": metric,
                "mean": float(per_task[f"{metric}_mean"].mean()),
                "lo": float(np.quantile(draws, 0.025)), "hi": float(np.quantile(draws, 0.975)),
                "rank_mean": float(per_task["rank_mean"].mean()),
                "diverged_rate": float(per_task["diverged_rate"].mean()),
                "failed": int(per_task["failed"].sum()), "tasks": len(tasks),
                "experiments": int(per_task["experiments"].sum()),
                "few_experiments": bool((per_task["experiments"] < FEW_EXPERIMENTS).any()),
                "episodes": int(per_task["episodes"].sum()),
            })
    out = pd.DataFrame(rows)
    return out.sort_values([*outer, "rank_mean", "mean"])[ACROSS_COLS].reset_index(drop=True)


def missing_tasks(ep: pd.DataFrame) -> pd.DataFrame:
    """Per (suite, budget, method) that lacks some task the suite has at that budget: the tasks it
    `ran` and those it did not (`missing`, comma-separated). These have no `across_tasks` row."""
    rows = []
    for key, group in ep.groupby(["suite", "budget_kind", "budget"], sort=True):
        every = set(group.task)
        for method, g in group.groupby("method", sort=True):
            if set(g.task) != every:
                rows.append({**dict(zip(["suite", "budget_kind", "budget"], key, strict=True)),
                             "method": method, "ran": g.task.nunique(), "of": len(every),
                             "missing": ", ".join(sorted(every - set(g.task)))})
    return pd.DataFrame(rows, columns=["suite", "budget_kind", "budget", "method", "ran", "of", "missing"])


LADDER = re.compile(r"^(?P<base>.+)-gap(?P<g>[0-9.]+(?:e[+-]?[0-9]+)?)$")  # `ladder-gap30`: ladder, 30
LADDER_COLS = ["ladder", "task", "budget_kind", "budget", "method", "metric", "gap", "mean", "lo", "hi",
               "experiments", "episodes", "simulated"]
LADDER_HEADLINE_COLS = ["ladder", "task", "budget_kind", "budget", "method", "metric", "mean", "gaps",
                        "offered", "missing", "simulated"]


def ladder(ep: pd.DataFrame, metric: str = METRIC, board: pd.DataFrame | None = None
           ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Score against extrapolation distance, for every distance ladder in `ep` (`ladder_rungs`).
    Returns:

    - points: per (ladder, task, budget, method, gap): the leaderboard's `mean` of `metric` on that
      rung (experiments weigh equally) with its 95% interval `lo`/`hi`, `experiments`, `episodes`;
    - headline: per (ladder, task, budget, method): `mean`, the mean over the distances the task
      offers (those any method ran at) of the per-distance means, each distance weighed once;
      `gaps` how many it rests on (a method missing an offered distance is averaged over its
      own); `offered` and `missing` (tuples of g): the ladder's grid (its suite file's `gaps` and
      every g in the results) split into what the task offers and what it does not.

    `board`: `leaderboard(ep, metric)`, when the caller has it already."""
    check_metric(metric)
    rungs, grids = ladder_rungs(ep)
    if not rungs:
        return pd.DataFrame(columns=LADDER_COLS), pd.DataFrame(columns=LADDER_HEADLINE_COLS)
    board = leaderboard(ep[ep.suite.isin(rungs)], metric) if board is None else board
    board = board[board.suite.isin(rungs)]
    points = board.assign(ladder=board.suite.map(lambda s: rungs[s][0]),
                          gap=board.suite.map(lambda s: rungs[s][1]), mean=board[f"{metric}_mean"],
                          lo=board[f"{metric}_lo"], hi=board[f"{metric}_hi"])
    points = points.sort_values(["ladder", "task", "budget_kind", "budget", "method", "gap"])[LADDER_COLS]
    rows = []
    outer = ["ladder", "task", "budget_kind", "budget"]
    for key, group in points.groupby(outer, sort=True):
        offered = tuple(sorted(group.gap.unique()))
        missing = tuple(sorted(grids[key[0]] - set(offered)))
        simulated = bool(group.simulated.any())
        for method, g in group.groupby("method", sort=True):
            rows.append({**dict(zip(outer, key, strict=True)), "method": method, "metric": metric,
                         "mean": float(g["mean"].mean()), "gaps": g.gap.nunique(), "offered": offered,
                         "missing": missing, "simulated": simulated})
    return points.reset_index(drop=True), pd.DataFrame(rows, columns=LADDER_HEADLINE_COLS)


def ladder_rungs(ep: pd.DataFrame) -> tuple[dict[str, tuple[str, float]], dict[str, set[float]]]:
    """The distance ladders' rungs in `ep`: suite -> (ladder, g) for each suite `<ladder>-gap<g>`
    whose episodes carry that prior gap g (`Suite.per_gap`), and each ladder's grid (its suite
    file's `gaps` and every g in `ep`). A `--gap` run of a suite file that declares no `gaps`
    (`paper-gap30`) is no rung."""
    from bench.gym.suites import load_suite

    gaps = pd.to_numeric(ep.gap, errors="coerce")
    rungs: dict[str, tuple[str, float]] = {}
    grids: dict[str, set[float]] = {}
    declared: dict[str, list[float] | None] = {}
    for suite, g in gaps.groupby(ep.suite).unique().items():
        m, g = LADDER.match(suite), g[~np.isnan(g)]
        if m is None or len(g) != 1 or not np.isclose(float(m["g"]), g[0]):
            continue
        base = m["base"]
        if base not in declared:
            try:
                declared[base] = load_suite(base).gaps
            except BenchError:  # not a suite file here (a suite from a path): a ladder by its name
                declared[base] = []
        if declared[base] is None:  # a suite file without `gaps`: a `--gap` sweep, not a ladder
            continue
        rungs[suite] = base, float(g[0])
        grids.setdefault(base, set(map(float, declared[base]))).add(float(g[0]))
    return rungs, grids


DIFFERENCE_COLS = ["suite", "task", "budget_kind", "budget", "method", "against", "metric", "diff", "lo",
                   "hi", "better", "experiments", "fewest_experiments", "cells", "gaps"]


def differences(ep: pd.DataFrame, pairs: dict[str, str], metric: str = METRIC) -> pd.DataFrame:
    """Each method of `pairs` against the method it maps to (an ablation against its preset),
    paired on the (experiment, seed) cells both have, per (suite, task, budget) where both ran:
    `diff`, the mean over experiments of the mean over seeds of method - against (> 0: the method
    scores worse; `metric` is lower-better), with the 95% interval `lo`/`hi` of a hierarchical
    bootstrap of the cells' differences; `better`, the share of cells where the method scores
    lower (ties count half); `experiments` and `cells`. Each distance ladder (`ladder_rungs`) also
    gets headline rows, `suite` its name: the mean over the distances both ran (`gaps`; 0 on a
    suite's own rows) of the per-distance `diff`, experiments resampled once for every distance
    (the rungs test the same experiments); `experiments` counts them all, `fewest_experiments`
    those of the distance that has the fewest (on a suite's own rows, the same number)."""
    check_metric(metric)
    rungs, _ = ladder_rungs(ep)
    ep = ep[ep.method.isin({*pairs, *pairs.values()})]
    rows = []
    for key, group in ep.groupby(GROUP, sort=True):
        rows += _difference_rows(dict(zip(GROUP, key, strict=True)), [group], pairs, metric, gaps=0)
    steps = ep[ep.suite.isin(rungs)]
    outer = ["ladder", "task", "budget_kind", "budget"]
    for key, group in steps.assign(ladder=steps.suite.map(lambda s: rungs[s][0])).groupby(outer, sort=True):
        head = dict(zip(["suite", *outer[1:]], key, strict=True))
        rows += _difference_rows(head, [g for _, g in group.groupby("suite", sort=True)], pairs, metric)
    return pd.DataFrame(rows, columns=DIFFERENCE_COLS)


def _difference_rows(key: dict, rungs: list[pd.DataFrame], pairs: dict[str, str], metric: str,
                     gaps: int | None = None) -> list[dict]:
    """`differences`' rows of one group, from its episodes on each rung (one, or a ladder's)."""
    rows = []
    for method, against in sorted(pairs.items()):
        cells = []
        for rung in rungs:
            if {method, against} <= set(rung.method):
                table = paired(rung[rung.method.isin([method, against])], metric)
                cells.append((table[method] - table[against]).rename("diff").reset_index())
        cells = [c for c in cells if len(c)]
        if not cells:
            continue
        diff, lo, hi = _mean_difference(cells)
        every = pd.concat(cells)
        d = every["diff"]
        rows.append({**key, "method": method, "against": against, "metric": metric, "diff": diff,
                     "lo": lo, "hi": hi, "better": float(((d < 0) + 0.5 * (d == 0)).mean()),
                     "experiments": every.experiment.nunique(),
                     "fewest_experiments": min(c.experiment.nunique() for c in cells), "cells": len(every),
                     "gaps": len(cells) if gaps is None else gaps})
    return rows


def _mean_difference(rungs: list[pd.DataFrame], seed: int = 0) -> tuple[float, float, float]:
    """The mean over `rungs` (each: experiment, seed, diff) of the mean over experiments of the
    mean over seeds of `diff`, and its 95% interval: experiments resampled once for every rung,
    then seeds within each; a draw with no experiment of a rung leaves that rung out of it."""
    exps = sorted(set().union(*(r.experiment for r in rungs)))
    pick = np.random.default_rng(seed).integers(len(exps), size=(BOOTSTRAP, len(exps)))
    points, draws = [], []
    for rung in rungs:
        by_exp = dict(list(rung.groupby("experiment")["diff"]))
        points.append(np.mean([v.mean() for v in by_exp.values()]))
        values = [by_exp[e].to_numpy(float) if e in by_exp else np.array([]) for e in exps]
        per_exp = hierarchical_bootstrap(values, seed=seed, exps=pick).mean(axis=2)  # NaN: not on this rung
        with np.errstate(invalid="ignore"):
            draws.append(np.nansum(per_exp, axis=1) / (~np.isnan(per_exp)).sum(axis=1))
    draws = np.nanmean(draws, axis=0)
    return float(np.mean(points)), float(np.quantile(draws, 0.025)), float(np.quantile(draws, 0.975))


def discrimination(board: pd.DataFrame, metric: str = METRIC) -> pd.DataFrame:
    """Per (suite, task, budget): the best and the median method by mean `metric` (the median of
    m methods is the ((m - 1) // 2)-th best) and whether their 95% intervals are disjoint; the
    methods ranked apart (`rankings`) are not among them."""
    check_metric(metric)
    rows = []
    for key, group in board.groupby(GROUP, sort=True):
        ranked = without_apart(group).sort_values(f"{metric}_mean", kind="stable")
        best, median = ranked.iloc[0], ranked.iloc[(len(ranked) - 1) // 2]
        best_hi, median_lo = best[f"{metric}_hi"], median[f"{metric}_lo"]
        rows.append({**dict(zip(GROUP, key, strict=True)), "methods": len(ranked), "best": best.method,
                     "best_hi": best_hi, "median": median.method, "median_lo": median_lo,
                     "separated": bool(len(ranked) > 1 and best_hi < median_lo)})
    return pd.DataFrame(rows, columns=[*GROUP, "methods", "best", "best_hi", "median", "median_lo",
                                       "separated"])


NEAR_TOP = 0.1  # "near the optimum": within the best 10% of the target pool


def rank_curves(ep: pd.DataFrame, metric: str = METRIC) -> pd.DataFrame:
    """Mean rank (1 = best, ties share their mean rank) of each method after each target trial,
    per (suite, task, budget) of trial budgets, from the anytime `metric` curves over the
    (experiment, seed) cells every method of the group has (`rank_cells`). At the last trial it
    equals the leaderboard's `rank_mean`."""
    check_metric(metric)
    rows = []
    for key, group in ep[ep.budget_kind == "trials"].groupby(GROUP, sort=True):
        for reported, ranked in rankings(group):
            keep = common_cells(ranked)
            cells = ranked[[(e, s) in keep for e, s in zip(ranked.experiment, ranked.seed, strict=True)]]
            if cells.empty:
                continue
            curves = cells.set_index(["experiment", "seed", "method"])[f"{metric}_curve"].unstack("method")
            stacked = np.array(curves.to_numpy().tolist(), dtype=float)  # cells x methods x trials
            for t in range(stacked.shape[2]):
                ranks = pd.DataFrame(stacked[:, :, t], columns=curves.columns).rank(axis=1, method="average")
                rows += [{**dict(zip(GROUP, key, strict=True)), "trial": t + 1, "method": m,
                          "rank_mean": float(ranks[m].mean()), "rank_cells": len(curves)} for m in reported]
    return pd.DataFrame(rows, columns=[*GROUP, "trial", "method", "rank_mean", "rank_cells"])


def experiment_scores(ep: pd.DataFrame, metric: str = METRIC) -> tuple[pd.DataFrame, list[str]]:
    """The blocks of a critical-difference test, from the episodes of one suite and budget:
    (task, experiment) x method, the mean `metric` over the seeds every method of the task has.
    Methods missing on some experiment are left out (returned, sorted), so the table is complete;
    methods ranked apart (`rankings`) are not in it: one test ranks every method jointly."""
    check_metric(metric)
    parts = {task: paired(next(rankings(group))[1], metric).groupby(level="experiment").mean()
             for task, group in ep.groupby("task")}
    scores = pd.concat(parts, names=["task", "experiment"]).dropna(how="all")
    left_out = sorted(scores.columns[scores.isna().any()])
    return scores.drop(columns=left_out), left_out


def critical_difference(scores: pd.DataFrame, alpha: float = 0.05):
    """Friedman test and Nemenyi critical difference (Demsar 2006) on `scores` (rows: blocks such
    as experiments; columns: methods; lower is better), by `autorank`; rank 1 is the best.
    Needs at least 5 rows and 3 methods; returns autorank's `RankResult` (`rankdf.meanrank`,
    `pvalue`, `cd`)."""
    import contextlib
    import io
    import warnings

    from autorank import autorank

    # autorank 1.3.0 prints its rank table, and warns on effect sizes of tied columns (unused here)
    with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return autorank(scores, alpha=alpha, order="ascending", force_mode="nonparametric")


def near_threshold(values: np.ndarray, direction: str, top: float = NEAR_TOP) -> float:
    """The outcome a proposal must reach to be within the best `top` share of a target pool:
    the value of its ceil(top * n)-th best candidate."""
    ordered = np.sort(values) if direction == "minimize" else -np.sort(-values)
    return float(ordered[max(1, int(np.ceil(top * len(values)))) - 1])


def near_optimum(proposals: pd.DataFrame) -> pd.DataFrame:
    """Per (suite, task, method): the share of target-fidelity proposals whose outcome is at least
    as good as their experiment's `threshold` (`near_threshold`), mean over experiments of the
    share over their proposals; `uniform` is the share a uniform draw from the pool reaches
    (the pool's share at or beyond the threshold, >= NEAR_TOP with ties), mean over experiments.

    `proposals`: one row per target trial with suite, task, method, experiment, value, threshold,
    direction and uniform."""
    minimize = proposals.direction == "minimize"
    near = np.where(minimize, proposals.value <= proposals.threshold, proposals.value >= proposals.threshold)
    per_exp = proposals.assign(near=near).groupby(["suite", "task", "method", "experiment"]).agg(
        near=("near", "mean"), proposals=("near", "size"), uniform=("uniform", "first"))
    return per_exp.groupby(["suite", "task", "method"]).agg(
        near_share=("near", "mean"), proposals=("proposals", "sum"), uniform=("uniform", "mean"),
        experiments=("near", "size")).reset_index()
