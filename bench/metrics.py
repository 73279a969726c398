"""Regret, normalised regret, ranks and the leaderboard, from completed episodes.

`regret` = gap to the table optimum in the objective's own units (>= 0);
`nregret` = regret / |median of the target pool - optimum|: 0 is the optimum, 1 the median.
Trial-budget suites score the best target outcome seen; cost-budget suites score `recommend()`.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import pandas as pd

KEY_COLS = ["suite", "task", "method", "experiment", "budget_kind", "budget", "seed"]
LEADERBOARD_COLS = ["suite", "task", "method", "budget_kind", "budget", "nregret_mean",
                    "nregret_sem", "regret_mean", "rank_mean", "episodes", "gpu_hours_mean",
                    "ask_seconds_mean", "simulated"]


def regret(value: float | None, optimum: float, direction: str) -> float:
    if value is None:
        return float("nan")
    return (value - optimum) if direction == "minimize" else (optimum - value)


def nregret(value: float | None, optimum: float, median: float, direction: str) -> float:
    scale = abs(median - optimum)
    return regret(value, optimum, direction) / scale if scale > 0 else float("nan")


def episodes_frame(summaries: Iterable[dict]) -> pd.DataFrame:
    """One row per completed episode with its score, regret and nregret."""
    rows = []
    for s in summaries:
        score = s["best"] if s["key"]["budget_kind"] == "trials" else s["recommend_value"]
        opt, med, d = s["optimum"], s["median"], s["direction"]
        rows.append({
            **s["key"], "score": score,
            "regret": regret(score, opt, d), "nregret": nregret(score, opt, med, d),
            "nregret_curve": [nregret(v, opt, med, d) for v in s["curve"]],
            "gpu_hours": s["gpu_hours"], "ask_seconds": s["ask_seconds"],
            "trials": s["trials"], "simulated": s.get("simulated", False),
        })
    return pd.DataFrame(rows, columns=[*KEY_COLS, "score", "regret", "nregret", "nregret_curve",
                                       "gpu_hours", "ask_seconds", "trials", "simulated"])


def with_ranks(ep: pd.DataFrame) -> pd.DataFrame:
    """Rank methods by nregret within each (suite, task, budget, experiment, seed); 1 = best."""
    group = ["suite", "task", "budget_kind", "budget", "experiment", "seed"]
    return ep.assign(rank=ep.groupby(group)["nregret"].rank(method="average"))


def leaderboard(ep: pd.DataFrame) -> pd.DataFrame:
    if ep.empty:
        return pd.DataFrame(columns=LEADERBOARD_COLS)
    ep = with_ranks(ep)
    g = ep.groupby(["suite", "task", "method", "budget_kind", "budget"], sort=True)
    board = g.agg(
        nregret_mean=("nregret", "mean"),
        nregret_sem=("nregret", lambda x: float(x.std(ddof=1) / np.sqrt(len(x))) if len(x) > 1 else 0.0),
        regret_mean=("regret", "mean"),
        rank_mean=("rank", "mean"),
        episodes=("nregret", "size"),
        gpu_hours_mean=("gpu_hours", "mean"),
        ask_seconds_mean=("ask_seconds", "mean"),
        simulated=("simulated", "any"),
    ).reset_index()
    return board.sort_values(["suite", "task", "budget_kind", "budget", "rank_mean"])[LEADERBOARD_COLS]
