"""What `bench pack` saves: a copy of a results directory packed, with sizes, time and a check.

    python benchmarks/pack_size.py RUNS

Copies RUNS to a temporary folder, packs it (`Store.pack`), and prints the episodes, the loose
files' size on disk (blocks, as `du` counts them) and in bytes, the packed size, the seconds
packing took, after checking that the leaderboard from the packed copy equals the loose one's.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import pandas as pd  # noqa: E402

from bench import api  # noqa: E402
from bench.store import Store  # noqa: E402


def _sizes(folder: Path) -> tuple[int, int]:
    """(bytes on disk, bytes of content) of the files under `folder`."""
    files = [p for p in folder.rglob("*") if p.is_file()]
    return sum(os.stat(p).st_blocks * 512 for p in files), sum(p.stat().st_size for p in files)


def main(runs: Path) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        copy = Path(tmp) / "runs"
        shutil.copytree(runs / "episodes", copy / "episodes")
        disk, content = _sizes(copy / "episodes")
        before = api.leaderboard(copy)
        start = time.perf_counter()
        moved = Store(copy).pack()
        seconds = time.perf_counter() - start
        packed = sum(p.stat().st_size for p in (copy / "packed").glob("*.parquet"))
        pd.testing.assert_frame_equal(api.leaderboard(copy), before)
    print(f"{moved} episodes: loose {disk / 1e6:.1f} MB on disk ({content / 1e6:.1f} MB of content), "
          f"packed {packed / 1e6:.2f} MB in {seconds:.1f} s; the packed copy's leaderboard is identical")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    main(Path(sys.argv[1]))
