#!/usr/bin/env bash
# The H200 device calls of post-training (issues 17 and 18), as run; each call is self-contained (a fresh
# machine keeps nothing), so it makes the cold start again (a few minutes) before what it measures. Results
# (logs, JSON, PNG; no weights) come back as one archive, OUT/results.tar.gz, plus the built CUDA extension
# (OUT/_cuda.so) that later calls carry instead of building it again. The chat model stays behind (the tree that
# travels is at most 64 MiB): `bash bench/device_tree.sh hide checkpoints/qwen3mini-chat` before the calls,
# `bash bench/device_tree.sh restore` after.
#
#   COLD_ARGS="--drop_answered false" OUT=/tmp/out bash bench/posttrain_device.sh rl   # cold start -> pool ->
#                                                         # two RL runs -> evaluations (session 8)
#   OUT=/tmp/out bash bench/posttrain_device.sh more      # the same machine after 'rl': pass@16, rollout
#                                                         # throughput vs transformers, the 4x cold start
#   OUT=/tmp/out bash bench/posttrain_device.sh stages12  # train/run_posttrain.sh stages 1 and 2 with evaluations
#   OUT=/tmp/out bash bench/posttrain_device.sh stages34  # the same machine after stages12: stages 3 and 4 (and
#                                                         # the rest of stage 2, if the first call ran out of time);
#                                                         # the fused and chat models come back in 15 MB parts
#   OUT=/tmp/out bash bench/posttrain_device.sh check     # the training kernels' GPU tests and the packed-row
#                                                         # attention benchmark, before a pipeline run
#   OUT=/tmp/out bash bench/posttrain_device.sh cold4x    # the 4x longer cold start and its evaluation, and on the
#                                                         # same machine after stages34 the chat model's evaluation
#                                                         # if the pipeline's ran out of time
set -uo pipefail
cd "$(dirname "$0")/.."
R=${RUNS:-/tmp/posttrain}
LIMIT=${LIMIT:-580}          # seconds of work before the archive is written (the device call allows 600)
source bench/device_common.sh
EVAL_THINK="--modes think --budgets none --thinkfollow 0"

build() {
    [ -f qwen3mini/_cuda.so ] || { build_cuda && cp qwen3mini/_cuda.so "$OUT/"; }
}

cold_start() {   # cold_start NAME ARGS...: train/sft_cold_start.py into $R/NAME
    local name=$1
    shift
    local start=$SECONDS
    python train/sft_cold_start.py --out_dir "$R/$name" --progress false --log_every 50 "$@" > "$R/$name.log" 2>&1
    echo "$name wall $((SECONDS - start)) s" | tee -a "$R/walls.txt"
}

evaluate() {     # evaluate NAME MODEL ARGS...
    local name=$1 model=$2
    shift 2
    python train/evaluate.py --model "$model" --out "$R/$name" "$@" > "$R/$name.log" 2>&1
}

rl() {           # rl NAME ARGS...
    local name=$1
    shift
    local start=$SECONDS
    python train/rl_reasoning.py --init_from "$R/cold/final" --cold_start_dir "$R/cold" --out_dir "$R/$name" \
        --progress false "$@" > "$R/$name.log" 2>&1
    echo "$name wall $((SECONDS - start)) s" | tee -a "$R/walls.txt"
}

call_rl() {    # (the build first: without the extension the cold start's query filter generates op by op)
    build
    cold_start cold ${COLD_ARGS:-}
    evaluate eval_base checkpoints/qwen3mini-base --limit 20 --samples 0 --budgets none --thinkfollow 0 &
    local base=$!
    rl rl_a --lr 3e-5 --min_lr 3e-5 --steps 60 --time_limit 170 --candidates_per_cell 64 --max_new_tokens 1024 &
    local first=$!
    until [ -f "$R/rl_a/pool.json" ] || ! kill -0 $first 2>/dev/null; do sleep 2; done
    mkdir -p "$R/rl_b" && cp "$R/rl_a/pool.json" "$R/rl_b/"
    rl rl_b --lr 1e-4 --min_lr 1e-4 --steps 60 --time_limit 170 --candidates_per_cell 64 --max_new_tokens 1024
    wait $first $base
    for name in cold rl_a rl_b; do
        evaluate "eval_$name" "$R/$name/final" --limit 50 --samples 0 --difficulties 1-14 $EVAL_THINK &
    done
    wait
}

