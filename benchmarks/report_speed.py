"""Where `bench report` spends its time, on a results directory (default: the published `results/`).

    python benchmarks/report_speed.py [RUNS] [--full]

Prints the seconds of each step the report takes on its episodes: loading them, the leaderboard
(its bootstraps), every suite's tasks weighed once, the rank curves of the rank figures; with
`--full`, the whole report into a temporary folder (figures included). The published results'
test (`tests/test_pack.py`) writes that report, so these seconds are also CI's. Numbers depend on
the machine and its load; run it on an idle one.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.metrics import across_tasks, leaderboard, rank_curves  # noqa: E402
from bench.report import load_episodes, write_report  # noqa: E402


def timed(label: str, fn, *args, **kwargs):
    start = time.perf_counter()
    out = fn(*args, **kwargs)
    print(f"{label:28s} {time.perf_counter() - start:7.1f} s")
    return out


def main(argv: list[str]) -> None:
    args = [a for a in argv if not a.startswith("--")]
    runs = Path(args[0]) if args else Path(__file__).resolve().parents[1] / "results"
    ep = timed("load episodes", load_episodes, runs)
    print(f"{'episodes':28s} {len(ep):7d}")
    board = timed("leaderboard", leaderboard, ep)
    timed("across tasks", across_tasks, ep, board=board)
    timed("rank curves", rank_curves, ep)
    if "--full" in argv:
        with tempfile.TemporaryDirectory() as out:
            timed("bench report (all of it)", write_report, runs, Path(out), say=lambda _: None)


if __name__ == "__main__":
    main(sys.argv[1:])
