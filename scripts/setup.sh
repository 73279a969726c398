#!/usr/bin/env bash
# Set everything up in .venv and run the main job on the default (quick) suite.
# Data: downloaded from the pinned source repositories into $BENCH_CACHE, or read from
# $BENCH_DATA_MIRROR when set (a local copy laid out <source>/<path>).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
[ -d .venv ] || "$PYTHON" -m venv .venv
. .venv/bin/activate
python -m pip install --quiet --upgrade pip
# torch first, pinned: the CPU wheel; an unpinned torch would pull a multi-GB CUDA build.
python -m pip install --quiet "torch==2.13.0"
python -m pip install --quiet "torch==2.13.0" -e ".[dev,lm]"  # lm: TRL for `bench lm` (torch stays pinned)
bench data fetch --quiet
if [ "${BENCH_SETUP_SKIP_RUN:-0}" != 1 ]; then
  bench run --task data_mixture --method all --suite quick --jobs 2 --quiet   # -> ./runs
  bench leaderboard
fi
