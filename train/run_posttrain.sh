#!/usr/bin/env bash
# Post-training of the flagship model (paper §4, Figure 1) on one GPU, from checkpoints/qwen3mini-base:
#   stage 1 long-CoT cold start -> stage 2 reasoning RL (GRPO), each stage's model through the held-out
#   evaluation. (Stages 3 and 4, thinking-mode fusion and general RL, come with issue 19.)
# Each stage resumes from its own checkpoint when run again; wall seconds per step go to OUT/times.tsv.
#
#   bash train/run_posttrain.sh runs/posttrain             # one GPU
#   NPROC=8 bash train/run_posttrain.sh runs/posttrain     # each training stage under torchrun (DDP)
#   EVAL="--limit 20 --samples 16 --budgets none --thinkfollow 0" bash train/run_posttrain.sh   # a lighter evaluation
set -euo pipefail
OUT=${1:-runs/posttrain}
NPROC=${NPROC:-1}
EVAL=${EVAL:-"--limit 20 --samples 8 --thinkfollow 100"}
mkdir -p "$OUT"
if [ "$NPROC" -gt 1 ]; then RUN="torchrun --standalone --nproc_per_node $NPROC"; else RUN=python; fi

timed() {   # timed NAME COMMAND...: run it, append "NAME<TAB>seconds" to OUT/times.tsv
    local name=$1 start
    shift
    start=$(date +%s)
    "$@"
    printf '%s\t%d\n' "$name" $(( $(date +%s) - start )) >> "$OUT/times.tsv"
}

timed cold_start $RUN train/sft_cold_start.py --out_dir "$OUT/cold_start" --progress false --log_every 50
timed eval_cold_start python train/evaluate.py --model "$OUT/cold_start/final" --out "$OUT/eval_cold_start" $EVAL
timed rl_reasoning $RUN train/rl_reasoning.py --init_from "$OUT/cold_start/final" --cold_start_dir "$OUT/cold_start" \
    --out_dir "$OUT/rl_reasoning" --progress false
timed eval_rl_reasoning python train/evaluate.py --model "$OUT/rl_reasoning/final" --out "$OUT/eval_rl_reasoning" $EVAL
cat "$OUT/times.tsv"
