"""ConfigSpace search spaces: inference from a table, unit-cube encoding, nearest-candidate snapping."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
from ConfigSpace import (
    CategoricalHyperparameter,
    ConfigurationSpace,
    Constant,
    OrdinalHyperparameter,
    UniformFloatHyperparameter,
    UniformIntegerHyperparameter,
)

LOG_RATIO = 100.0  # a positive column spanning at least this ratio is put on a log scale
FLOAT_DIGITS = 13  # ConfigSpace rounds float bounds to this many decimals


def infer_hyperparameter(name: str, values: pd.Series, kind: str | None = None,
                         log: bool | None = None):
    """One hyperparameter from the values a table holds; `kind`/`log` override the inference.

    Strings and booleans are categorical. A float column whose values ConfigSpace cannot hold at
    its 13-decimal precision (Adam's epsilon at 1e-25 ... 1e-10) is an ordinal of its distinct
    values: the sweep's own grid, in order.
    """
    values = values.dropna()
    if kind == "categorical" or (kind is None and (pd.api.types.is_bool_dtype(values)
                                                   or not pd.api.types.is_numeric_dtype(values))):
        choices = sorted((plain(v) for v in values.unique()), key=str)
        return CategoricalHyperparameter(name, choices)
    lo, hi = float(values.min()), float(values.max())
    if lo == hi:
        return Constant(name, plain(values.iloc[0]))
    if log is None:
        log = lo > 0 and hi / lo >= LOG_RATIO
    whole = bool(np.all(np.asarray(values) == np.round(np.asarray(values))))
    if kind == "int" or (kind is None and whole and pd.api.types.is_integer_dtype(values)):
        return UniformIntegerHyperparameter(name, int(lo), int(hi), log=log)
    if any(not np.isclose(round(v, FLOAT_DIGITS), v, rtol=1e-9, atol=0) for v in (lo, hi)):
        return OrdinalHyperparameter(name, sorted(float(v) for v in values.unique()))
    return UniformFloatHyperparameter(name, lo, hi, log=log)


def choices(hp) -> list:
    """The values of a categorical (its choices) or an ordinal (its sequence, in order)."""
    return list(hp.sequence if isinstance(hp, OrdinalHyperparameter) else hp.choices)


def numeric_names(space: ConfigurationSpace) -> list[str]:
    return [
        n for n, hp in space.items()
        if isinstance(hp, UniformFloatHyperparameter | UniformIntegerHyperparameter)
    ]


class Encoder:
    """Unit-cube encoding of a space's configurations, one row per configuration.

    Numeric parameters map to [0, 1] (log-scaled where the space says so), an ordinal to its
    position in the sequence over [0, 1]; a categorical becomes a one-hot block scaled by
    1/sqrt(2), so two different choices are at distance 1. Constants are dropped. Values outside
    the bounds encode outside [0, 1] rather than failing. `one()` encodes a single configuration
    without pandas (the per-trial path); `__call__` a table of them.
    """

    def __init__(self, space: ConfigurationSpace):
        self.parts: list[tuple[str, str, tuple]] = []
        for name, hp in space.items():
            if isinstance(hp, Constant):
                continue
            if isinstance(hp, OrdinalHyperparameter):
                self.parts.append((name, "ordinal", (np.asarray(hp.sequence, float),)))
            elif isinstance(hp, CategoricalHyperparameter):
                self.parts.append((name, "categorical", (list(hp.choices),)))
            elif hp.log:
                self.parts.append((name, "log", (float(np.log(hp.lower)), float(np.log(hp.upper)))))
            else:
                self.parts.append((name, "linear", (float(hp.lower), float(hp.upper))))
        self.width = sum(len(a[0]) if kind == "categorical" else 1 for _, kind, a in self.parts)

    def __call__(self, configs: pd.DataFrame | Sequence[Mapping]) -> np.ndarray:
        df = configs if isinstance(configs, pd.DataFrame) else pd.DataFrame(list(configs))
        blocks = []
        for name, kind, args in self.parts:
            col = df[name]
            if kind == "categorical":
                onehot = np.stack([(col == c).to_numpy(float) for c in args[0]], axis=1)
                blocks.append(onehot / np.sqrt(2.0))
                continue
            x = col.to_numpy(float)
            if kind == "ordinal":
                blocks.append((np.interp(x, args[0], np.arange(len(args[0]))) / (len(args[0]) - 1))[:, None])
                continue
            lo, hi = args
            if kind == "log":
                x = np.log(np.maximum(x, 1e-300))
            blocks.append(((x - lo) / (hi - lo))[:, None])
        return np.hstack(blocks) if blocks else np.zeros((len(df), 0))

    def one(self, config: Mapping) -> np.ndarray:
        out = np.empty(self.width)
        k = 0
        for name, kind, args in self.parts:
            v = config[name]
            if kind == "categorical":
                for c in args[0]:
                    out[k] = SQRT_HALF if v == c else 0.0
                    k += 1
                continue
            if kind == "ordinal":
                out[k] = float(np.interp(float(v), args[0], np.arange(len(args[0])))) / (len(args[0]) - 1)
            else:
                lo, hi = args
                x = float(np.log(max(float(v), 1e-300))) if kind == "log" else float(v)
                out[k] = (x - lo) / (hi - lo)
            k += 1
        return out


SQRT_HALF = float(1 / np.sqrt(2.0))


def encode(space: ConfigurationSpace, configs: pd.DataFrame | Sequence[Mapping]) -> np.ndarray:
    """The unit-cube encoding of `configs` (see `Encoder`)."""
    return Encoder(space)(configs)


def nearest(x: np.ndarray, point: np.ndarray) -> tuple[int, float]:
    """Row of `x` nearest `point` (Euclidean; the first of equals) and its distance."""
    d = np.sqrt(((x - point) ** 2).sum(axis=1))
    i = int(np.argmin(d))
    return i, float(d[i])


def plain(v):
    """numpy scalar -> Python scalar, so configurations keep int/str types and serialise to JSON."""
    return v.item() if isinstance(v, np.generic) else v


def config_at(df: pd.DataFrame, i: int, columns: Sequence[str] | None = None) -> dict:
    """Row `i` of `df` as a configuration dict, each value with its column's own type.

    (`df.iloc[i].to_dict()` would upcast integer columns to float in a mixed-type frame.)
    """
    return {c: plain(df[c].iat[i]) for c in (columns if columns is not None else df.columns)}


class Snapper:
    """Nearest candidate (Euclidean, unit-cube encoding) among a fixed pool of configurations."""

    def __init__(self, space: ConfigurationSpace, pool: pd.DataFrame):
        self.encoder = Encoder(space)
        self.pool = pool.reset_index(drop=True)
        self._x = self.encoder(self.pool)

    def nearest(self, config: Mapping, exclude: Sequence[int] = ()) -> tuple[int, float]:
        """Index of the pool row nearest `config` (skipping `exclude`) and its distance."""
        d = np.sqrt(((self._x - self.encoder.one(config)) ** 2).sum(axis=1))
        if len(exclude):
            d[np.asarray(exclude, dtype=int)] = np.inf
        i = int(np.argmin(d))
        return i, float(d[i])
