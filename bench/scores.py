"""Every score of a target outcome, in one place: pregret, regret, nregret, divergence, failure.

- `pregret` (the primary score): the share of the target pool strictly better than the outcome
  (0 = the optimum, 1 = the worst candidate; ties count as not better). Bounded and unit-free,
  so one diverged pick costs at most 1 and tasks compare.
- `regret`: the gap to the pool's optimum in the objective's units (>= 0).
- `nregret`: regret / |median - optimum| (0 = the optimum, 1 = the median candidate). Where
  half the pool or more ties at the optimum the scale is |worst - optimum| instead (1 = the
  worst), and 1 where every candidate ties: always finite, one convention everywhere.
- A failed episode scores as the worst target candidate for regret and nregret, and pregret 1.
- `diverged`: whether the best target run found diverged (the task's rule, `Task.diverged`).

The harness's episodes, the leaderboard (`bench.metrics`), validation of learned methods, the
Gymnasium reward, the policy's training episodes, diagnostics and `bench suggest --backtest`
all score through `Scorer`.
"""

from __future__ import annotations

import bisect
import functools
from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class Scorer:
    """The scores of outcomes against one target pool (`values`, in the objective's units)."""

    values: np.ndarray
    direction: str
    _sorted: np.ndarray = field(init=False, repr=False, compare=False)  # oriented, ascending

    def __post_init__(self):
        values = np.asarray(self.values, float)
        if not len(values) or not np.isfinite(values).all():
            raise ValueError("a target pool needs at least one outcome, all finite")
        object.__setattr__(self, "values", values)
        object.__setattr__(self, "_sorted", np.sort(self.sign * values))

    @property
    def sign(self) -> float:
        return 1.0 if self.direction == "minimize" else -1.0

    @property
    def optimum(self) -> float:
        return float(self.sign * self._sorted[0])

    @property
    def worst(self) -> float:
        return float(self.sign * self._sorted[-1])

    @functools.cached_property
    def median(self) -> float:
        return float(np.median(self.values))

    @functools.cached_property
    def scale(self) -> float:
        """The unit of nregret: |median - optimum|, else |worst - optimum|, else 1."""
        return abs(self.median - self.optimum) or abs(self.worst - self.optimum) or 1.0

    def regret(self, value):
        """Gap to the optimum in the objective's units (NaN for a missing value)."""
        return self.sign * (np.asarray(value, float) - self.optimum) + 0.0  # no -0.0

    def nregret(self, value):
        return self.regret(value) / self.scale

    def pregret(self, value):
        """Share of the pool strictly better than `value` (vectorised; NaN stays NaN)."""
        value = np.asarray(value, float)
        better = np.searchsorted(self._sorted, self.sign * value, side="left") / len(self._sorted)
        return np.where(np.isnan(value), np.nan, better)

    def point(self, value: float) -> tuple[float, float, float]:
        """(pregret, nregret, regret) of one value as plain floats, without array overhead (the
        Gymnasium env's per-step path); the same numbers as `pregret`, `nregret`, `regret`."""
        regret = self.sign * (value - self.optimum) + 0.0
        return bisect.bisect_left(self._ascending, self.sign * value) / len(self._ascending), \
            regret / self.scale, regret

    @functools.cached_property
    def _ascending(self) -> list[float]:
        return self._sorted.tolist()

    def episode(self, final: float | None, curve: list[float], failed: bool = False,
                diverged: bool = False, length: int | None = None) -> dict:
        """The scores of one episode: of `final` (the best target value of a trial budget, the
        recommendation's of a cost budget) `value`, `pregret`, `regret`, `nregret`, and `diverged`;
        of the anytime `curve` (best target value after each target trial) `pregret_curve` and
        `nregret_curve`, padded with its last value to `length` trials. A failed episode (or one
        with nothing to score) is the worst candidate throughout, pregret 1, and not diverged."""
        if failed or final is None:
            worst, n = self.worst, length or 0
            return {"value": worst, "regret": float(self.regret(worst)),
                    "nregret": float(self.nregret(worst)), "pregret": 1.0, "diverged": False,
                    "pregret_curve": [1.0] * n, "nregret_curve": [float(self.nregret(worst))] * n}
        padded = np.array(curve + curve[-1:] * ((length or len(curve)) - len(curve)), float)
        return {"value": float(final), "regret": float(self.regret(final)),
                "nregret": float(self.nregret(final)), "pregret": float(self.pregret(final)),
                "diverged": bool(diverged), "pregret_curve": self.pregret(padded).tolist(),
                "nregret_curve": self.nregret(padded).tolist()}
