"""The optimum extrapolated from the prior: where the cheap fidelities' optima point at the target.
Shared by the `extrapolate` baseline (which asks target candidates in order of distance from it)
and the policy's features.

1. Anchors. For every prior fidelity, the location of its optimum: the mean of its `top_k` best
   runs (mean of log values on log-scaled dimensions, i.e. a geometric mean; `top_k=1` is the
   best run itself). Default 3, chosen on the train experiments of the built-in tasks: the best
   run alone is noisy (on pretrain_hparams it extrapolates into diverged learning rates).
2. Fit, per numeric dimension, a power law in the descriptors, as Step Law does for learning rate
   and batch size: y = a + sum_k b_k * log(d_k), with y = log(x) on log-scaled dimensions and
   y = x otherwise (dimensions that can be zero). Only descriptors that vary across the prior
   fidelities enter; a descriptor that is not positive everywhere enters linearly. Ordinary least
   squares on centred descriptors; with fewer fidelities than coefficients, or collinear
   descriptors, the minimum-norm solution: slopes only along the directions the prior fidelities
   span (two fidelities give the line through their anchors), none for the rest. One prior
   fidelity: its anchor, unshifted.
3. Mixtures (two or more float dimensions in [0, 1] that sum to 1 in every prior run and target
   candidate, e.g. data-mixture weights): each weight is fitted linearly (a least-squares fit of
   anchors that sum to 1 sums to 1), the prediction is clipped at 0 and renormalised (not clipped
   to the space's bounds, which would break the sum).
4. Categoricals and ordinals: the value of the best run at the most expensive prior fidelity.
   Other predictions are clipped to the space's bounds.

Fitted on the prior only; target outcomes are never used.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from ConfigSpace import CategoricalHyperparameter, Constant, OrdinalHyperparameter, UniformFloatHyperparameter

from bench.gym.problem import Problem
from bench.gym.space import numeric_names, plain

TOP_K = 3  # best runs per prior fidelity averaged into its anchor (step 1)
MIXTURE_TOLERANCE = 0.01  # how far from 1 a row of weights may sum (RegMix rounds to 3 decimals)


def mixture_names(problem: Problem) -> list[str]:
    """Float dimensions in [0, 1] that sum to 1 in every prior run and target candidate."""
    names = [
        n for n in numeric_names(problem.space)
        if isinstance(problem.space[n], UniformFloatHyperparameter) and not problem.space[n].log
        and problem.space[n].lower >= 0 and problem.space[n].upper <= 1
    ]
    if len(names) < 2:
        return []
    rows = pd.concat([problem.prior[names], problem.candidates()[names]], ignore_index=True)
    sums = rows.to_numpy(float).sum(axis=1)
    return names if np.all(np.abs(sums - 1.0) <= MIXTURE_TOLERANCE) else []


def descriptor_features(problem: Problem, fidelities: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Features of the given prior fidelities and of the target: the descriptors that vary across
    those fidelities, log-transformed where positive everywhere (target included)."""
    desc = problem.descriptors().drop(columns="cost")
    prior, target = desc.loc[fidelities], desc.loc[[problem.target]]
    cols = [c for c in desc.columns if prior[c].nunique() > 1]
    both = pd.concat([prior[cols], target[cols]])
    feats = np.column_stack([
        np.log(both[c].to_numpy(float)) if (both[c] > 0).all() else both[c].to_numpy(float)
        for c in cols
    ]) if cols else np.zeros((len(both), 0))
    return feats[:-1], feats[-1]


def fit_predict(x: np.ndarray, y: np.ndarray, x_target: np.ndarray) -> float:
    """Least squares y ~ a + x.b on centred x (minimum-norm b if underdetermined); value at target."""
    ok = np.isfinite(y)
    x, y = x[ok], y[ok]
    if len(y) == 0:
        return float("nan")
    centre = x.mean(axis=0)
    if len(y) < 2 or x.shape[1] == 0:
        return float(y.mean())
    slopes, *_ = np.linalg.lstsq(x - centre, y - y.mean(), rcond=None)
    return float(y.mean() + (x_target - centre) @ slopes)


def prior_fidelities(problem: Problem) -> list[str]:
    """The fidelities below the target that the prior has runs of, cheapest first."""
    present = set(problem.prior["fidelity"])
    return [f.name for f in problem.fidelities[:-1] if f.name in present]


def top_runs(problem: Problem, fidelity: str, top_k: int) -> pd.DataFrame:
    """The `top_k` best prior runs of `fidelity`."""
    rows = problem.prior[problem.prior.fidelity == fidelity]
    ascending = problem.objective.direction == "minimize"
    return rows.sort_values("value", ascending=ascending, kind="stable").head(top_k)


def extrapolated_optimum(problem: Problem, top_k: int = TOP_K) -> dict[str, Any] | None:
    """The configuration the prior's optima extrapolate to at the target (steps 1-4); None when
    the prior is empty."""
    if top_k < 1:
        raise ValueError(f"top_k must be at least 1 (got {top_k})")
    if not len(problem.prior):
        return None
    space, fids = problem.space, prior_fidelities(problem)
    x, x_target = descriptor_features(problem, fids)
    tops = [top_runs(problem, f, top_k) for f in fids]
    mixture = set(mixture_names(problem))
    predicted: dict[str, Any] = {}
    for name in numeric_names(space):
        hp = space[name]
        log = bool(hp.log)  # never for mixture weights (they are not log-scaled)
        anchors = np.array([
            np.nanmean(np.log(t[name].to_numpy(float)) if log else t[name].to_numpy(float))
            if t[name].notna().any() else np.nan
            for t in tops
        ])
        y = fit_predict(x, anchors, x_target)
        if not np.isfinite(y):  # no usable anchor: the middle of the range
            y = (np.log(hp.lower) + np.log(hp.upper)) / 2 if log else (hp.lower + hp.upper) / 2
        if name not in mixture:
            y = np.clip(np.exp(y) if log else y, hp.lower, hp.upper)
        predicted[name] = float(y)
    if mixture:
        names = sorted(mixture)
        weights = np.array([max(predicted[n], 0.0) for n in names])
        if weights.sum() > 0:
            predicted.update(zip(names, weights / weights.sum(), strict=True))
    best = tops[-1]
    for name, hp in space.items():
        if isinstance(hp, CategoricalHyperparameter | OrdinalHyperparameter):
            predicted[name] = plain(best[name].iat[0])
        elif isinstance(hp, Constant):
            predicted[name] = hp.value
    return predicted
