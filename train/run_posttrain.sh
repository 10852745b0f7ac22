#!/usr/bin/env bash
# Post-training of the flagship model (paper §4, Figure 1) on one GPU, from checkpoints/qwen3mini-base:
#   stage 1 long-CoT cold start -> stage 2 reasoning RL (GRPO) -> stage 3 thinking-mode fusion -> stage 4
#   general RL, each stage's model through the held-out evaluation (train/evaluate.py, beside the next stage's
#   training: the small model leaves the GPU room for both; evaluation logs in OUT/eval_*.log).
# Each stage resumes from its own checkpoint when run again; wall seconds per step go to OUT/times.tsv.
#
#   bash train/run_posttrain.sh runs/posttrain             # one GPU
#   STAGES="1 2" bash train/run_posttrain.sh runs/posttrain   # some of the stages (each needs the one before)
#   NPROC=8 bash train/run_posttrain.sh runs/posttrain     # each training stage under torchrun (DDP)
#   EVAL="--limit 20 --samples 16 --budgets none --thinkfollow 0" bash train/run_posttrain.sh   # a lighter evaluation
set -euo pipefail
OUT=${1:-runs/posttrain}
NPROC=${NPROC:-1}
EVAL=${EVAL:-"--limit 20 --samples 8 --thinkfollow 100"}
RL_SECONDS=${RL_SECONDS:-240}   # each RL stage stops after the step that passes this (the 25-minute budget on one H200)
mkdir -p "$OUT"
if [ "$NPROC" -gt 1 ]; then RUN="torchrun --standalone --nproc_per_node $NPROC"; else RUN=python; fi

timed() {   # timed NAME COMMAND...: run it, append "NAME<TAB>seconds" to OUT/times.tsv
    local name=$1 start
    shift
    start=$(date +%s)
    "$@"
    printf '%s\t%d\n' "$name" $(( $(date +%s) - start )) >> "$OUT/times.tsv"
}

evaluation() {   # evaluation NAME: evaluate OUT/NAME/final in the background into OUT/eval_NAME
    timed "eval_$1" python train/evaluate.py --model "$OUT/$1/final" --out "$OUT/eval_$1" $EVAL \
        > "$OUT/eval_$1.log" 2>&1 &
}

STAGES=${STAGES:-"1 2 3 4"}
C=$OUT/cold_start
for stage in $STAGES; do case $stage in
  1) timed cold_start $RUN train/sft_cold_start.py --out_dir "$C" --progress false --log_every 50
     evaluation cold_start ;;
  2) timed rl_reasoning $RUN train/rl_reasoning.py --init_from "$C/final" --cold_start_dir "$C" \
         --out_dir "$OUT/rl_reasoning" --progress false --time_limit "$RL_SECONDS"
     evaluation rl_reasoning ;;
  3) timed mode_fusion $RUN train/sft_mode_fusion.py --init_from "$OUT/rl_reasoning/final" --cold_start_dir "$C" \
         --rl_pool "$OUT/rl_reasoning/pool.json" --out_dir "$OUT/mode_fusion" --progress false
     evaluation mode_fusion ;;
  4) timed rl_general $RUN train/rl_general.py --init_from "$OUT/mode_fusion/final" --out_dir "$OUT/rl_general" \
         --progress false --time_limit "$RL_SECONDS"
     evaluation rl_general ;;
  *) echo "run_posttrain.sh: STAGES holds $stage; expected 1 to 4" >&2; exit 2 ;;
esac; done
wait          # the evaluations
cat "$OUT/times.tsv"
