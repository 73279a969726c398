"""What `bench suggest` shows and writes: a table per method's advice, suggestions.json/.csv, and
the backtest's rows and per-method summary (backtest.json/.csv)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import pandas as pd
from rich.table import Table

from bench.errors import BenchError
from bench.suggest.advice import Advice
from bench.suggest.pool import Setup


def _fmt(v: Any) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def advice_table(advice: Advice, objective) -> Table:
    """One method's suggestions: rank, configuration, prediction +- std, rationale."""
    unit = f" ({objective.unit})" if objective.unit else ""
    t = Table(title=f"{advice.method}" + (f" - {advice.note}" if advice.note else ""), title_justify="left")
    for c in ("rank", "configuration", f"predicted {objective.name}{unit}", "rationale"):
        t.add_column(c, overflow="fold")
    for s in advice.suggestions:
        pred = "-" if s.mean is None else _fmt(s.mean) + ("" if s.std is None else f" ± {s.std:.2g}")
        t.add_row(str(s.rank), ", ".join(f"{k}={_fmt(v)}" for k, v in s.config.items()), pred,
                  s.rationale or "-")
    return t


def suggestion_rows(advices: list[Advice]) -> pd.DataFrame:
    return pd.DataFrame([{"method": a.method, "rank": s.rank, "candidate": s.candidate, **s.config,
                          "predicted": s.mean, "predicted_std": s.std, "rationale": s.rationale}
                         for a in advices for s in a.suggestions])


def write_suggestions(out: Path, setup: Setup, advices: list[Advice], skipped: dict[str, str]) -> list[Path]:
    """suggestions.json (the question, every method's answer, what was skipped) and .csv."""
    problem, target = setup.problem, setup.problem.fidelities[-1]
    doc = {"task": problem.task, "experiment": problem.experiment,
           "target": {"fidelity": target.name, "descriptors": dict(target.descriptors),
                      "gpu_hours": target.cost, "gpu_hours_source": setup.cost_note},
           "pool": {"size": len(problem.arrays()), "source": setup.pool_note},
           "prior_runs": len(problem.prior), "observed": len(setup.observed), "budget": problem.budget.amount,
           "methods": {a.method: {"note": a.note,
                                  "suggestions": [dataclasses.asdict(s) for s in a.suggestions]}
                       for a in advices},
           "skipped": skipped}
    return _write(out, "suggestions", doc, suggestion_rows(advices))


def backtest_summary(rows: list[dict]) -> pd.DataFrame:
    """Per method: means over the experiments and seeds scored."""
    df = pd.DataFrame(rows)
    return df.groupby("method", sort=False).agg(
        budget=("budget", "first"), n=("n", "first"), experiments=("experiment", "nunique"),
        seeds=("seed", "nunique"), pregret=("pregret", "mean"), regret=("regret", "mean"),
        nregret=("nregret", "mean"), pregret_at_once=("pregret_at_once", "mean"),
        nregret_at_once=("nregret_at_once", "mean"), diverged=("diverged", "mean"),
        failed=("failed", "count")).reset_index()


def write_backtest(out: Path, rows: list[dict]) -> list[Path]:
    return _write(out, "backtest", {"episodes": rows}, pd.DataFrame(rows))


def _write(out: Path, stem: str, doc: dict, table: pd.DataFrame) -> list[Path]:
    try:
        out.mkdir(parents=True, exist_ok=True)
        paths = [out / f"{stem}.json", out / f"{stem}.csv"]
        paths[0].write_text(json.dumps(doc, indent=2) + "\n")
        table.to_csv(paths[1], index=False)
    except OSError as exc:
        raise BenchError(f"cannot write to {out}: {exc.strerror}") from exc
    return paths
