"""Where the project keeps its cache and finds its configuration files."""

from __future__ import annotations

import os
from importlib import resources
from pathlib import Path


def cache_dir() -> Path:
    """`$BENCH_CACHE`, default `~/.cache/llmconfig-bench`."""
    return Path(os.environ.get("BENCH_CACHE", Path.home() / ".cache" / "llmconfig-bench"))


def configs_dir() -> Path:
    """`$BENCH_CONFIGS`, default the method presets, suites and LLM prices shipped inside the
    package (`bench/configs`: in a checkout a link to the repository's `configs/`, in an installed
    wheel package data)."""
    if override := os.environ.get("BENCH_CONFIGS"):
        return Path(override)
    return Path(str(resources.files("bench") / "configs"))
