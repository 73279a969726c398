"""Parquet cache of built outcome tables under `$BENCH_CACHE/tables`.

A cache file is named by the loader version and the checksums of the source files it was built
from, and carries the checksum of its own contents in its metadata: a file that is unreadable,
or readable but not what was written (edited, truncated to valid parquet, from another build),
is rebuilt.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from bench.data import SOURCES
from bench.paths import cache_dir

log = logging.getLogger(__name__)
CHECKSUM_KEY = b"llmconfig-bench.sha256"


def content_sha256(df: pd.DataFrame) -> str:
    """Checksum of a table's columns, dtypes and values (not of its file encoding)."""
    h = hashlib.sha256(repr([(c, str(t)) for c, t in df.dtypes.items()]).encode())
    h.update(pd.util.hash_pandas_object(df, index=False).to_numpy().tobytes())
    return h.hexdigest()


def _read(path) -> pd.DataFrame | None:
    try:
        table = pq.read_table(path)
        df = table.to_pandas()
    except Exception as exc:  # corrupt or partial cache file: rebuild it
        log.warning("cache file %s is unreadable (%s); rebuilding it", path, exc)
        return None
    recorded = (table.schema.metadata or {}).get(CHECKSUM_KEY, b"").decode()
    if recorded != content_sha256(df):
        log.warning("cache file %s does not match its checksum; rebuilding it", path)
        return None
    return df


def cached_table(name: str, sources: list[str], version: int,
                 build: Callable[[], pd.DataFrame]) -> pd.DataFrame:
    """`build()` once per (source checksums, loader version); later calls read the parquet file.

    The raw files are still verified on every build; a damaged cache file is rebuilt.
    """
    digest = hashlib.sha256(
        repr((version, [(f.path, f.sha256) for s in sources for f in SOURCES[s].files])).encode()
    ).hexdigest()[:16]
    path = cache_dir() / "tables" / f"{name}-{digest}.parquet"
    if path.is_file() and (df := _read(path)) is not None:
        return df
    df = build().reset_index(drop=True)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        table = pa.Table.from_pandas(df, preserve_index=False)
        table = table.replace_schema_metadata({**(table.schema.metadata or {}),
                                               CHECKSUM_KEY: content_sha256(df).encode()})
        tmp = path.with_suffix(".tmp")
        pq.write_table(table, tmp)
        tmp.replace(path)
    except OSError as exc:
        log.warning("could not write cache file %s: %s", path, exc)
    return df
