"""Train the reference checkpoints the package ships (`bench/checkpoints/`), or check them.

Every learned preset of `--method all` is trained on each built-in task's fixed split (seed 0),
a cross-family one once on all of them, into a scratch cache, exactly as `bench train --force`
would, and copied to `bench/checkpoints/<task or builtin>/<method>-<hash>.pt` (the cache's name:
the hash covers class, parameters, version, train data and seed); older checkpoints of that method
and scope are removed. `--check`
retrains into a scratch cache and compares each state digest with the shipped one (training is
deterministic on one machine; another CPU may differ in the last bits of a float).

    python scripts/reference_checkpoints.py                  # every built-in task (about an hour)
    python scripts/reference_checkpoints.py --task data_mixture
    python scripts/reference_checkpoints.py --task data_mixture --check
    python scripts/reference_checkpoints.py --method autollmresearch --cache DIR  # reuse DIR's stages

`--cache DIR` trains in DIR instead, reusing the cached stage artifacts there (the policy's
trajectories and distilled weights, keyed by everything they depend on): for a change that
leaves those stages as they were.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", default="all", help="built-in task(s), comma-separated, or all")
    parser.add_argument("--method", default="", help="learned preset(s), comma-separated (default: all)")
    parser.add_argument("--check", action="store_true", help="retrain and compare digests; write nothing")
    parser.add_argument("--cache", help="train in this cache, reusing its stage artifacts (default: scratch)")
    args = parser.parse_args()
    os.environ["BENCH_CACHE"] = args.cache or tempfile.mkdtemp(prefix="reference-checkpoints-")

    from bench.gym.registry import load_task, resolve_tasks
    from bench.methods import method, resolve_methods
    from bench.training import SHIPPED, load, shipped_path, train

    names = [m.strip() for m in args.method.split(",") if m.strip()] or resolve_methods("all")
    specs = [s for s in map(method, names) if s.learned]
    differ, builtin_done = 0, set()
    for task_name in resolve_tasks(args.task):
        task = load_task(task_name)
        if not task.split("train"):
            continue
        for spec in specs:
            if spec.trains_on == "builtin":  # one checkpoint for every task
                if spec.name in builtin_done:
                    continue
                builtin_done.add(spec.name)
            t0 = time.perf_counter()
            checkpoint, path = train(spec, task, force=True)
            target = shipped_path(path)
            if args.check:
                same = target.is_file() and load(target).meta["digest"] == checkpoint.meta["digest"]
                differ += not same
                status = "reproduced" if same else ("differs" if target.is_file() else "not shipped")
            else:
                target.parent.mkdir(parents=True, exist_ok=True)
                for old in target.parent.glob(f"{spec.name}-*.pt"):
                    old.unlink()
                shutil.copyfile(path, target)
                status = f"{target.stat().st_size / 1e3:.0f} kB"
            print(f"{task_name:24s} {spec.name:18s} {time.perf_counter() - t0:6.1f} s  {status}", flush=True)
    if not args.check:
        total = sum(p.stat().st_size for p in Path(SHIPPED).rglob("*.pt"))
        print(f"shipped: {total / 1e6:.2f} MB in {SHIPPED}")
    return 1 if differ else 0


if __name__ == "__main__":
    sys.exit(main())
