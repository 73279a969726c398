#!/usr/bin/env bash
# Regenerate the reference results in results/: the `paper` and `far` suites for every non-LLM
# method in configs/methods.yaml (those in `--method all`: ablations, `in_all: false`, are left
# out) and the trained policy `autollmresearch`, the `--gap` sweep
# behind extrapolation.png (paper, T=1), then the report: leaderboard CSVs, report.md/.html,
# LaTeX/Markdown tables and figures (`bench report`).
#
#   bash scripts/reference_results.sh                 # 2 worker processes
#   JOBS=64 bash scripts/reference_results.sh         # a big machine (or see README: Dask)
#   OUT=/tmp/ref bash scripts/reference_results.sh    # somewhere other than results/
#
# Episodes already completed under $OUT/episodes are kept (a rerun resumes); delete that folder
# first to recompute everything. Learned methods train on first use (checkpoints in
# $BENCH_CACHE). A failed episode is scored as a failure and the script goes on; it exits 1 at
# the end if any failed, and stops at once on a user error (exit 2: unknown method, bad data).
set -euo pipefail
cd "$(dirname "$0")/.."
BENCH=${BENCH:-.venv/bin/bench}
PYTHON=${PYTHON:-.venv/bin/python}
OUT=${OUT:-results}
JOBS=${JOBS:-2}
POLICY=autollmresearch
METHODS=$("$PYTHON" -c "from bench.methods import methods
print(','.join(dict.fromkeys([n for n, s in methods().items() if s.family != 'llm' and s.in_all] + ['$POLICY'])))")
GAP_METHODS=random,centroid,best-prior,extrapolate,regmix,$POLICY

failed=0
run() {  # bench run; exit 1 (some episodes failed, scored) goes on, anything else stops
  "$BENCH" run --jobs "$JOBS" --out "$OUT" "$@" || { rc=$?; [ "$rc" -eq 1 ] || exit "$rc"; failed=1; }
}
run --task all --method "$METHODS" --suite paper
run --task all --method "$METHODS" --suite far
for gap in 3 10 30 100 1000; do
  run --task all --method "$GAP_METHODS" --suite paper --budget 1 --gap "$gap"
done
"$BENCH" report --runs "$OUT" --out "$OUT" --suite paper,far
exit "$failed"
