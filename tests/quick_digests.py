"""Digests of episodes of the `quick` suite on data_mixture (its first experiment, both budgets,
seed 0: every code path of the suite at a quarter of its cost): what each method asked, what it
was told and how it was scored, without timings. `test_quick_digests.py` checks that the harness
still produces exactly these; after a deliberate change to a method, rewrite its entries with
`python tests/quick_digests.py --write METHOD ...` and say why in the commit."""

from __future__ import annotations

import hashlib
import json
import sys
import tempfile
from pathlib import Path

FIXTURE = Path(__file__).with_name("data") / "quick_digests.json"
TIMING = {"ask_seconds", "setup_seconds"}


def _canonical(obj) -> str:
    return json.dumps(obj, sort_keys=True, default=repr)


def digests(method: str) -> dict[str, str]:
    """episode stem -> sha256 of its trial log and summary (timings removed)."""
    from bench.episode import run_episode
    from bench.gym.registry import load_task
    from bench.gym.suites import load_suite
    from bench.methods import methods
    from bench.store import EpisodeKey, Store

    suite, task = load_suite("quick"), load_task("data_mixture")
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        store = Store(Path(tmp))
        for exp in suite.pick_experiments(task.split(suite.split))[:1]:
            for b in suite.budget_objects():
                for seed in suite.seeds_for(methods()[method].family)[:1]:
                    key = EpisodeKey(suite.name, task.name, method, exp, b.kind, b.amount, seed)
                    summary = run_episode(key, task, methods()[method], store, suite.prior_for(task.name))
                    trials = [{k: v for k, v in json.loads(line).items() if k not in TIMING}
                              for line in store.trial_log(key).read_text().splitlines()]
                    kept = {k: v for k, v in summary.to_json().items() if k not in TIMING}
                    record = {"trials": trials, "summary": kept}
                    out[f"{exp}/{key.stem()}"] = hashlib.sha256(_canonical(record).encode()).hexdigest()
    return out


def digests_in_subprocess(method: str) -> dict[str, str]:
    """`digests(method)` in a fresh interpreter with the runner's fixed hash seed (SMAC's run
    history depends on it), as `bench run`'s workers have."""
    import os
    import subprocess

    env = {**os.environ, "PYTHONHASHSEED": "0"}
    out = subprocess.run([sys.executable, __file__, "--print", method], env=env, capture_output=True,
                         text=True, check=True, timeout=900)
    return json.loads(out.stdout.strip().splitlines()[-1])


if __name__ == "__main__":
    args = sys.argv[1:]
    if len(args) == 2 and args[0] == "--print":
        print(json.dumps(digests(args[1])))
        sys.exit(0)
    if not args or args[0] != "--write":
        sys.exit("usage: python tests/quick_digests.py --write METHOD [METHOD ...]")
    fixture = json.loads(FIXTURE.read_text()) if FIXTURE.is_file() else {}
    for method in args[1:]:
        fixture[method] = digests_in_subprocess(method)
        print(method, len(fixture[method]), "episodes")
    FIXTURE.write_text(json.dumps(fixture, indent=1, sort_keys=True) + "\n")
