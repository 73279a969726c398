"""Regret, normalised regret, ranks and the leaderboard, from completed episodes.

Scores. `regret` = gap to the table optimum in the objective's own units (>= 0); `nregret` =
regret / |median of the target pool - optimum|: 0 is the optimum, 1 the median candidate.
Trial-budget suites score the best target outcome seen; cost-budget suites score `recommend()`.
A failed episode (see `bench.episode`) scores the worst target candidate, whatever it had
reached, and is counted in `failed`.

Aggregation, per (suite, task, budget) and method:
- `nregret_mean`: the mean over experiments of the mean over seeds (experiments weigh equally);
  `nregret_iqm`: the interquartile mean of all episodes (the robust aggregate rliable recommends
  for RL benchmarks; `scipy.stats.trim_mean` at 25%), `nregret_median`.
- 95% intervals (`_lo`, `_hi`) from a hierarchical percentile bootstrap: experiments resampled
  with replacement, then seeds within each; `nregret_sem` is the bootstrap standard deviation of
  the mean. A method that gives the same trials on every seed gets the variation of its
  experiments only: repeating it cannot shrink its interval. `BOOTSTRAP` resamples, seed 0.
- `discrimination()`: per group, whether the best method and the median one (by mean) are
  told apart: their 95% intervals do not overlap.
- Paired comparisons: `rank_mean` (1 = best, ties share their mean rank) and `win_vs_centroid`
  (share of cells where the method beats the `centroid` floor, ties count half) use only the
  (experiment, seed) cells that every method of the group has; `rank_cells` says how many.
  `unpaired()` lists what was left out.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import pandas as pd
from scipy.stats import trim_mean

KEY_COLS = ["suite", "task", "method", "experiment", "budget_kind", "budget", "seed"]
GROUP = ["suite", "task", "budget_kind", "budget"]
EPISODE_COLS = [*KEY_COLS, "score", "regret", "nregret", "nregret_curve", "failed", "gpu_hours",
                "budget_spent", "ask_seconds", "trials", "pool_size", "extrapolation", "simulated",
                "tokens_in", "tokens_out", "dollars", "fallbacks"]
LEADERBOARD_COLS = ["suite", "task", "method", "budget_kind", "budget", "nregret_mean", "nregret_sem",
                    "nregret_lo", "nregret_hi", "nregret_iqm", "nregret_iqm_lo", "nregret_iqm_hi",
                    "nregret_median", "regret_mean", "rank_mean", "rank_cells", "win_vs_centroid",
                    "episodes", "experiments", "failed", "pool_size", "gpu_hours_mean", "budget_spent",
                    "ask_seconds_mean", "tokens_in_mean", "tokens_out_mean", "dollars_total", "fallbacks",
                    "simulated"]
BOOTSTRAP = 2000
FLOOR = "centroid"


def regret(value: float | None, optimum: float, direction: str) -> float:
    if value is None:
        return float("nan")
    return (value - optimum) if direction == "minimize" else (optimum - value)


def nregret(value: float | None, optimum: float, median: float, direction: str) -> float:
    scale = abs(median - optimum)
    return regret(value, optimum, direction) / scale if scale > 0 else float("nan")


def _episode_row(s: dict) -> dict:
    key = s["key"]
    trials = key["budget_kind"] == "trials"
    opt, med, d = s["optimum"], s["median"], s["direction"]
    score = s["best"] if trials else s["recommend_value"]
    failed = s.get("failed") is not None or score is None
    if failed:
        score = s["worst"]
    curve = [nregret(v, opt, med, d) for v in s["curve"]]
    if trials:  # anytime curve over the whole budget: a failure is the worst throughout
        n = int(round(key["budget"]))
        worst = nregret(s["worst"], opt, med, d)
        curve = [worst] * n if failed else curve + curve[-1:] * (n - len(curve))
    return {
        **key, "score": score, "regret": regret(score, opt, d), "nregret": nregret(score, opt, med, d),
        "nregret_curve": curve, "failed": failed, "gpu_hours": s["gpu_hours"],
        "budget_spent": s["gpu_hours"] / s["budget_gpu_hours"] if s["budget_gpu_hours"] else np.nan,
        "ask_seconds": s["ask_seconds"], "trials": s["trials"], "pool_size": s["pool_size"],
        "extrapolation": s.get("extrapolation"), "simulated": s.get("simulated", False),
        "tokens_in": s.get("tokens_in", np.nan), "tokens_out": s.get("tokens_out", np.nan),
        "dollars": np.nan if s.get("dollars") is None else s["dollars"], "fallbacks": s.get("fallbacks", 0),
    }


def episodes_frame(summaries: Iterable[dict]) -> pd.DataFrame:
    """One row per completed episode with its score, regret, nregret and failure flag."""
    return pd.DataFrame([_episode_row(s) for s in summaries], columns=EPISODE_COLS)


def hierarchical_bootstrap(by_experiment: list[np.ndarray], n: int = BOOTSTRAP, seed: int = 0
                           ) -> np.ndarray:
    """`n` resamples (n x experiments x seeds): experiments with replacement, then seeds within
    each (as many draws as the largest experiment has seeds, so experiments weigh equally)."""
    rng = np.random.default_rng(seed)
    counts = np.array([len(v) for v in by_experiment])
    width = int(counts.max())
    table = np.full((len(by_experiment), width), np.nan)
    for i, v in enumerate(by_experiment):
        table[i, : len(v)] = v
    exps = rng.integers(len(by_experiment), size=(n, len(by_experiment)))
    seeds = (rng.random((n, len(by_experiment), width)) * counts[exps][..., None]).astype(int)
    return table[exps[..., None], seeds]


def _summary_stats(ep: pd.DataFrame) -> dict:
    """Point estimates and 95% bootstrap intervals of one method's nregret in one group."""
    by_exp = [g.to_numpy(float) for _, g in ep.groupby("experiment", sort=True)["nregret"]]
    draws = hierarchical_bootstrap(by_exp).reshape(BOOTSTRAP, -1)
    means = draws.mean(axis=1)
    iqms = trim_mean(draws, 0.25, axis=1)
    values = ep["nregret"].to_numpy(float)
    return {
        "nregret_mean": float(np.mean([v.mean() for v in by_exp])),
        "nregret_sem": float(means.std(ddof=1)),
        "nregret_lo": float(np.quantile(means, 0.025)), "nregret_hi": float(np.quantile(means, 0.975)),
        "nregret_iqm": float(trim_mean(values, 0.25)),
        "nregret_iqm_lo": float(np.quantile(iqms, 0.025)),
        "nregret_iqm_hi": float(np.quantile(iqms, 0.975)),
        "nregret_median": float(np.median(values)),
        "regret_mean": float(ep.groupby("experiment")["regret"].mean().mean()),
        "episodes": len(ep), "experiments": len(by_exp), "failed": int(ep["failed"].sum()),
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


def paired(group: pd.DataFrame) -> pd.DataFrame:
    """nregret as a (experiment, seed) x method table over the common cells."""
    keep = common_cells(group)
    rows = group[[(e, s) in keep for e, s in zip(group.experiment, group.seed, strict=True)]]
    return rows.pivot_table(index=["experiment", "seed"], columns="method", values="nregret")


def unpaired(ep: pd.DataFrame) -> pd.DataFrame:
    """Per group and method: the episodes left out of the paired comparisons (not in every
    method's cells), so that nothing is mixed silently."""
    rows = []
    for key, group in ep.groupby(GROUP, sort=True):
        keep = common_cells(group)
        for method, g in group.groupby("method"):
            out = [(e, s) for e, s in zip(g.experiment, g.seed, strict=True) if (e, s) not in keep]
            if out:
                rows.append({**dict(zip(GROUP, key, strict=True)), "method": method,
                             "left_out": len(out), "paired": len(g) - len(out)})
    return pd.DataFrame(rows, columns=[*GROUP, "method", "left_out", "paired"])


def leaderboard(ep: pd.DataFrame) -> pd.DataFrame:
    if ep.empty:
        return pd.DataFrame(columns=LEADERBOARD_COLS)
    rows = []
    for key, group in ep.groupby(GROUP, sort=True):
        table = paired(group)
        ranks = table.rank(axis=1, method="average")
        floor = table[FLOOR] if FLOOR in table else None
        for method, g in group.groupby("method", sort=True):
            win = float("nan")
            if floor is not None and method != FLOOR and len(table):
                win = float(((table[method] < floor) + 0.5 * (table[method] == floor)).mean())
            rows.append({
                **dict(zip(GROUP, key, strict=True)), "method": method, **_summary_stats(g),
                "rank_mean": float(ranks[method].mean()) if len(table) else float("nan"),
                "rank_cells": len(table), "win_vs_centroid": win,
            })
    board = pd.DataFrame(rows)
    return board.sort_values([*GROUP, "rank_mean", "nregret_mean"])[LEADERBOARD_COLS].reset_index(drop=True)


def discrimination(board: pd.DataFrame) -> pd.DataFrame:
    """Per (suite, task, budget): the best and the median method by mean nregret (the median of
    m methods is the ((m - 1) // 2)-th best) and whether their 95% intervals are disjoint."""
    rows = []
    for key, group in board.groupby(GROUP, sort=True):
        ranked = group.sort_values("nregret_mean", kind="stable")
        best, median = ranked.iloc[0], ranked.iloc[(len(ranked) - 1) // 2]
        rows.append({**dict(zip(GROUP, key, strict=True)), "methods": len(ranked), "best": best.method,
                     "best_hi": best.nregret_hi, "median": median.method, "median_lo": median.nregret_lo,
                     "separated": bool(len(ranked) > 1 and best.nregret_hi < median.nregret_lo)})
    return pd.DataFrame(rows, columns=[*GROUP, "methods", "best", "best_hi", "median", "median_lo",
                                       "separated"])


ALL_TASKS = "all"  # the task name of `pooled` episodes
NEAR_TOP = 0.1  # "near the optimum": within the best 10% of the target pool


def pooled(ep: pd.DataFrame) -> pd.DataFrame:
    """Every task's experiments as experiments of one task `all` (named `task/experiment`), so
    that `leaderboard` and the paired comparisons run across tasks, each experiment weighing
    equally; `simulated` holds if any pooled task is simulated."""
    out = ep.copy()
    out["experiment"] = out["task"] + "/" + out["experiment"]
    out["task"] = ALL_TASKS
    return out


def rank_curves(ep: pd.DataFrame) -> pd.DataFrame:
    """Mean rank (1 = best, ties share their mean rank) of each method after each target trial,
    per (suite, task, budget) of trial budgets, from the anytime nregret curves over the
    (experiment, seed) cells every method of the group has (`rank_cells`). At the last trial it
    equals the leaderboard's `rank_mean`."""
    rows = []
    for key, group in ep[ep.budget_kind == "trials"].groupby(GROUP, sort=True):
        keep = common_cells(group)
        cells = group[[(e, s) in keep for e, s in zip(group.experiment, group.seed, strict=True)]]
        if cells.empty:
            continue
        curves = cells.set_index(["experiment", "seed", "method"]).nregret_curve.unstack("method")
        stacked = np.array([[curves.at[i, m] for m in curves.columns] for i in curves.index], dtype=float)
        for t in range(stacked.shape[2]):  # cells x methods x trials
            ranks = pd.DataFrame(stacked[:, :, t], columns=curves.columns).rank(axis=1, method="average")
            rows += [{**dict(zip(GROUP, key, strict=True)), "trial": t + 1, "method": m,
                      "rank_mean": float(r), "rank_cells": len(curves)} for m, r in ranks.mean().items()]
    return pd.DataFrame(rows, columns=[*GROUP, "trial", "method", "rank_mean", "rank_cells"])


def experiment_scores(ep: pd.DataFrame) -> tuple[pd.DataFrame, list[str]]:
    """The blocks of a critical-difference test, from the episodes of one suite and budget:
    (task, experiment) x method, the mean nregret over the seeds every method of the task has.
    Methods missing on some experiment are left out (returned, sorted), so the table is complete."""
    parts = {task: paired(group).groupby(level="experiment").mean() for task, group in ep.groupby("task")}
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
