"""Landscape diagnostics for task cards: how far cheap fidelities predict the expensive one.

- `rank_correlations`: per experiment, the Spearman rank correlation of outcomes between each pair
  of adjacent fidelities (cheapest first). Configurations rarely coincide across fidelities: with
  at least `MIN_EXACT` configurations run at both, those exact matches are used (`method="exact"`);
  otherwise each configuration of the cheaper level is paired with its nearest candidate in the
  other level (`Snapper`, unit-cube distance; `method="nearest"`, `distance` is the median snap
  distance). `n` is the number of pairs.
- `optimum_shift`: per experiment and fidelity, the best configuration, its value, its unit-cube
  distance from the target's optimum, and the target pregret and nregret of the target candidate
  nearest it (what running the cheap optimum at the target would cost; pregret: the share of the
  target pool strictly better, 0 = optimum, 1 = worst; nregret: 0 = optimum, 1 = median
  candidate), both by the experiment's `Scorer` (`Task.scorer`).
- `summary`: one row per experiment, plus a `median` row over experiments.
- `moving_params`: the parameters whose optimum moves most across fidelities (for cards, plots).
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
from ConfigSpace import ConfigurationSpace
from scipy.stats import ConstantInputWarning, spearmanr

from bench.gym.space import Snapper, config_at, encode
from bench.gym.task import Task

MIN_EXACT = 5  # exact matches needed before they are used instead of nearest-candidate pairs


def _spearman(a: np.ndarray, b: np.ndarray) -> float:
    if len(a) < 2:
        return float("nan")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConstantInputWarning)
        return float(spearmanr(a, b).statistic)


def paired_outcomes(task: Task, experiment: str, lower: str, upper: str
                    ) -> tuple[np.ndarray, np.ndarray, str, float]:
    """Outcome pairs (lower, upper) of one experiment, the matching method and median distance."""
    params = list(task.space.keys())
    lo, hi = task.outcomes(experiment, lower), task.outcomes(experiment, upper)
    exact = lo.merge(hi, on=params, suffixes=("_lo", "_hi"))
    if len(exact) >= MIN_EXACT:
        return exact["value_lo"].to_numpy(), exact["value_hi"].to_numpy(), "exact", 0.0
    snapper = Snapper(task.space, hi)
    nearest = [snapper.nearest(config_at(lo, i, params)) for i in range(len(lo))]
    idx = np.array([i for i, _ in nearest], dtype=int)
    dist = float(np.median([d for _, d in nearest])) if nearest else float("nan")
    return lo["value"].to_numpy(), hi["value"].to_numpy()[idx], "nearest", dist


def rank_correlations(task: Task) -> pd.DataFrame:
    """experiment, split, lower, upper, spearman, method, n, distance — per adjacent pair."""
    rows = []
    for exp in task.experiments.values():
        for lower, upper in zip(exp.fidelities[:-1], exp.fidelities[1:], strict=True):
            a, b, method, dist = paired_outcomes(task, exp.name, lower.name, upper.name)
            rows.append({"experiment": exp.name, "split": exp.split, "lower": lower.name,
                         "upper": upper.name, "spearman": _spearman(a, b), "method": method,
                         "n": len(a), "distance": dist})
    return pd.DataFrame(rows, columns=["experiment", "split", "lower", "upper", "spearman",
                                       "method", "n", "distance"])


def optimum_shift(task: Task) -> pd.DataFrame:
    """experiment, split, fidelity, cost, <params of the best run>, value, distance, target_pregret,
    target_nregret."""
    params, objective = list(task.space.keys()), task.objective
    rows = []
    for exp in task.experiments.values():
        target = task.outcomes(exp.name, exp.target.name)
        scorer = task.scorer(exp.name)
        t_values = target["value"].to_numpy(float)
        t_best = int(np.argmin(objective.sign * t_values))  # where the optimum is (its location)
        t_x = encode(task.space, target.iloc[[t_best]])[0]
        snapper = Snapper(task.space, target)
        for fid in exp.fidelities:
            pool = task.outcomes(exp.name, fid.name)
            best = config_at(pool, int(np.argmin(objective.sign * pool["value"].to_numpy(float))))
            at_target = t_values[snapper.nearest(best)[0]]
            rows.append({
                "experiment": exp.name, "split": exp.split, "fidelity": fid.name, "cost": fid.cost,
                **{p: best[p] for p in params}, "value": best["value"],
                "distance": float(np.linalg.norm(encode(task.space, [best])[0] - t_x)),
                "target_pregret": float(scorer.pregret(at_target)),
                "target_nregret": float(scorer.nregret(at_target)),
            })
    return pd.DataFrame(rows, columns=["experiment", "split", "fidelity", "cost", *params, "value",
                                       "distance", "target_pregret", "target_nregret"])


def summary(task: Task, correlations: pd.DataFrame | None = None,
            shifts: pd.DataFrame | None = None) -> pd.DataFrame:
    """Per experiment: fidelities, median adjacent Spearman, Spearman into the target, and for the
    most expensive prior fidelity the optimum's distance from the target's and its target pregret
    and nregret; a last row `median` aggregates the experiments."""
    corr = rank_correlations(task) if correlations is None else correlations
    shift = optimum_shift(task) if shifts is None else shifts
    rows = []
    for exp in task.experiments.values():
        c = corr[corr.experiment == exp.name]
        s = shift[shift.experiment == exp.name]
        last_prior = s.iloc[-2] if len(s) >= 2 else None
        rows.append({
            "experiment": exp.name, "split": exp.split, "fidelities": len(exp.fidelities),
            "spearman_median": float(c.spearman.median()) if len(c) else float("nan"),
            "spearman_to_target": float(c.spearman.iloc[-1]) if len(c) else float("nan"),
            "pairs_nearest": int((c.method == "nearest").sum()),
            "shift": float(last_prior.distance) if last_prior is not None else float("nan"),
            "shift_pregret": float(last_prior.target_pregret) if last_prior is not None else float("nan"),
            "shift_nregret": float(last_prior.target_nregret) if last_prior is not None else float("nan"),
        })
    out = pd.DataFrame(rows)
    numeric = ["fidelities", "spearman_median", "spearman_to_target", "pairs_nearest", "shift",
               "shift_pregret", "shift_nregret"]
    agg = {"experiment": "median", "split": "all", **out[numeric].median().to_dict()}
    return pd.concat([out, pd.DataFrame([agg])], ignore_index=True)


def moving_params(space: ConfigurationSpace, shifts: pd.DataFrame, most: int) -> list[str]:
    """Up to `most` parameters (in space order), those whose best value moves most across the rows
    of `shifts` (standard deviation in the unit cube; a categorical counts 1 if it changes)."""
    spread = {}
    for name, hp in space.items():
        col = shifts[name]
        if not hasattr(hp, "lower"):  # categorical or constant
            spread[name] = float(col.nunique() > 1)
            continue
        x, lo, hi = col.to_numpy(float), float(hp.lower), float(hp.upper)
        if hp.log:
            x, lo, hi = np.log(x), np.log(lo), np.log(hi)
        spread[name] = float(np.std((x - lo) / (hi - lo))) if len(x) else 0.0
    keep = set(sorted(spread, key=lambda n: -spread[n])[:most])
    return [n for n in space.keys() if n in keep]
