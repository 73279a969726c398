"""How long the project takes at the scales people use it, each figure beside its goal.

    python benchmarks/suite_time.py estimate RUNS... [--cache CACHE]   # from measured episodes
    python benchmarks/suite_time.py main                     # README's main job, empty cache
    python benchmarks/suite_time.py tests                    # README's test command

`estimate`: for the `paper`, `far`, `cv` and `ladder` suites, every non-LLM preset on every built-
in task: the episodes each has times the seconds an episode of that (method, task, budget) took in
the RUNS directories (the last one holding that method and task; ask + setup seconds + the
harness's 1.7 ms; a budget not run: the line through the budgets that were (set-up plus a cost
per trial), else the method's seconds per target trial on that task, else its median over tasks,
times the budget; listed as imputed), except the episodes a suite shares with `cv` (run first) or
within itself, which are copied; plus, for learned methods, each checkpoint the suite trains (one
per task, or per cv fold; none for a suite on the cv folds, which `cv` trained) times the training
seconds recorded in CACHE's checkpoints (else the method's median). Wall time on W
workers = CPU time / W, a lower bound (episodes are independent; start-up and the slowest batch
are ignored). The `cv` suite's per-method breakdown is printed with the goal (<= 1 h on 2 cores).
`main` and `tests` run the commands and time them (the machine should be otherwise idle).
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from bench.gym.registry import load_task, task_names
from bench.gym.suites import load_suite
from bench.methods import methods
from bench.runner import plan, trainings
from bench.store import Store

HARNESS_SECONDS = 0.0017
SUITES = ("paper", "far", "cv", "ladder")
MAIN_JOB = ["run", "--task", "data_mixture", "--method", "all", "--suite", "quick", "--jobs", "2", "--quiet"]
ROOT = Path(__file__).resolve().parents[1]


def episode_seconds(runs: list[Path]) -> pd.DataFrame:
    """Seconds per trial-budget episode; a (method, task) is read from the last RUNS folder that
    holds it, so a fresh run of a few methods, named last, overrides their older timings."""
    rows = [{"method": key.method, "task": key.task, "budget": key.budget, "folder": i,
             "seconds": s.ask_seconds + s.setup_seconds + HARNESS_SECONDS}
            for i, folder in enumerate(runs) for key, s in Store(folder).summaries()
            if key.budget_kind == "trials"]
    frame = pd.DataFrame(rows, columns=["method", "task", "budget", "folder", "seconds"])
    last = frame.groupby(["method", "task"])["folder"].transform("max")
    return frame[frame.folder == last].drop(columns="folder")


def training_seconds(cache: Path | None) -> pd.DataFrame:
    import torch

    rows = []
    for path in sorted((cache / "checkpoints").glob("*/*.pt")) if cache else []:
        meta = torch.load(path, weights_only=True)["meta"]
        rows.append({"method": meta["method"], "scope": meta["task"], "seconds": meta["train_seconds"]})
    return pd.DataFrame(rows, columns=["method", "scope", "seconds"])


class Seconds:
    """Measured seconds per episode and per training, with the fallbacks of the module docstring."""

    def __init__(self, episodes: pd.DataFrame, trained: pd.DataFrame):
        self.cell = episodes.groupby(["method", "task", "budget"])["seconds"].mean()
        self.line = {mt: np.polyfit(c.index.get_level_values("budget"), c.to_numpy(), 1)
                     for mt, c in self.cell.groupby(level=["method", "task"])
                     if c.index.get_level_values("budget").nunique() > 1}
        per_trial = episodes.assign(seconds=episodes.seconds / episodes.budget)
        self.task_rate = per_trial.groupby(["method", "task"])["seconds"].mean()
        self.method_rate = self.task_rate.groupby(level="method").median()
        self.trained = trained.groupby(["method", "scope"])["seconds"].mean()
        self.trained_median = trained.groupby("method")["seconds"].median()
        self.imputed: set[str] = set()
        self.missing: set[str] = set()

    def episode(self, method: str, task: str, budget: float) -> float:
        if (method, task, budget) in self.cell.index:
            return float(self.cell[(method, task, budget)])
        self.imputed.add(f"{method}/{task}")
        if (method, task) in self.line:  # set-up plus a cost per trial, through the measured budgets
            slope, start = self.line[method, task]
            return max(0.0, float(start + slope * budget))
        if (method, task) in self.task_rate.index:
            return float(self.task_rate[(method, task)]) * budget
        if method in self.method_rate.index:
            return float(self.method_rate[method]) * budget
        self.missing.add(method)
        return 0.0

    def training(self, method: str, scope: str) -> float:
        if (method, scope) in self.trained.index:
            return float(self.trained[(method, scope)])
        if method in self.trained_median.index:
            self.imputed.add(f"{method} training/{scope}")
            return float(self.trained_median[method])
        self.missing.add(f"{method} training")
        return 0.0


def suite_cpu_seconds(suite_name: str, seconds: Seconds) -> pd.DataFrame:
    """Per method: episodes, their CPU seconds, trainings and their CPU seconds. The episodes a suite
    shares with `cv` are not counted for it (`scripts/reference_results.sh` runs `cv` first, and
    `bench run` copies them), nor those it shares within itself (`Plan.copies`); a suite on the cv
    folds trains nothing `cv` has not."""
    suite, empty = load_suite(suite_name), Store(Path("/nonexistent-results-dir"))
    names = [m for m, s in methods().items() if s.family != "llm" and s.in_all and not s.missing()]
    rows = []
    for task in task_names():
        p, cv, view = plan(suite, [task], names, empty), load_suite("cv").protocol(task), load_task(task)
        for _, key in p.todo:
            if suite_name != "cv" and p.protocols[key.suite, task].same_episodes(cv, view, key.experiment):
                continue
            rows.append({"method": key.method, "episodes": 1, "trainings": 0,
                         "episode_s": seconds.episode(key.method, key.task, key.budget), "training_s": 0.0})
        for name, ref, fold in trainings(p) if suite_name == "cv" or not suite.cv else []:
            scope = ref if fold is None else f"{ref}-{load_task(ref).cv_folds()[fold].fold}"
            rows.append({"method": name, "episodes": 0, "trainings": 1, "episode_s": 0.0,
                         "training_s": seconds.training(name, scope)})
    return pd.DataFrame(rows).groupby("method").sum()


def estimate(runs: list[Path], cache: Path | None) -> None:
    seconds = Seconds(episode_seconds(runs), training_seconds(cache))
    for suite_name in SUITES:
        table = suite_cpu_seconds(suite_name, seconds)
        total = float(table.episode_s.sum() + table.training_s.sum())
        goal = "   goal <= 1 h" if suite_name == "cv" else ""
        print(f"{suite_name}: {int(table.episodes.sum())} episodes, {int(table.trainings.sum())} trainings, "
              f"{total / 3600:.2f} CPU-hours -> {total / 2 / 3600:.2f} h on 2 cores, "
              f"{total / 64 / 60:.1f} min on 64{goal}")
        if suite_name == "cv":
            table["cpu_min"] = (table.episode_s + table.training_s) / 60
            table["s_per_episode"] = table.episode_s / table.episodes.clip(lower=1)
            print(table.sort_values("cpu_min", ascending=False)[
                ["episodes", "s_per_episode", "trainings", "training_s", "cpu_min"]].round(2).to_string())
    print(f"imputed: {', '.join(sorted(seconds.imputed)) or 'none'}")
    print(f"unmeasured (not in the totals): {', '.join(sorted(seconds.missing)) or 'none'}")


def _timed(command: list[str], env: dict[str, str]) -> float:
    t0 = time.perf_counter()
    subprocess.run(command, check=True, cwd=ROOT, env={**os.environ, **env})
    return time.perf_counter() - t0


def main_job() -> None:
    with tempfile.TemporaryDirectory() as cache, tempfile.TemporaryDirectory() as out:
        bench = [sys.executable, "-m", "bench"]
        wall = _timed([*bench, *MAIN_JOB, "--out", out], {"BENCH_CACHE": cache})
    print(f"main job (bench {' '.join(MAIN_JOB)}) from an empty cache: {wall:.0f} s   goal <= 180 s")


def tests() -> None:
    with tempfile.TemporaryDirectory() as cache:
        wall = _timed([sys.executable, "-m", "pytest", "-n", "2", "-q"], {"BENCH_CACHE": cache})
    print(f"tests (pytest -n 2): {wall:.0f} s   goal <= 360 s")


if __name__ == "__main__":
    command, rest = (sys.argv[1], sys.argv[2:]) if len(sys.argv) > 1 else ("", [])
    cache = Path(rest.pop(rest.index("--cache") + 1)) if "--cache" in rest[:-1] else None
    rest = [r for r in rest if r != "--cache"]
    if command == "estimate" and rest:
        estimate([Path(r) for r in rest], cache)
    elif command == "main" and not rest:
        main_job()
    elif command == "tests" and not rest:
        tests()
    else:
        sys.exit(__doc__.split("\n\n")[1])
