"""Test set-up: data from the local mirror (../shared/data by default), a throw-away cache."""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd
import pytest

from bench.gym.spec import TaskSpec, build_task

ROOT = Path(__file__).resolve().parents[1]
_default_mirror = ROOT.parent / "shared" / "data"
if not os.environ.get("BENCH_DATA_MIRROR") and _default_mirror.is_dir():
    os.environ["BENCH_DATA_MIRROR"] = str(_default_mirror)


@pytest.fixture(autouse=True, scope="session")
def _isolated_cache(tmp_path_factory):
    os.environ["BENCH_CACHE"] = str(tmp_path_factory.mktemp("bench-cache"))


@pytest.fixture
def cache(monkeypatch, tmp_path) -> Path:
    """A fresh `$BENCH_CACHE` for one test (checkpoints, LLM responses)."""
    monkeypatch.setenv("BENCH_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


@pytest.fixture
def tiny_table() -> pd.DataFrame:
    """Two experiments, two fidelities, a 1-D lr grid; hand-checkable numbers."""
    rows = []
    for exp, shift in (("a", 0.0), ("b", 1.0)):
        for params, tokens, lrs, losses in (
            (1e6, 1e9, [1e-4, 1e-3, 1e-2], [3.0, 2.5, 2.8]),
            (1e8, 1e10, [1e-4, 3e-4, 1e-3, 3e-3], [2.4, 2.1, 2.0, 2.6]),
        ):
            for lr, loss in zip(lrs, losses, strict=True):
                rows.append({"exp": exp, "lr": lr, "params": params, "tokens": tokens,
                             "loss": loss + shift})
    return pd.DataFrame(rows)


@pytest.fixture
def tiny_task(tiny_table):
    spec = TaskSpec(name="tiny", objective={"column": "loss", "direction": "minimize"},
                    config=["lr"], fidelity=["params", "tokens"], experiment="exp", test=["b"])
    return build_task(spec, tiny_table)
