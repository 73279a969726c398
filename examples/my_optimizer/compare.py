"""Benchmark `my_optimizer:TopKCentre` against built-in methods on the `cv` suite (grouped
cross-validation) and print where it ranks, through the Python API (`bench.api`):

    python examples/my_optimizer/compare.py                      # from any directory
    python examples/my_optimizer/compare.py --against all        # every built-in that runs here
    python examples/my_optimizer/compare.py --reference results  # beside the published results

`--reference DIR` runs only this optimizer and ranks it beside every method of a results directory
(the published `results/` of a clone), paired: the same suite, task, experiments, budgets and seeds.

`bench run --method my_optimizer:TopKCentre,...` does the same from the command line, run in this
folder (or with it on PYTHONPATH); `bench leaderboard` then prints the full tables.
"""

from __future__ import annotations

import argparse
import sys

import pandas as pd

from bench import api
from bench.errors import BenchError
from bench.metrics import episodes_frame
from bench.store import Store

MINE = "my_optimizer:TopKCentre"  # importable: this script's folder is on sys.path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--task", default="data_mixture")
    parser.add_argument("--suite", default="cv")
    parser.add_argument("--against", default="random,centroid,best-prior,extrapolate,regmix,optuna-tpe",
                        help="built-in methods, comma-separated, or all (learned ones train first)")
    parser.add_argument("--reference", help="a results directory: rank beside its methods, run only mine")
    parser.add_argument("--seeds", type=int, help="override the suite's seeds")
    parser.add_argument("--budget", type=float, help="override the suite's budgets with one")
    parser.add_argument("--out", default="runs/my_optimizer")
    parser.add_argument("--jobs", type=int, default=1)
    args = parser.parse_args()

    against = [] if args.reference else args.against.split(",")
    episodes = api.run(task=args.task, methods=[MINE, *against], suite=args.suite,
                       out=args.out, seeds=args.seeds, budget=args.budget, jobs=args.jobs, quiet=False)
    if args.reference:
        episodes = beside(episodes, args.reference)
    board = api.leaderboard(episodes)
    for (task, budget), rows in board.groupby(["task", "budget"]):
        rows = rows.sort_values("rank_mean").reset_index(drop=True)
        mine = rows.index[rows.method == MINE][0]
        print(f"{task} ({args.suite}), T={budget:g}: {MINE} ranks {mine + 1} of {len(rows)} "
              f"(mean rank {rows.rank_mean[mine]:.2f}, pregret {rows.pregret_mean[mine]:.3f}; "
              f"first: {rows.method[0]}, {rows.pregret_mean[0]:.3f})")


def beside(mine: pd.DataFrame, reference: str) -> pd.DataFrame:
    """My episodes and the reference's episodes of the same (suite, task, experiment, budget, seed):
    a reference method that lacks any of them is left out, so every row compared is paired."""
    keys = ["suite", "task", "experiment", "budget_kind", "budget", "seed"]
    cells = mine[keys].drop_duplicates()
    ref = episodes_frame(Store(reference).summaries())
    ref = ref[ref.method != MINE].merge(cells, on=keys)
    complete = ref.groupby("method").size() == len(cells)
    if not complete.any():
        raise BenchError(f"{reference} has no method with every episode of this run; "
                         "run the suite and seeds it holds")
    return pd.concat([mine, ref[ref.method.isin(complete[complete].index)]], ignore_index=True)


if __name__ == "__main__":
    try:
        main()
    except BenchError as e:  # bad input: one message, exit 2, as the CLI does
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
