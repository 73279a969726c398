"""`EpisodeSummary`: what a completed episode records, written once (`bench.episode`), filed with its
key in the completion marker (`bench.store`) and read by the metrics (`bench.metrics`)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from bench.errors import BenchError
from bench.loop import USAGE


@dataclass
class EpisodeSummary:
    """One episode's record.

    `scores`: `Scorer.episode` of what the budget scores (the best target value on trial budgets,
    the recommendation on cost budgets), with the failure rule. `failed`: None or the reason.
    `curve`: the best target value after each target run. `extrapolation`: log10(target cost /
    cost of the most expensive fidelity in the prior); `prior_worth`: the prior's GPU-hours in
    target runs; `gap`: the prior's extrapolation distance g; `fold`: the cv fold the method's
    training held the experiment out of (None: the fixed split). `usage`: what LLM agents spent
    (`tokens_in`, `tokens_out`, `dollars`: None when unknown; `fallbacks`), empty for the others.
    """

    scores: dict[str, Any]
    failed: str | None = None
    best: float | None = None
    curve: list[float] = field(default_factory=list)
    recommend: dict[str, Any] | None = None
    recommend_value: float | None = None
    trials: int = 0
    target_trials: int = 0
    refused: int = 0
    gpu_hours: float = 0.0
    budget_gpu_hours: float = 0.0
    pool_size: int = 0
    prior_runs: int = 0
    prior_worth: float | None = None
    extrapolation: float | None = None
    gap: float | None = None
    fold: str | None = None
    direction: str = "minimize"
    simulated: bool = False
    ask_seconds: float = 0.0
    setup_seconds: float = 0.0
    usage: dict[str, float | None] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """Its fields, `usage` flattened into the record (values are plain; nested ones are
        shared, not copied: the record is written, not changed)."""
        record = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        usage = record.pop("usage")
        return {**record, **usage}

    @classmethod
    def from_json(cls, record: dict[str, Any]) -> EpisodeSummary:
        """The summary of a completion marker (unknown keys ignored; fields written by no
        version of the marker keep their defaults)."""
        if "scores" not in record:
            raise BenchError("an episode written by an older version of the benchmark (it has no "
                             "pregret); rerun it into a new --out directory")
        names = {f.name for f in dataclasses.fields(cls)} - {"usage"}
        usage = {k: record[k] for k in (*USAGE, "fallbacks") if k in record}
        return cls(**{k: v for k, v in record.items() if k in names}, usage=usage)
