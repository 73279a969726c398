"""Where the project keeps its cache and finds its configuration files."""

from __future__ import annotations

import os
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[1]


def cache_dir() -> Path:
    """`$BENCH_CACHE`, default `~/.cache/llmconfig-bench`."""
    return Path(os.environ.get("BENCH_CACHE", Path.home() / ".cache" / "llmconfig-bench"))


def configs_dir() -> Path:
    """`$BENCH_CONFIGS`, default the repository's `configs/`."""
    return Path(os.environ.get("BENCH_CONFIGS", PROJECT_ROOT / "configs"))
