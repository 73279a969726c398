"""Dollar estimates from a dated price table (`configs/llm_prices.yaml`, `$BENCH_LLM_PRICES`)."""

from __future__ import annotations

import datetime
import functools
import os
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

from bench.errors import BenchError
from bench.paths import configs_dir


class Price(BaseModel):
    model_config = ConfigDict(extra="forbid")

    input: float  # USD per million prompt tokens
    output: float  # USD per million completion tokens (reasoning included)


class PriceTable(BaseModel):
    model_config = ConfigDict(extra="forbid")

    as_of: datetime.date
    models: dict[str, Price]


def _read(path: Path) -> PriceTable:
    try:
        return PriceTable.model_validate(yaml.safe_load(path.read_text()))
    except (OSError, yaml.YAMLError, ValidationError) as exc:
        raise BenchError(f"LLM price table {path} is unreadable: {exc}") from exc


@functools.cache
def prices() -> dict[str, Price]:
    """Model -> price: the project's table, updated by `$BENCH_LLM_PRICES` if set."""
    table = dict(_read(configs_dir() / "llm_prices.yaml").models)
    if override := os.environ.get("BENCH_LLM_PRICES"):
        table.update(_read(Path(override)).models)
    return table


def dollars(model: str, tokens_in: int, tokens_out: int) -> float | None:
    """Estimated cost of one call, or None when the model has no price."""
    price = prices().get(model)
    if price is None:
        return None
    return (tokens_in * price.input + tokens_out * price.output) / 1e6