call_more() {    # right after call_rl, on the same machine: pass@16, the rollout benchmark, the 4x cold start
    [ -d "$R/rl_a/final" ] || { echo "no $R/rl_a/final: the machine was released; run 'rl' first" >&2; return 1; }
    python bench/bench_rollouts.py --model "$R/cold/final" --queries 64 --group 16 --max-new-tokens 768 --repeats 1 \
        --out "$R/bench_rollouts.json" > "$R/bench_rollouts.log" 2>&1
    cold_start cold4x --steps_scale 4 --drop_answered false &     # (the base model answered none: see cold.log)
    local long=$!
    for name in cold rl_a rl_b; do
        evaluate "eval16_$name" "$R/$name/final" --limit 20 --samples 16 --difficulties 1-14 $EVAL_THINK &
    done
    wait $long
    evaluate eval_cold4x "$R/cold4x/final" --limit 50 --samples 0 --difficulties 1-14 $EVAL_THINK
    wait
}

call_stages12() {
    build
    STAGES="1 2" EVAL="$EVAL_PIPELINE" bash train/run_posttrain.sh "$R/pt"
}

call_stages34() {
    [ -d "$R/pt/cold_start/final" ] || { echo "no $R/pt/cold_start/final: run stages12 first" >&2; return 1; }
    local stages="3 4"
    [ -d "$R/pt/rl_reasoning/final" ] || stages="2 3 4"     # (stage 2 resumes from its checkpoint)
    STAGES="$stages" EVAL="$EVAL_PIPELINE" bash train/run_posttrain.sh "$R/pt"
}

call_check() {
    build
    python -m pytest -q tests/train/test_sft.py tests/model/test_grouped_moe.py -k "gpu or cuda or grouped" \
        > "$R/gpu_tests.log" 2>&1
    python bench/bench_packed_attention.py --json "$R/bench_packed_attention.json" > "$R/bench_packed_attention.log" 2>&1
    tail -n 5 "$R/gpu_tests.log" "$R/bench_packed_attention.log"
}

call_cold4x() {
    build
    if [ -d "$R/pt/rl_general/final" ] && [ ! -f "$R/pt/eval_rl_general/evaluation.json" ]; then
        python train/evaluate.py --model "$R/pt/rl_general/final" --out "$R/pt/eval_rl_general" $EVAL_PIPELINE \
            > "$R/pt/eval_rl_general.log" 2>&1 &
    fi
    cold_start cold4x --steps_scale 4 --drop_answered false
    evaluate eval_cold4x "$R/cold4x/final" --limit 50 --samples 0 --difficulties 1-14 $EVAL_THINK
    wait
}

export -f build cold_start evaluate rl call_rl call_more call_stages12 call_stages34 call_check call_cold4x
EVAL_PIPELINE="--limit 20 --samples 8 --difficulties 1-14 --thinkfollow 100 --budgets 0,32,128,512,unlimited"
export R OUT EVAL_THINK EVAL_PIPELINE
case ${1:-rl} in
    rl) timeout "$LIMIT" bash -c call_rl ;;
    more|stages12|stages34|check|cold4x) timeout "$LIMIT" bash -c "call_$1" ;;   # (the archive is written whatever happened)
    *) echo "usage: posttrain_device.sh rl|more|stages12|stages34|check|cold4x" >&2; exit 2 ;;
esac
if [ "${1:-rl}" = stages34 ]; then
    for stage in mode_fusion rl_general; do weights_out "$R/pt/$stage/final/model.safetensors" "$stage"; done
fi
archive
