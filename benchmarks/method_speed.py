"""Seconds per episode of some methods (issue 24: the cv suite in an hour on 2 cores).

    python benchmarks/method_speed.py botorch-mf,regmix --task data_mixture,grpo --budget 5,10 --seeds 3
    python benchmarks/method_speed.py regmix --before /tmp/old      # against an older copy

Episodes: trial budgets, seeds 0..S-1 on the first `--experiments` experiments of `--split` (test;
use train to compare variants of a method without looking at test outcomes),
the cheaper-fidelity prior (as in `cv` and `paper`). Each (method, task) runs in one fresh worker
process, started as `bench run` starts its workers (PYTHONHASHSEED=0, torch's default threads; the
methods set their own), after an untimed warm-up episode at the largest budget (imports, lazy
caches; another seed, so it shares no fit with the timed ones). The worker runs the budgets in the
order given, every seed of one budget before the next, as `bench run` hands a worker the episodes
of an experiment, so a method that memoises fits across episodes gains what it gains there.
`--isolated`: one worker per budget instead (nothing shared between budgets).

Printed per (method, task, budget): seconds per episode (ask + set-up, what `suite_time.py
estimate` counts), CPU seconds per episode (the worker's, all its threads: on a busy machine
the steadier figure) and mean pregret. `--before DIR`: DIR holds an older copy of the `baselines`
package (e.g. `cp -r baselines DIR/` before editing); every cell then runs with it and with this
checkout, one after the other, and the table adds their ratio and how many episodes asked exactly
the same configurations. With several budgets, a last line `all` per (method, task) averages
every episode (each budget counts alike, as in the suites). Numbers depend on the machine and its
load: compare figures of one run.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def episodes(method: str, task_name: str, budgets: list[int], seeds: int, experiments: int,
             split: str = "test") -> list[dict]:
    """Run the episodes of one (method, task) in this process; one record per episode."""
    from bench.episode import run_episode
    from bench.gym.registry import load_task
    from bench.methods import methods
    from bench.store import EpisodeKey, Store

    task, spec = load_task(task_name), methods()[method]
    out = []
    with tempfile.TemporaryDirectory() as tmp:
        store = Store(Path(tmp))
        exps = task.split(split)[:experiments]
        warm = EpisodeKey("speed", task.name, method, exps[0], "trials", max(budgets), 10_000)
        run_episode(warm, task, spec, store)
        for exp in exps:
            for budget in budgets:
                for seed in range(seeds):
                    key = EpisodeKey("speed", task.name, method, exp, "trials", budget, seed)
                    cpu = time.process_time()
                    s = run_episode(key, task, spec, store)
                    cpu = time.process_time() - cpu
                    log = store.trial_log(key).read_text().splitlines()
                    asks = json.dumps([json.loads(line)["config"] for line in log], sort_keys=True)
                    out.append({"budget": budget, "seconds": s.ask_seconds + s.setup_seconds, "cpu": cpu,
                                "pregret": s.scores["pregret"],
                                "asks": hashlib.sha256(asks.encode()).hexdigest()})
    return out


def worker(baselines: Path | None, method: str, task: str, budgets: list[int], args) -> list[dict]:
    """`episodes(...)` in a fresh interpreter that imports `baselines` from `baselines/..` if given."""
    path = [str(baselines)] if baselines else []
    env = {**os.environ, "PYTHONHASHSEED": "0",
           "PYTHONPATH": os.pathsep.join([*path, str(ROOT), os.environ.get("PYTHONPATH", "")])}
    cmd = [sys.executable, __file__, "--worker", method, task, ",".join(map(str, budgets)),
           str(args.seeds), str(args.experiments), args.split]
    done = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True)
    if done.returncode:
        sys.exit(f"{method}/{task} ({baselines or 'this checkout'}) failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def measure(baselines: Path | None, method: str, task: str, args) -> list[dict]:
    if not args.isolated:
        return worker(baselines, method, task, args.budget, args)
    return [r for b in args.budget for r in worker(baselines, method, task, [b], args)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("methods", help="comma-separated method names")
    ap.add_argument("--task", default="data_mixture,grpo")
    ap.add_argument("--budget", default="5,10", help="trial budgets, run in this order")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--experiments", type=int, default=1)
    ap.add_argument("--split", choices=("test", "train"), default="test")
    ap.add_argument("--isolated", action="store_true", help="one worker per budget")
    ap.add_argument("--before", type=Path, help="a folder holding an older `baselines` package")
    args = ap.parse_args()
    args.budget = [int(b) for b in args.budget.split(",")]
    if args.before and not (args.before / "baselines" / "__init__.py").is_file():
        sys.exit(f"{args.before} holds no baselines/ package")
    variants = {"before": args.before, "after": None} if args.before else {"": None}
    head = "".join(f"{(v + ' s/ep').strip():>14}{(v + ' cpu/ep').strip():>14}{(v + ' pregret').strip():>16}"
                   for v in variants)
    extra = f"{'ratio':>7}{'cpu ratio':>10}{'same asks':>11}" if args.before else ""
    print(f"{'method':<12}{'task':<14}{'T':>3}{'eps':>5}{head}{extra}")
    for method in args.methods.split(","):
        for task in args.task.split(","):
            runs = {v: measure(d, method, task, args) for v, d in variants.items()}
            for b in args.budget:
                print(row(f"{method:<12}{task:<14}{b:>3}", {v: [r for r in rs if r["budget"] == b]
                                                         for v, rs in runs.items()}), flush=True)
            if len(args.budget) > 1:  # every budget has as many episodes, as in the suites
                print(row(f"{method:<12}{task:<14}{'all':>3}", runs), flush=True)


def row(label: str, cell: dict[str, list[dict]]) -> str:
    """One line of the table: `cell` maps each variant to its episodes' records."""
    mean = {v: sum(r["seconds"] for r in rs) / len(rs) for v, rs in cell.items()}
    cpu = {v: sum(r["cpu"] for r in rs) / len(rs) for v, rs in cell.items()}
    line = f"{label}{len(next(iter(cell.values()))):>5}"
    for v, rs in cell.items():
        line += f"{mean[v]:>14.3f}{cpu[v]:>14.3f}{sum(r['pregret'] for r in rs) / len(rs):>16.4f}"
    if "before" in cell:
        same = sum(x["asks"] == y["asks"] for x, y in zip(cell["before"], cell["after"], strict=True))
        line += f"{mean['before'] / mean['after']:>7.2f}{cpu['before'] / cpu['after']:>10.2f}"
        line += f"{same:>7}/{len(cell['after'])}"
    return line

if __name__ == "__main__":
    if sys.argv[1:2] == ["--worker"]:
        m, t, b, s, e, split = sys.argv[2:8]
        print(json.dumps(episodes(m, t, [int(x) for x in b.split(",")], int(s), int(e), split)))
    else:
        main()
