"""Benchmark `my_optimizer:TopKCentre` against built-in methods on the `cv` suite (grouped
cross-validation) and print where it ranks, through the Python API (`bench.api`):

    python examples/my_optimizer/compare.py                      # from any directory
    python examples/my_optimizer/compare.py --against all        # every built-in that runs here

`bench run --method my_optimizer:TopKCentre,...` does the same from the command line, run in this
folder (or with it on PYTHONPATH); `bench leaderboard` then prints the full tables.
"""

from __future__ import annotations

import argparse

from bench import api

MINE = "my_optimizer:TopKCentre"  # importable: this script's folder is on sys.path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--task", default="data_mixture")
    parser.add_argument("--suite", default="cv")
    parser.add_argument("--against", default="random,centroid,best-prior,extrapolate,regmix,optuna-tpe",
                        help="built-in methods, comma-separated, or all (learned ones train first)")
    parser.add_argument("--seeds", type=int, help="override the suite's seeds")
    parser.add_argument("--budget", type=float, help="override the suite's budgets with one")
    parser.add_argument("--out", default="runs/my_optimizer")
    parser.add_argument("--jobs", type=int, default=1)
    args = parser.parse_args()

    episodes = api.run(task=args.task, methods=[MINE, *args.against.split(",")], suite=args.suite,
                       out=args.out, seeds=args.seeds, budget=args.budget, jobs=args.jobs, quiet=False)
    board = api.leaderboard(episodes)
    for (task, budget), rows in board.groupby(["task", "budget"]):
        rows = rows.sort_values("rank_mean").reset_index(drop=True)
        mine = rows.index[rows.method == MINE][0]
        print(f"{task} ({args.suite}), T={budget:g}: {MINE} ranks {mine + 1} of {len(rows)} "
              f"(mean rank {rows.rank_mean[mine]:.2f}, pregret {rows.pregret_mean[mine]:.3f}; "
              f"first: {rows.method[0]}, {rows.pregret_mean[0]:.3f})")


if __name__ == "__main__":
    main()
