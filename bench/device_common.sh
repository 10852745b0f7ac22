# What the device scripts (posttrain_device.sh, distill_device.sh) share; each sets R (its runs folder) and then
# sources this from the repository root. A fresh device machine has the repository and nothing else: the
# package layout that `pip install -e .` makes is linked, the GPU's clocks are noted, results go to $OUT.
OUT=${OUT:-bench/results}
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1 TORCH_CUDA_ARCH_LIST=9.0
mkdir -p "$R" "$OUT"
ln -sfn ../tokenizer qwen3mini/tokenizer
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.mem --format=csv > "$R/env.txt"

build_cuda() {       # the CUDA extension, unless a call before built it
    [ -f qwen3mini/_cuda.so ] || MAX_JOBS=16 python csrc/cuda/build_jit.py > "$R/build.log" 2>&1
}

weights_out() {      # weights_out FILE NAME: OUT/NAME.safetensors.part-aa, -ab, ... (cat them back together)
    [ -f "$1" ] && split -b 15M "$1" "$OUT/$2.safetensors.part-"
}

archive() {          # logs, JSON and PNG of the runs folder as OUT/results.tar.gz (no weights, checkpoints, and
                     # no tokenizers unless KEEP_TOKENIZERS=1)
    local tokenizers=(--exclude='tokenizer*.json' --exclude='vocab.json' --exclude='merges.txt')
    [ "${KEEP_TOKENIZERS:-0}" = 1 ] && tokenizers=()
    (cd "$R" && tar czf "$OUT/results.tar.gz" --exclude='*.safetensors' --exclude='*.pt' --exclude='ckpt' \
        "${tokenizers[@]}" --exclude='*.tmp' .)
    ls -la "$OUT"
}
export -f build_cuda weights_out
