"""Parquet cache of built outcome tables under `$BENCH_CACHE/tables`."""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable

import pandas as pd

from bench.data import SOURCES
from bench.paths import cache_dir

log = logging.getLogger(__name__)


def cached_table(name: str, sources: list[str], version: int,
                 build: Callable[[], pd.DataFrame]) -> pd.DataFrame:
    """`build()` once per (source checksums, loader version); later calls read the parquet file.

    The raw files are still verified on every build; an unreadable cache file is rebuilt.
    """
    digest = hashlib.sha256(
        repr((version, [(f.path, f.sha256) for s in sources for f in SOURCES[s].files])).encode()
    ).hexdigest()[:16]
    path = cache_dir() / "tables" / f"{name}-{digest}.parquet"
    if path.is_file():
        try:
            return pd.read_parquet(path)
        except Exception as exc:  # corrupt or partial cache file: rebuild it
            log.warning("cache file %s is unreadable (%s); rebuilding it", path, exc)
    df = build()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        df.to_parquet(tmp, index=False)
        tmp.replace(path)
    except OSError as exc:
        log.warning("could not write cache file %s: %s", path, exc)
    return df
