"""Seconds per ask of each method after 10 and 50 target observations, on data_mixture.

    python benchmarks/ask_overhead.py                      # every method that can run here
    python benchmarks/ask_overhead.py botorch-ei regmix --repeats 5 --experiment github

Each repeat builds the `paper` problem (cheaper-fidelity prior, a trial budget) and drives the
method through its own ask/tell loop, as an episode does, but answers each ask with a random
untried target candidate (seeded per repeat) presented as a snapped outcome. The observations are
thus random target runs, the same for every method, while adapters that pair each tell with an
ask (Optuna, SMAC) keep working. A query at a cheaper fidelity gets the table's real answer and
does not count. The ask after the 10th and after the 50th target observation is timed; the table
shows the median over repeats. Methods that need training or unset environment variables are
skipped.
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import sys
import time

import numpy as np
from rich.console import Console
from rich.table import Table

from bench.errors import BenchError
from bench.gym.problem import Budget, Outcome, Query
from bench.gym.registry import load_task
from bench.gym.space import encode
from bench.loop import seed_everything
from bench.methods import methods, resolve_methods

TASK = "data_mixture"
MAX_ASKS_PER_OBSERVATION = 20  # a method stuck at cheap fidelities is reported, not waited for


def _answer(task, oracle, problem, query: Query, candidate: dict) -> Outcome:
    if query.fidelity != problem.target:
        return oracle.evaluate(query)
    x = encode(problem.space, [query.config, candidate])
    distance = float(np.linalg.norm(x[0] - x[1]))
    ran = oracle.evaluate(Query(candidate, problem.target))
    return dataclasses.replace(ran, snapped=distance > 1e-9, distance=distance)


def time_asks(method: str, experiment: str, counts: list[int], seed: int) -> dict[int, float]:
    """Seconds of the ask made after each of `counts` target observations, for one seed."""
    task = load_task(TASK)
    problem = task.problem(experiment, Budget("trials", max(counts) + 1), "cheaper")
    oracle = task.oracle(experiment)
    pool = problem.candidates()
    if max(counts) > len(pool):
        raise BenchError(f"{experiment} has {len(pool)} target candidates; counts must not exceed it")
    order = np.random.default_rng(seed).permutation(len(pool))
    seed_everything(seed)
    optimizer = methods()[method].make(problem, seed)
    seen, timings = 0, {}
    for _ in range(MAX_ASKS_PER_OBSERVATION * (max(counts) + 1)):
        t0 = time.perf_counter()
        query = optimizer.ask()
        elapsed = time.perf_counter() - t0
        if seen in counts and query.fidelity == problem.target:
            timings[seen] = elapsed
            if seen == max(counts):
                return timings
        candidate = pool.iloc[order[seen % len(pool)]].to_dict()
        optimizer.tell(query, _answer(task, oracle, problem, query, candidate))
        seen += query.fidelity == problem.target
    raise RuntimeError(f"{method} asked {MAX_ASKS_PER_OBSERVATION}x more cheap queries than target ones")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("methods", nargs="*", help="method names (default: every runnable one)")
    parser.add_argument("--experiment", default="pile_cc")
    parser.add_argument("--counts", type=int, nargs="+", default=[10, 50])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    try:
        names = resolve_methods(",".join(args.methods) if args.methods else "all")
    except BenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    names = [m for m in names if not methods()[m].learned]
    counts = sorted(set(args.counts))
    table = Table()
    for col in ["method", "family", *(f"after {n}" for n in counts)]:
        table.add_column(col, justify="left" if col in ("method", "family") else "right")
    console = Console()
    console.print(f"seconds per ask on {TASK}/{args.experiment}, median of {args.repeats} repeats")
    for name in names:
        try:
            runs = [time_asks(name, args.experiment, counts, seed) for seed in range(args.repeats)]
            cells = [f"{statistics.median(r[n] for r in runs):.3f}" for n in counts]
        except Exception as exc:  # one broken method must not hide the others
            cells = [f"error: {type(exc).__name__}: {exc}"[:60]] + [""] * (len(counts) - 1)
        table.add_row(name, methods()[name].family, *cells)
        console.print(f"{name}: {', '.join(cells)}", highlight=False)
    console.print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
