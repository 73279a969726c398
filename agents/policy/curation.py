"""Stage 1, curation: training episodes that imitate the test situation, from train experiments only.

Each `fit` experiment of the training data yields its own ladder and, with `truncate`, its
pseudo-target experiments: the ladder truncated at every rung k >= 1 below the target (rung k
becomes the target, the rungs below it the cheaper ones), named `<experiment>@<k>`, where rung k
has at least `MIN_TARGET` runs. Each of these becomes `variants` curated experiments. Variant 0
is the ladder itself; the others add a configuration-space shift: the target candidates are those
inside one random sub-box of the unit cube and the cheap runs those inside another, drawn
independently (each restricts one or two random dimensions to `min_width`-1 of their range), so
the space the cheap runs cover differs from the one the target is chosen in, as when a
researcher's small sweep does not span the expensive run's options. The landscape shift is the
data's own: the optimum moves between fidelities as it really did. Episodes are then drawn from
the curated experiments (`TrainingData.draw`; each fit experiment weighs the same, half its own
ladder and half its pseudo-targets) with the protocols the method is tested under (`paper`, and
`far` with its gap and capped prior) and with ladder-like priors: at each of the `ladder` suite's
distances, every run there (as the `ladder` suite gives it) and capped at the `far` suite's prior
budget for the task (drawn among the priors an experiment offers), so priors are full or sparse,
near or distant, as at test time. Before the full ones, 7 of 8 distinct priors drawn were capped
(only `paper` was full), while `cv` and every `ladder` distance give full sweeps: on
pretrain_hparams' inner folds (outer cv fold 1) the policy then scored 0.146 at T=1 with the
`paper` prior, where the `extrapolate` teacher scored 0.022 (with them and the
`to_extrapolated` feature: 0.127; `features`).

Curated experiments keep their source experiment's group, so the policy's inner folds hold out a
train experiment together with everything curated from it.

The curated task is a `Task` like any other (Problems, Oracles, the Gymnasium env and every
baseline work on it) holding copies of train rows only; the test experiments never enter it.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd

from bench.gym.problem import Fidelity
from bench.gym.suites import load_suite
from bench.gym.task import Experiment, Prior, Task
from bench.training import BUDGETS, TrainingData

MIN_TARGET = 2 * max(BUDGETS)  # target candidates a shifted variant or a pseudo-target keeps
TRIES = 20
MAX_DIMS = 2  # a sub-box restricts this many dimensions at most (17 at once would leave nothing)


def curate(
    data: TrainingData, seed: int, variants: int = 4, min_width: float = 0.5, truncate: bool = True
) -> TrainingData:
    """The training data of the curated experiments (`fit`: every curated experiment; validation
    experiments are left out: they judge the trained policy on the real, unshifted problems).
    `truncate=False` curates without pseudo-targets (an ablation)."""
    task, rng = data.task, np.random.default_rng(seed)
    frames, experiments, weights = [], {}, {}
    for exp in data.fit:
        rows = task.table[task.table["experiment"] == exp]
        x = task.encoder(rows[list(task.space.keys())])
        cuts = ladders(task, exp, truncate)
        group = task.experiment(exp).group  # a curated experiment stays in its source's group
        for name, fidelities in cuts:
            given = rows["fidelity"].isin([f.name for f in fidelities]).to_numpy()
            target = (rows["fidelity"] == fidelities[-1].name).to_numpy()[given]
            for v in range(variants):
                keep = np.ones(len(target), bool) if v == 0 else _shifted(x[given], target, rng, min_width)
                variant = name if v == 0 else f"{name}~{v}"
                frames.append(rows[given][keep].assign(experiment=variant))
                experiments[variant] = Experiment(variant, "train", fidelities, group)
                # each fit experiment weighs 1: half its own ladder, half its pseudo-targets
                share = 1.0 if len(cuts) == 1 else 0.5 if name == exp else 0.5 / (len(cuts) - 1)
                weights[variant] = share / variants
    table = pd.concat(frames, ignore_index=True)
    curated = dataclasses.replace(task, experiments=experiments, table=table)
    priors = tuple(dict.fromkeys(data.priors + ladder_priors(task.name)))
    return dataclasses.replace(data, task=curated, fit=list(experiments), validation=[], priors=priors,
                               weights=weights)


def ladders(task: Task, exp: str, truncate: bool = True) -> list[tuple[str, tuple[Fidelity, ...]]]:
    """The experiment's ladder and, with `truncate`, its pseudo-targets `<exp>@<k>` (its rungs up
    to rung k, for each rung 1 <= k below the target with at least `MIN_TARGET` runs)."""
    fidelities = task.experiment(exp).fidelities
    out = [(exp, fidelities)]
    if truncate:
        out += [(f"{exp}@{k}", fidelities[: k + 1]) for k in range(1, len(fidelities) - 1)
                if len(task.outcomes(exp, fidelities[k].name)) >= MIN_TARGET]
    return out


def ladder_priors(task: str) -> tuple[Prior, ...]:
    """Priors at the `ladder` suite's distances: each as the suite gives it (every run there),
    then each capped at the `far` suite's prior budget."""
    full = tuple(run.prior_for(task) for run in load_suite("ladder").per_gap())
    budget = load_suite("far").prior_for(task).budget
    return full + tuple(dataclasses.replace(p, budget=budget) for p in full)


def _shifted(x: np.ndarray, target: np.ndarray, rng: np.random.Generator, min_width: float) -> np.ndarray:
    """Rows kept by a shift: target rows in one sub-box, cheaper rows in another."""
    for _ in range(TRIES):
        keep = np.where(target, _inside(x, rng, min_width), _inside(x, rng, min_width))
        if (keep & target).sum() >= min(MIN_TARGET, target.sum()) and (keep & ~target).sum() >= MIN_TARGET:
            return keep
    return np.ones(len(x), bool)


def _inside(x: np.ndarray, rng: np.random.Generator, min_width: float) -> np.ndarray:
    """Rows inside a sub-box that restricts one to `MAX_DIMS` random dimensions."""
    dims = rng.choice(x.shape[1], size=int(rng.integers(1, min(MAX_DIMS, x.shape[1]) + 1)), replace=False)
    width = rng.uniform(min_width, 1.0, len(dims))
    low = rng.uniform(0.0, 1.0 - width)
    return ((x[:, dims] >= low - 1e-9) & (x[:, dims] <= low + width + 1e-9)).all(axis=1)
