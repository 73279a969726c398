"""The policy's feature design choices, chosen on train experiments only.

For each built-in task, the extrapolating expert (`agents.policy.teachers.TrendExpert`, greedy)
plays one target trial on every train experiment under the `paper` and `far` protocols (seeds
0-3); its mean nregret is printed for each value of the ridge on the
slope of the optimum's location (`agents.policy.features.LOCATION_RIDGE`; the score trend's
`RIDGE` is set by `--ridge`). The expert's first pick is the argmax of the extrapolated trend
minus the distance to the extrapolated optimum, so this measures the features directly, before
any training. `python benchmarks/policy_design.py [--ridge 0.5] [--ridges 0 0.05 0.1 0.5]`
"""

from __future__ import annotations

import argparse

import numpy as np

from agents.policy import features
from agents.policy.teachers import TrendExpert
from bench.gym.problem import Budget
from bench.gym.registry import load_task, task_names
from bench.loop import play
from bench.training import TrainingData


def first_pick(task, data: TrainingData, seeds=range(4)) -> float:
    scores = []
    for exp in task.split("train"):
        values = task.arrays(exp, task.experiment(exp).target.name)[1]
        sign, optimum = task.objective.sign, task.objective.best(values)
        scale = abs(float(np.median(values)) - optimum) or 1.0
        for prior in data.priors:
            if not task.offers(exp, prior):
                continue
            for s in seeds:
                problem = task.problem(exp, Budget("trials", 1), prior, seed=s)
                best = play(TrendExpert(problem, s), task.oracle(exp, s), problem)
                scores.append(sign * (best - optimum) / scale)
    return float(np.mean(scores))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--ridges", type=float, nargs="+", default=[0.0, 0.05, 0.1, 0.5])
    parser.add_argument("--ridge", type=float, default=features.RIDGE)
    parser.add_argument("--location-by", choices=["cost", "descriptors"], default=features.LOCATION_BY)
    parser.add_argument("--top-share", type=float, default=features.TOP_SHARE)
    parser.add_argument("--top-min", type=int, default=features.TOP_MIN)
    args = parser.parse_args()
    features.RIDGE, features.LOCATION_BY = args.ridge, args.location_by
    features.TOP_SHARE, features.TOP_MIN = args.top_share, args.top_min
    print("task".ljust(24) + "".join(f"ridge {r:<6}" for r in args.ridges))
    for name in task_names():
        task = load_task(name)
        data = TrainingData.of(task)
        row = []
        for r in args.ridges:
            features.LOCATION_RIDGE = r
            row.append(first_pick(task, data))
        print(name.ljust(24) + "".join(f"{v:<12.3f}" for v in row), flush=True)


if __name__ == "__main__":
    main()
