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


def encode(space: ConfigurationSpace, configs: pd.DataFrame | Sequence[Mapping]) -> np.ndarray:
    """Unit-cube encoding, one row per configuration.

    Numeric parameters map to [0, 1] (log-scaled where the space says so), an ordinal to its
    position in the sequence over [0, 1]; a categorical becomes a one-hot block scaled by
    1/sqrt(2), so two different choices are at distance 1. Constants are dropped. Values outside
    the bounds encode outside [0, 1] rather than failing.
    """
    df = configs if isinstance(configs, pd.DataFrame) else pd.DataFrame(list(configs))
    blocks = []
    for name, hp in space.items():
        if isinstance(hp, Constant):
            continue
        col = df[name]
        if isinstance(hp, OrdinalHyperparameter):
            seq = np.asarray(hp.sequence, float)
            position = np.interp(col.to_numpy(float), seq, np.arange(len(seq)))
            blocks.append((position / (len(seq) - 1))[:, None])
            continue
        if isinstance(hp, CategoricalHyperparameter):
            onehot = np.stack([(col == c).to_numpy(float) for c in hp.choices], axis=1)
            blocks.append(onehot / np.sqrt(2.0))
            continue
        x = col.to_numpy(float)
        lo, hi = float(hp.lower), float(hp.upper)
        if hp.log:
            x, lo, hi = np.log(np.maximum(x, 1e-300)), np.log(lo), np.log(hi)
        blocks.append(((x - lo) / (hi - lo))[:, None])
    return np.hstack(blocks) if blocks else np.zeros((len(df), 0))


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
        self.space = space
        self.pool = pool.reset_index(drop=True)
        self._x = encode(space, self.pool)

    def nearest(self, config: Mapping, exclude: Sequence[int] = ()) -> tuple[int, float]:
        """Index of the pool row nearest `config` (skipping `exclude`) and its distance."""
        d = np.linalg.norm(self._x - encode(self.space, [config]), axis=1)
        if len(exclude):
            d[np.asarray(exclude, dtype=int)] = np.inf
        i = int(np.argmin(d))
        return i, float(d[i])
