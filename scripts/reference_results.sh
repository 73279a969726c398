#!/usr/bin/env bash
# Regenerate the reference results in results/ from one commit, then pack and report them:
#   paper, cv, ladder  every non-LLM method of `--method all` and the trained policy, every built-in task
#                      (and on paper, SMAC with the library's own acquisition maximiser too);
#   ablations          the policy's ablations and variants on cv and ladder at T=1 and T=3 (issue 23),
#                      and the cross-family preset on paper (its shipped checkpoint; under cv it would
#                      train once per fold of every task, about 20 min each);
#   cost               the methods that choose fidelities (random, smac-mf-pool, botorch-mf, the policy);
#   llm                the SmolLM2 presets on paper (replayed from the shipped replies where the
#                      model is absent; a reply it lacks stops that method, the rest goes on);
#   pack, report       `bench pack` (results/packed/<suite>.parquet) and `bench report`.
#
#   bash scripts/reference_results.sh                          # 2 worker processes, every stage
#   STAGES=paper,pack,report bash scripts/reference_results.sh # some stages
#   JOBS=64 bash scripts/reference_results.sh                  # a big machine
#   EXECUTOR=dask SCHEDULER=tcp://host:8786 JOBS=256 bash scripts/reference_results.sh  # a cluster
#   OUT=/tmp/ref bash scripts/reference_results.sh             # somewhere other than results/
#   TASKS=sft_lora STAGES=cv,ladder bash scripts/reference_results.sh  # some tasks (a task's cv
#                                                              # folds train once for cv and ladder)
#   METHODS=random,nap STAGES=paper,cv,ladder bash scripts/reference_results.sh  # some methods
#
# Every stage resumes: episodes already in $OUT (packed or loose) are kept, so the run can be
# stopped and restarted, on this machine or another, and adds up. Learned methods train on first
# use (checkpoints in $BENCH_CACHE, one per task and cv fold). A failed episode is scored as a
# failure and the script goes on; it exits 1 at the end if any failed, and stops at once on a user
# error (exit 2: unknown method, bad data). Each invocation appends its commit, stages and tasks to
# $OUT/COMMIT (a run split over sessions or machines says which part ran where).
# Time on 2 cores (benchmarks/suite_time.py estimate, and measured where said): paper 2.2 CPU-h and
# the library SMAC 0.9 more (measured: 26 min of wall time, every task), cv 8.5 h, ladder 1.5 h (it
# copies the episodes it shares with cv, and trains nothing cv has not), ablations about 8 h of CPU
# (mostly training the policy per cv fold; measured, wall time: grpo 1.2 h, sft_lora 0.5 h,
# data_mixture 1.25 h, pretrain_hparams 1.2 h with its 40 fold trainings), cost and llm under 1 h
# each: about 12 h of wall time on 2 cores, under 1 h on 64.
# The body is one block: bash reads all of it before it runs any, so editing this file while a run
# uses it (a `git pull`, a fix for the next part) cannot change what that run does.
{
set -euo pipefail
cd "$(dirname "$0")/.."
BENCH=${BENCH:-.venv/bin/bench}
PYTHON=${PYTHON:-.venv/bin/python}
OUT=${OUT:-results}
JOBS=${JOBS:-2}
EXECUTOR=${EXECUTOR:-local}
STAGES=${STAGES:-paper,cv,ladder,ablations,cost,llm,pack,report}
TASKS=${TASKS:-all}
POLICY=autollmresearch
CHOSEN=${METHODS:-}  # METHODS given: only those (said in COMMIT)
METHODS=${METHODS:-$("$PYTHON" -c "from bench.methods import methods
print(','.join(dict.fromkeys([n for n, s in methods().items() if s.family != 'llm' and s.in_all] + ['$POLICY'])))")}
ABLATIONS=$("$PYTHON" -c "from bench.methods import methods
print(','.join(n for n, s in methods().items() if n.startswith('$POLICY-') and s.trains_on == 'task'))")
LIBRARY_SMAC=smac-hpo,smac-bb,smac-mf  # `all` runs their -pool variants (baselines/smac_facades.py)
COST_METHODS=random,smac-mf-pool,botorch-mf,$POLICY
LLM_METHODS=smollm2-135m,smollm2-135m-sft,smollm2-135m-grpo
LLM_TASKS=sft_lora,pretrain_hparams,grpo

mkdir -p "$OUT"
commit=$(git describe --always --dirty 2>/dev/null || echo unknown)
echo "$(date -u +%FT%TZ) $commit stages=$STAGES tasks=$TASKS${CHOSEN:+ methods=$CHOSEN}" >> "$OUT/COMMIT"
failed=0
run() {  # bench run; exit 1 (some episodes failed, scored) goes on, anything else stops
  "$BENCH" run --quiet --jobs "$JOBS" --executor "$EXECUTOR" ${SCHEDULER:+--scheduler "$SCHEDULER"} \
    --out "$OUT" "$@" || { rc=$?; [ "$rc" -eq 1 ] || exit "$rc"; failed=1; }
}
stage() { [[ ",$STAGES," == *",$1,"* ]] && echo "$(date -u +%FT%TZ) stage $1" >&2; }

if stage paper; then run --task "$TASKS" --method "${CHOSEN:-$METHODS,$LIBRARY_SMAC}" --suite paper; fi
if stage cv; then run --task "$TASKS" --method "$METHODS" --suite cv; fi
if stage ladder; then run --task "$TASKS" --method "$METHODS" --suite ladder; fi
if stage ablations; then
  for budget in 1 3; do run --task "$TASKS" --method "$ABLATIONS" --suite cv --budget "$budget"; done
  run --task "$TASKS" --method "$ABLATIONS" --suite ladder
  run --task "$TASKS" --method "$POLICY-xfamily" --suite paper
fi
if stage cost; then run --task "$TASKS" --method "${CHOSEN:-$COST_METHODS}" --suite cost; fi
if stage llm; then
  for budget in 1 3; do
    for method in ${LLM_METHODS//,/ }; do
      "$BENCH" run --quiet --out "$OUT" --task "$LLM_TASKS" --method "$method" --suite paper \
        --budget "$budget" --seeds 3 || echo "$method at T=$budget: stopped (above); the rest goes on" >&2
    done
  done
fi
if stage pack; then "$BENCH" pack --runs "$OUT"; fi
if stage report; then "$BENCH" report --runs "$OUT" --out "$OUT"; fi
exit "$failed"
}
