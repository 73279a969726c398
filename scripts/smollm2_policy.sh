#!/usr/bin/env bash
# SmolLM2-135M-Instruct trained as the AutoLLMResearch policy's LLM backend on CPU (issue 26), then
# compared with the prompted model:
#   1. export: the policy's teacher trajectories on the train experiments of $TASKS, as chat records
#      in the compact prompts of the preset smollm2-135m;
#   2. SFT from the GGUF model on those records (top $LAYERS decoder layers trained);
#   3. multi-turn GRPO from the SFT model on whole train episodes;
#   4. `paper` (fixed split: the models never saw its test experiments) at T=1 and T=3, 3 seeds, for
#      the three SmolLM2 presets against random, centroid and the CPU policy, into $OUT.
# Writes $BENCH_CACHE/lm/smollm2-135m-{sft,grpo}, the models of the presets smollm2-135m-sft and
# smollm2-135m-grpo. Sizes are those of the shipped replies, measured on 2 cores: 150 SFT steps (about
# 1.5 h), 4 GRPO steps (280-450 s each); STAGES picks stages.
set -euo pipefail
TASKS=${TASKS:-sft_lora,pretrain_hparams,grpo}
SFT_STEPS=${SFT_STEPS:-150}
GRPO_STEPS=${GRPO_STEPS:-4}
LAYERS=${LAYERS:-6}
STAGES=${STAGES:-export,sft,grpo,eval}
OUT=${OUT:-runs-smollm2}
LM=$(python -c "from bench.paths import cache_dir; print(cache_dir() / 'lm')")
mkdir -p "$LM"
data="$LM/chat-smollm2.jsonl"

if [[ $STAGES == *export* ]]; then
  : > "$data"
  for task in ${TASKS//,/ }; do
    bench lm export --task "$task" --prompting smollm2-135m --out "$LM/chat-$task.jsonl"
    cat "$LM/chat-$task.jsonl" >> "$data"
  done
fi
if [[ $STAGES == *sft* ]]; then
  bench lm sft --data "$data" --model smollm2-135m --out "$LM/smollm2-135m-sft" --steps "$SFT_STEPS" \
    --batch-size 2 --lr 2e-5 --max-length 4096 --train-layers "$LAYERS"
fi
if [[ $STAGES == *grpo* ]]; then
  # 256 tokens: SmolLM2's tokenizer splits digits, so a configuration answer (grpo's) is ~200 tokens
  bench lm grpo --task "$TASKS" --data "$data" --model "$LM/smollm2-135m-sft" --out "$LM/smollm2-135m-grpo" \
    --turns 3 --episodes 2 --steps "$GRPO_STEPS" --lr 1e-6 --max-new-tokens 256 --train-layers "$LAYERS"
fi
if [[ $STAGES == *eval* ]]; then
  for budget in 1 3; do
    bench run --task "$TASKS" --suite paper --budget "$budget" --seeds 3 --out "$OUT" \
      --method random,centroid,autollmresearch,smollm2-135m,smollm2-135m-sft,smollm2-135m-grpo
  done
  bench leaderboard --runs "$OUT"
fi
