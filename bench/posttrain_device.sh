#!/usr/bin/env bash
# The H200 device calls of post-training (issues 17 to 19), as run. A fresh machine keeps nothing, so a call
# starts with the CUDA build; the runs folder (R) stays on a warm machine between calls. Results (logs, JSON,
# PNG; no weights) come back as one archive, OUT/results.tar.gz; the last finished stage's weights in 15 MB
# parts. The shipped models and the results stay behind (the tree that travels is at most 64 MiB):
# `bash bench/device_tree.sh hide checkpoints/qwen3mini-chat checkpoints/qwen3mini-student
# checkpoints/qwen3mini-student-moe bench/results` before the calls, `... restore` after.
#
#   COLD_ARGS="--drop_answered false" OUT=/tmp/out bash bench/posttrain_device.sh rl   # cold start -> pool ->
#                                                         # two RL runs -> evaluations (session 8)
#   OUT=/tmp/out bash bench/posttrain_device.sh more      # the same machine after 'rl': pass@16, rollout
#                                                         # throughput vs transformers, the 4x cold start
#   OUT=/tmp/out bash bench/posttrain_device.sh pipeline  # the CUDA build beside the GPU checks (training kernels'
#                                                         # tests, the packed-row attention benchmark), then
#                                                         # train/run_posttrain.sh, then the chat model on the whole
#                                                         # test sets (50 a cell); run it again on the same warm
#                                                         # machine until it ends: each call goes on where the one
#                                                         # before was cut off (session 10 ran it with the 4x cold
#                                                         # start at its end instead of the whole-test-set
#                                                         # evaluation; the 4x run has its own call since)
#   RESUME=runs/resume OUT=/tmp/out bash bench/posttrain_device.sh pipeline   # on a fresh machine, from what an
#                                                         # earlier pipeline call returned: every call's OUT holds
#                                                         # results.tar.gz and the weights of the last stage it
#                                                         # finished (STAGE.safetensors.part-*); copy both into
#                                                         # runs/resume, carry it (the run tool's carry), hide
#                                                         # checkpoints/qwen3mini-base too when the cold start is done
#                                                         # (a warm machine lost between calls loses nothing else)
#   RL_SECONDS=140 LIMIT=305 OUT=/tmp/out bash bench/posttrain_device.sh pipeline   # a last call in what is left
#                                                         # of the slice: shorter RL stages, an earlier archive;
#                                                         # LIMIT at most the call's limit_s less the archive's
#                                                         # few seconds, and limit_s is the slice's remainder less
#                                                         # a fresh start when the warm machine has been let go
#                                                         # (session 18's third call found none: its limit came
#                                                         # under LIMIT, and nothing came back; bench/RESULTS.md)
#   OUT=/tmp/out bash bench/posttrain_device.sh cold4x    # the 4x longer cold start and the evaluation of its
#                                                         # thinking cells, resumable the same way (about 18 minutes)
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

build_beside_checks() {   # the CUDA build on the CPUs while the GPU runs the training kernels' tests and benchmark
    [ ! -f qwen3mini/_cuda.so ] || return 0
    build_cuda &
    local building=$!
    python -m pytest -q tests/train/test_sft.py tests/model/test_grouped_moe.py -k "gpu or cuda or grouped" \
        > "$R/gpu_tests.log" 2>&1
    python bench/bench_packed_attention.py --json "$R/bench_packed_attention.json" \
        > "$R/bench_packed_attention.log" 2>&1
    wait $building
    tail -n 3 "$R/gpu_tests.log" "$R/bench_packed_attention.log"
}

export STAGE_NAMES="cold_start rl_reasoning mode_fusion rl_general"    # (a string: bash -c sees no arrays)

resume() {          # RESUME's archive and last stage's weights into an empty runs folder (a fresh machine)
    [ -n "${RESUME:-}" ] && [ ! -d "$R/pt" ] || return 0
    tar xzf "$RESUME/results.tar.gz" -C "$R"
    local stage
    for stage in $STAGE_NAMES; do
        ! ls "$RESUME/$stage.safetensors.part-"* > /dev/null 2>&1 \
            || cat "$RESUME/$stage.safetensors.part-"* > "$R/pt/$stage/final/model.safetensors"
    done
}

last_stage_out() {  # the weights of the last finished stage, so that a fresh machine can go on from them
    local stage last=""
    for stage in $STAGE_NAMES; do
        [ ! -f "$R/pt/$stage/summary.json" ] || last=$stage
    done
    [ -z "$last" ] || weights_out "$R/pt/$last/final/model.safetensors" "$last"
}

call_pipeline() {   # resumable: a later call (on the same warm machine, or with RESUME) goes on where this one stopped
    resume
    build_beside_checks
    local P=$R/pt todo="" n=0 stage
    for stage in $STAGE_NAMES; do
        n=$((n + 1))
        if [ ! -f "$P/$stage/summary.json" ]; then
            todo="$todo $n"
        elif [ ! -f "$P/eval_$stage/evaluation.json" ] && [ -f "$P/$stage/final/model.safetensors" ]; then
            # an evaluation that an earlier call cut off (an earlier stage's weights do not come back)
            python train/evaluate.py --model "$P/$stage/final" --out "$P/eval_$stage" $EVAL_PIPELINE \
                > "$P/eval_$stage.log" 2>&1 &
        fi
    done
    [ -z "$todo" ] || STAGES="$todo" EVAL="$EVAL_PIPELINE" bash train/run_posttrain.sh "$P"
    [ -f "$R/wide_chat/evaluation.json" ] || evaluate wide_chat "$P/rl_general/final" --samples 0 --difficulties 1-14 \
        --budgets none --thinkfollow 0 --instructions 0 --knowledge 0 --tools 0    # whole test sets: the floors
    wait
}

call_cold4x() {     # the 4x longer cold start from the base model, alone on the GPU, and the stages' evaluation
    build_beside_checks &                               # of its thinking cells (resumable like the pipeline)
    [ -f "$R/cold4x/summary.json" ] || cold_start cold4x --steps_scale 4 --drop_answered false
    wait
    [ -f "$R/eval_cold4x/evaluation.json" ] || evaluate eval_cold4x "$R/cold4x/final" --limit 20 --samples 8 \
        --difficulties 1-14 --modes think --budgets none --thinkfollow 0 --instructions 0 --knowledge 0 --tools 0
}

export -f build cold_start evaluate rl call_rl call_more build_beside_checks resume call_pipeline call_cold4x
EVAL_PIPELINE="--limit 20 --samples 8 --difficulties 1-14 --thinkfollow 100 --budgets 0,32,128,512,unlimited"
export R OUT EVAL_THINK EVAL_PIPELINE
case ${1:-rl} in
    rl) timeout "$LIMIT" bash -c call_rl ;;
    more|pipeline|cold4x) timeout "$LIMIT" bash -c "call_$1" ;;   # (the archive is written whatever happened)
    *) echo "usage: posttrain_device.sh rl|more|pipeline|cold4x" >&2; exit 2 ;;
esac
[ "${1:-rl}" = pipeline ] && last_stage_out
KEEP_TOKENIZERS=1 archive      # (with the stages' tokenizers: the weights of one come back beside it)
