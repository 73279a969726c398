"""Stage 1, curation: training episodes that imitate the test situation, from train experiments only.

Each `fit` experiment of the training data becomes `variants` curated experiments. Variant 0 is
the experiment itself; the others add a configuration-space shift: the target candidates are
those inside one random sub-box of the unit cube and the cheap runs those inside another, drawn
independently (each restricts one or two random dimensions to `min_width`-1 of their range), so
the space the cheap runs cover differs from the one the target is chosen in, as when a
researcher's small sweep does not span the expensive run's options. The landscape shift is the
data's own: the optimum moves between fidelities as it really did. Episodes are then drawn from
the curated experiments with the protocols the method is tested under (`paper`, and `far` with
its gap and capped prior; `TrainingData.draw`), so priors are capped and distant exactly as at
test time.

The curated task is a `Task` like any other (Problems, Oracles, the Gymnasium env and every
baseline work on it) holding copies of train rows only; the test experiments never enter it.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd

from bench.gym.task import Experiment
from bench.training import BUDGETS, TrainingData

MIN_TARGET = 2 * max(BUDGETS)  # target candidates a shifted variant keeps (else it is not shifted)
TRIES = 20
MAX_DIMS = 2  # a sub-box restricts this many dimensions at most (17 at once would leave nothing)


def curate(data: TrainingData, seed: int, variants: int = 4, min_width: float = 0.5) -> TrainingData:
    """The training data of the curated experiments (`fit`: every curated experiment; validation
    experiments are left out: they judge the trained policy on the real, unshifted problems)."""
    task, rng = data.task, np.random.default_rng(seed)
    frames, experiments = [], {}
    for exp in data.fit:
        e = task.experiment(exp)
        rows = task.table[task.table["experiment"] == exp]
        x = task.encoder(rows[list(task.space.keys())])
        target = (rows["fidelity"] == e.target.name).to_numpy()
        for v in range(variants):
            keep = np.ones(len(rows), bool) if v == 0 else _shifted(x, target, rng, min_width)
            name = exp if v == 0 else f"{exp}~{v}"
            frames.append(rows[keep].assign(experiment=name))
            experiments[name] = Experiment(name, "train", e.fidelities)
    table = pd.concat(frames, ignore_index=True)
    curated = dataclasses.replace(task, experiments=experiments, table=table)
    return dataclasses.replace(data, task=curated, fit=list(experiments), validation=[])


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
