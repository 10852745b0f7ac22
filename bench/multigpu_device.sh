#!/usr/bin/env bash
# The multi-GPU device calls of issue 22: data-parallel training under torchrun on one host of several H200s
# (the device kinds nvidia-h200-x2, -x4, -x8), one call a kind. NVLink multicast stays off in NCCL, PyTorch
# and NVSHMEM (the device documentation: a program that uses it can take the host's GPUs out of service).
# The calls need the chat model and the dense student, not the rest (the tree that travels is at most 64 MiB):
# `bash bench/device_tree.sh hide checkpoints/qwen3mini-base checkpoints/qwen3mini-student-moe bench/results`
# before, `... restore` after.
#
#   OUT=/tmp/out bash bench/multigpu_device.sh scaling   # the 100m preset, compiled, DDP on 1, 2, 4, ... up to every
#                        # GPU (64 x 1,024 tokens a GPU a step), and one GPU with --grad_accum G at the largest
#                        # count's global batch: bench/scaling_table.py makes the table (tokens/s, speed-up,
#                        # efficiency, MFU, memory) and sets the per-step losses of G GPUs beside one GPU's
#   OUT=/tmp/out bash bench/multigpu_device.sh fsdp      # a released shape whose replica, gradients and AdamW state
#                        # do not fit one GPU (Qwen3-14B: 16 bytes a parameter, 237 GB): DDP on one GPU runs out
#                        # of memory (its log says so), FSDP2 over every GPU trains; tokens/s and memory a GPU
#   OUT=/tmp/out bash bench/multigpu_device.sh grpo      # stage 2's GRPO (train/rl_reasoning.py) from the shipped
#                        # chat model, 8 steps of 64 queries x 16 completions on one GPU and on every GPU (each
#                        # rank owns whole groups), from one pool: steps/s and each run's log.jsonl
#   OUT=/tmp/out bash bench/multigpu_device.sh distill   # on-policy distillation of the shipped dense student from
#                        # the shipped chat model, 8 steps on one GPU and on every GPU: steps/s and the logs
set -uo pipefail
cd "$(dirname "$0")/.."
R=${RUNS:-/tmp/multigpu}
LIMIT=${LIMIT:-580}          # seconds of work before the archive is written (the device call allows 600)
source bench/device_common.sh
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1
GPUS=$(nvidia-smi -L | wc -l)

train() {       # train NAME PROCESSES ARGS...: bench/bench_training.py under torchrun into $R/NAME.json
    local name=$1 processes=$2
    shift 2
    torchrun --standalone --nproc_per_node "$processes" bench/bench_training.py --json "$R/$name.json" "$@" \
        > "$R/$name.log" 2>&1
    tail -n 2 "$R/$name.log"
}

call_scaling() {
    local n=1 shape="--shapes 100m --compile 1 --warmup 5 --steps 20"
    while [ "$n" -le "$GPUS" ]; do
        train "ddp_$n" "$n" $shape
        n=$((n * 2))
    done
    train "one_gpu_accum_$GPUS" 1 $shape --grad_accum "$GPUS"
    python bench/scaling_table.py "$R"/ddp_*.json "$R"/one_gpu_accum_*.json | tee "$R/scaling.md"
}

call_fsdp() {
    local shape="--shapes Qwen3-14B --compile 0 --micro_batch 1 --seq_len 2048 --warmup 3 --steps 10"
    train ddp_14b_one_gpu 1 $shape
    grep -m 1 -o "CUDA out of memory[^.]*" "$R/ddp_14b_one_gpu.log"
    train "fsdp_14b_$GPUS" "$GPUS" $shape --parallel fsdp
    python bench/scaling_table.py "$R/fsdp_14b_$GPUS.json" | tee "$R/fsdp.md"
}

call_grpo() {       # the CUDA build first: rollouts go through the generation path's CUDA graphs and kernels
    build_cuda
    local args=(--init_from checkpoints/qwen3mini-chat --cold_start_dir "" --steps 8 --candidates_per_cell 32
                --progress false)
    python train/rl_reasoning.py "${args[@]}" --out_dir "$R/grpo_1" > "$R/grpo_1.log" 2>&1
    mkdir -p "$R/grpo_$GPUS" && cp "$R/grpo_1/pool.json" "$R/grpo_$GPUS/"      # the same pool: no second search
    torchrun --standalone --nproc_per_node "$GPUS" train/rl_reasoning.py "${args[@]}" --out_dir "$R/grpo_$GPUS" \
        > "$R/grpo_$GPUS.log" 2>&1
    tail -n 1 "$R/grpo_1.log" "$R/grpo_$GPUS.log"
}

call_distill() {
    build_cuda
    local args=(--init_from checkpoints/qwen3mini-student --teacher checkpoints/qwen3mini-chat --steps 8
                --progress false)
    python train/distill_on_policy.py "${args[@]}" --out_dir "$R/distill_1" > "$R/distill_1.log" 2>&1
    torchrun --standalone --nproc_per_node "$GPUS" train/distill_on_policy.py "${args[@]}" \
        --out_dir "$R/distill_$GPUS" > "$R/distill_$GPUS.log" 2>&1
    tail -n 1 "$R/distill_1.log" "$R/distill_$GPUS.log"
}

export -f train call_scaling call_fsdp call_grpo call_distill
export R GPUS
case ${1:-} in
    scaling|fsdp|grpo|distill) timeout "$LIMIT" bash -c "call_$1" ;;
    *) echo "usage: multigpu_device.sh scaling|fsdp|grpo|distill" >&2; exit 2 ;;
esac
archive
