"""How long the full `paper` and `far` suites take for every non-LLM method, on 2 cores and on
a 64-core cluster: measured seconds per episode (from completed episodes of a results directory)
times the number of episodes each suite has, divided over the workers.

    python benchmarks/suite_estimate.py results      # per-episode times of the reference results

Per-episode time = setup + ask seconds of the method plus the harness's own 1.7 ms. A method
measured on some tasks only gets its median over those for the others (listed as imputed);
methods with no episodes at all are listed as unmeasured and left out of the total. Wall time
on W workers = total / W (episodes are independent; start-up and the slowest batch are ignored,
so it is a lower bound).
"""

from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd

from bench.gym.registry import load_task, task_names
from bench.gym.suites import load_suite
from bench.methods import methods
from bench.runner import plan
from bench.store import Store

HARNESS_SECONDS = 0.0017


def per_episode_seconds(out: Path) -> pd.Series:
    rows = [{"method": key.method, "task": key.task,
             "seconds": s.ask_seconds + s.setup_seconds + HARNESS_SECONDS}
            for key, s in Store(out).summaries()]
    return pd.DataFrame(rows).groupby(["method", "task"])["seconds"].mean()


def main(out: Path) -> None:
    measured = per_episode_seconds(out)
    names = [m for m, s in methods().items() if s.family != "llm"]
    empty = Store(Path("/nonexistent-results-dir"))
    for suite_name in ("paper", "far"):
        suite = load_suite(suite_name)
        total, episodes, imputed, missing = 0.0, 0, set(), set()
        by_method = measured.groupby(level="method").median()
        for task in task_names():
            load_task(task)
            counts = pd.Series([k.method for _, k in plan(suite, [task], names, empty).todo]).value_counts()
            for method, n in counts.items():
                if (method, task) in measured.index:
                    total, episodes = total + n * measured[(method, task)], episodes + n
                elif method in by_method.index:
                    total, episodes = total + n * by_method[method], episodes + n
                    imputed.add(f"{method}/{task}")
                else:
                    missing.add(method)
        print(f"{suite_name}: {episodes} episodes, {total / 3600:.2f} CPU-hours -> {total / 2 / 3600:.2f} h "
              f"on 2 cores, {total / 64 / 60:.1f} min on 64 cores")
        print(f"  imputed: {', '.join(sorted(imputed)) or 'none'}")
        print(f"  unmeasured (not in the total): {', '.join(sorted(missing)) or 'none'}")


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "results"))
