"""Print README's headline table for one suite and budget from a results directory's
`leaderboard.csv` (as `bench report` wrote it): per method and task the mean pregret with its
interval (95% from the experiments; a task with few experiments gives the range of resampling them,
marked so), the mean over the tasks every method ran, and the highest per-task divergence rate.
The methods of `--method all` only: the policy's ablations and other named presets are in the
report (its "Variants against their preset" section).

    python scripts/readme_headline.py results --suite cv --budget 1
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd

from bench.methods import methods
from bench.report import markdown_table


def headline(board: pd.DataFrame, suite: str, budget: float, metric: str = "pregret") -> str:
    rows = board[(board.suite == suite) & (board.budget == budget) & (board.budget_kind == "trials")]
    known = methods()
    rows = rows[[m in known and known[m].in_all for m in rows.method]]
    if rows.empty:
        raise SystemExit(f"no {suite} rows at T={budget:g} in {suite}'s leaderboard")
    tasks = sorted(rows.task.unique())
    shared = [t for t in tasks if set(rows[rows.task == t].method) == set(rows.method)]
    cells = rows.set_index(["method", "task"])
    experiments = rows.groupby("task").experiments.max()
    few = rows.groupby("task").few_experiments.any()
    means = rows.pivot(index="method", columns="task", values=f"{metric}_mean")
    order = means[shared].mean(axis=1).sort_values(kind="stable").index
    head = ["method", *(f"{t} ({experiments[t]} exps{', range' if few[t] else ''})" for t in tasks),
            f"mean of the {len(shared)} tasks all ran", "diverged, highest task"]
    table = []
    for method in order:
        out = [method]
        for t in tasks:
            if (method, t) not in cells.index:
                out.append("-")
                continue
            c = cells.loc[(method, t)]
            text = f"{c[f'{metric}_mean']:.3f} [{c[f'{metric}_lo']:.3f}, {c[f'{metric}_hi']:.3f}]"
            out.append(f"**{text}**" if c[f"{metric}_mean"] - means[t].min() < 5e-4 else text)
        out.append(f"{means.loc[method, shared].mean():.3f}")
        out.append(f"{rows[rows.method == method].diverged_rate.max():.0%}")
        table.append(out)
    return markdown_table(pd.DataFrame(table, columns=head))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", type=Path)
    parser.add_argument("--suite", default="cv")
    parser.add_argument("--budget", type=float, default=1.0)
    parser.add_argument("--metric", default="pregret")
    args = parser.parse_args()
    print(headline(pd.read_csv(args.runs / "leaderboard.csv"), args.suite, args.budget, args.metric))


if __name__ == "__main__":
    main()
