"""Choose the `far` suite's prior budget k and gap g per task, on TRAIN experiments only.

For every (k, g) on a grid, the four anchors random, centroid, best-prior and extrapolate run
on the task's train experiments (10 seeds, T = 3; their first trial is the T = 1 episode, as
they do not depend on the budget), and the 95% hierarchical-bootstrap intervals of their mean
pregret (the primary score; episodes scored by `Scorer.episode` and aggregated by `bench.metrics`,
as the harness does) are compared. The score of (k, g) is the number of anchor pairs whose
intervals are disjoint at T = 1 and T = 3 (12 at most); ties go to the smaller prior and the
larger gap (the harder protocol). Only (k, g) that leave every test experiment a prior fidelity,
keep at least half the train experiments, and buy every kept experiment at least `MIN_PRIOR_RUNS`
runs of its cheapest prior fidelity are candidates (all three check costs, not outcomes);
intervals over one or two experiments would be too narrow to trust. Test experiments are never run.

    python benchmarks/far_protocol.py [TASK ...]
"""

from __future__ import annotations

import itertools
import sys

import pandas as pd

from bench.gym.problem import Budget
from bench.gym.registry import load_task, task_names
from bench.gym.task import Prior, method_seed
from bench.methods import methods
from bench.metrics import METRIC, episodes_frame, leaderboard

ANCHORS = ["random", "centroid", "best-prior", "extrapolate"]
K_GRID = [0.03, 0.1, 0.3, 1.0, 3.0]  # `far` is a capped prior ...
G_GRID = [2, 3, 10, 30, 100, 1000]  # ... with a real extrapolation distance
SEEDS = 10
MIN_PRIOR_RUNS = 3  # a capped prior too small to hold a run would turn every method into random search


def anchor_scores(task, prior: Prior) -> list[dict]:
    """Episode summaries (in `bench.metrics` form) of the anchors at T = 1 and T = 3."""
    rows = []
    for exp in task.split("train"):
        if not task.offers(exp, prior):
            continue
        scorer = task.scorer(exp)
        pool = len(scorer.values)
        if pool < 6:
            continue
        for method, seed in itertools.product(ANCHORS, range(SEEDS)):
            problem = task.problem(exp, Budget("trials", 3), prior, seed=seed)
            oracle = task.oracle(exp, seed=seed)
            opt = methods()[method].make(problem, method_seed(seed))  # as the harness seeds it
            best, curve, diverged = None, [], []
            for _ in range(3):
                query = opt.ask()
                outcome = oracle.evaluate(query)
                opt.tell(query, outcome)
                if best is None or task.objective.is_better(outcome.value, best):
                    best = outcome.value
                    diverged.append(outcome.diverged)
                else:
                    diverged.append(diverged[-1])
                curve.append(best)
            for t in (1, 3):
                rows.append({"key": {"suite": "far", "task": task.name, "method": method, "experiment": exp,
                                     "budget_kind": "trials", "budget": t, "seed": seed},
                             "best": curve[t - 1], "recommend_value": curve[t - 1], "curve": curve[:t],
                             "scores": scorer.episode(curve[t - 1], curve[:t], False, diverged[t - 1], t),
                             "failed": None, "direction": task.objective.direction, "gpu_hours": 0.0,
                             "budget_gpu_hours": 1.0, "ask_seconds": 0.0, "trials": t, "pool_size": pool})
    return rows


def separated_pairs(board: pd.DataFrame, metric: str = METRIC) -> int:
    n = 0
    for _, g in board.groupby("budget"):
        g = g.set_index("method")
        for a, b in itertools.combinations(ANCHORS, 2):
            lo_a, hi_a = g.loc[a, f"{metric}_lo"], g.loc[a, f"{metric}_hi"]
            lo_b, hi_b = g.loc[b, f"{metric}_lo"], g.loc[b, f"{metric}_hi"]
            n += hi_a < lo_b or hi_b < lo_a
    return n


def main(tasks: list[str]) -> None:
    from bench.loop import seed_everything

    pd.set_option("display.width", 200)
    for name in tasks:
        task = load_task(name)
        results = []
        for k, g in itertools.product(K_GRID, G_GRID):
            prior = Prior("cheaper", gap=g, budget=k)
            kept = [e for e in task.split("train") if task.prior_fidelities(e, prior)]
            if len(kept) < len(task.split("train")) / 2 or not all(
                    task.prior_fidelities(e, prior) for e in task.split("test")):
                continue
            cheapest = {e: task.prior_fidelities(e, prior)[0].cost for e in [*kept, *task.split("test")]}
            if any(k * task.experiment(e).target.cost < MIN_PRIOR_RUNS * c for e, c in cheapest.items()):
                continue
            seed_everything(0)
            summaries = anchor_scores(task, prior)
            if not summaries:
                continue
            board = leaderboard(episodes_frame(summaries))
            means = board.pivot_table(index="method", columns="budget", values=f"{METRIC}_mean")
            results.append({"k": k, "g": g, "separated": separated_pairs(board),
                            "experiments": board.experiments.max(),
                            **{f"{m}@{t:g}": means.loc[m, t] for m in ANCHORS for t in (1, 3)}})
            shown = {c: v if isinstance(v, str) else round(float(v), 3) for c, v in results[-1].items()}
            print(name, shown, flush=True)
        table = pd.DataFrame(results)
        if table.empty:
            print(f"\n{name}: no (k, g) on the grid keeps the experiments a prior fidelity", flush=True)
            continue
        best = table.sort_values(["separated", "k", "g"], ascending=[False, True, False]).iloc[0]
        print(f"\n{name}: chosen k={best.k:g} g={best.g:g} ({best.separated}/12 anchor pairs separated)\n"
              + table.round(3).to_string(index=False), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:] or task_names())
