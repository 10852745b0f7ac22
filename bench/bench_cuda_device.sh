#!/usr/bin/env bash
# One device call: build the CUDA extension, run its tests and the model's GPU parity tests (plain and under
# compute-sanitizer memcheck), the conformance suite with --backend cuda, and the benchmarks. Logs go to $OUT (the device tool's folder)
# or bench/results/. Usage: bench/bench_cuda_device.sh [build|test|gpu|memcheck|conformance|e2e|bench|rollouts|moe]...
# (gpu: every GPU-marked test of the repository, tests/ -m gpu; rollouts: issue 18's rollout throughput on the
# shipped chat model, with the kernel profile; moe: issue 20's MoE training step against the dense student)
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-bench/results}
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1 TORCH_CUDA_ARCH_LIST=${TORCH_CUDA_ARCH_LIST:-9.0} MAX_JOBS=${MAX_JOBS:-16}
PY=${PY:-python3}
for step in "${@:-build test memcheck conformance bench}"; do for s in $step; do
  echo "=== $s $(date -u +%T)"
  case $s in
    build) nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.mem --format=csv > "$OUT/env.txt"
           $PY csrc/cuda/build_jit.py > "$OUT/build.log" 2>&1; rc=$?
           grep -E "error|registers|spill|stack frame" "$OUT/build.log" | grep -v "0 bytes spill" | head -40
           [ $rc = 0 ] || { tail -40 "$OUT/build.log"; exit 1; } ;;
    test) QWEN3MINI_REQUIRE_EXT=1 QWEN3MINI_CUDA_EXAMPLES=${EXAMPLES:-100} timeout ${TEST_TIMEOUT:-240} \
            $PY -m pytest tests/kernels/test_cuda_kernels.py tests/kernels/test_cuda_graphs.py \
            tests/model/test_model_parity_cuda.py tests/model/test_decoder_cuda.py -q -p no:cacheprovider \
            -rf --hypothesis-show-statistics 2>&1 | tee "$OUT/tests.log" | tail -25 ;;
    gpu) QWEN3MINI_CUDA_EXAMPLES=${EXAMPLES:-100} timeout ${TEST_TIMEOUT:-300} $PY -m pytest tests -m gpu -q \
            -p no:cacheprovider -rfs 2>&1 | tee "$OUT/gpu_tests.log" | tail -25 ;;
    memcheck) QWEN3MINI_CUDA_EXAMPLES=${MEMCHECK_EXAMPLES:-6} timeout ${MEMCHECK_TIMEOUT:-200} compute-sanitizer --tool memcheck \
            --error-exitcode 9 $PY -m pytest tests/kernels/test_cuda_kernels.py tests/model/test_decoder_cuda.py -q -p no:cacheprovider -x -k "not 4096 and not 0_6b" \
            > "$OUT/memcheck.log" 2>&1; echo "memcheck rc=$?"; grep -E "ERROR SUMMARY|passed|failed" "$OUT/memcheck.log" | tail -5 ;;
    conformance) QWEN3MINI_REQUIRE_EXT=1 QWEN3MINI_KERNEL_EXAMPLES=${CONF_EXAMPLES:-200} timeout ${CONF_TIMEOUT:-240} \
            $PY -m pytest tests/kernels --backend cuda -q -p no:cacheprovider -rf --hypothesis-show-statistics -k "not test_required_extensions_built" 2>&1 | tee "$OUT/conformance.log" | tail -4 ;;
    e2e) timeout ${E2E_TIMEOUT:-240} $PY bench/bench_cuda_e2e.py ${E2E_ARGS:-} 2>&1 | tee "$OUT/e2e.log" ;;
    bench) timeout ${BENCH_TIMEOUT:-240} $PY bench/bench_cuda_kernels.py ${BENCH_ARGS:-} --json "$OUT/bench.json" 2>&1 | tee "$OUT/bench.log" ;;
    rollouts) timeout ${ROLLOUTS_TIMEOUT:-300} $PY bench/bench_rollouts.py --model checkpoints/qwen3mini-chat --queries 64 \
            --group 16 --max-new-tokens 768 --repeats 3 --peers ${PEERS:-generate} --profile --out "$OUT/rollouts.json" \
            2>&1 | tee "$OUT/rollouts.log" | tail -60 ;;
    moe) timeout ${MOE_TIMEOUT:-240} $PY bench/bench_moe_training.py --json "$OUT/moe_training.json" 2>&1 \
            | tee "$OUT/moe_training.log" | tail -20 ;;
  esac
done; done
