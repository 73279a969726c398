"""Declared public data sources: download, verify, cache (or read from `$BENCH_DATA_MIRROR`)."""

from bench.data.sources import SOURCES, DataFile, Source, fetch, path_of

__all__ = ["SOURCES", "DataFile", "Source", "fetch", "path_of"]
