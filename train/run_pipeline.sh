#!/usr/bin/env bash
# The shipped base model's whole pre-training on one GPU (what produced checkpoints/qwen3mini-base):
#   S1 general -> S2 reasoning -> S3 long context -> bf16 HF checkpoint -> long-context evaluation,
#   and beside it the MoE-vs-dense comparison at equal active parameters (S1 data, equal tokens and schedule).
# Needs the package installed (pip install -e ., for qwen3mini.tokenizer), data/shards/{s1,s2,s3} and
# checkpoints/tokenizer-16k (train/data/README.md). The step counts fit
# one 10-minute H100 call (throughputs: bench/RESULTS.md); scale them with the data and the GPUs.
#
#   bash train/run_pipeline.sh runs/pipeline            # one GPU
#   NPROC=8 bash train/run_pipeline.sh runs/pipeline    # 8 GPUs (each stage under torchrun, DDP)
set -euo pipefail
OUT=${1:-runs/pipeline}
NPROC=${NPROC:-1}
S1_STEPS=${S1_STEPS:-2000}
S2_STEPS=${S2_STEPS:-500}
S3_STEPS=${S3_STEPS:-150}
CMP_STEPS=${CMP_STEPS:-300}
mkdir -p "$OUT"
if [ "$NPROC" -gt 1 ]; then RUN="torchrun --standalone --nproc_per_node $NPROC"; else RUN=python; fi

# MoE vs dense: same data, tokens, schedule and active parameters, one micro-batch per step. It runs beside
# the main chain: the MoE's reference expert dispatch waits on the host every layer and leaves the GPU idle.
compare() {
    local cmp="--preset base --micro_batch 64 --grad_accum 1 --steps $CMP_STEPS --schedule cosine --warmup_steps 30 --eval_every 25 --progress false"
    $RUN train/pretrain_general.py $cmp --model base --out_dir "$OUT/cmp-dense" > "$OUT/cmp-dense.log" 2>&1
    $RUN train/pretrain_general.py $cmp --model base-moe --compile false --lbl_coef 0.01 --out_dir "$OUT/cmp-moe" > "$OUT/cmp-moe.log" 2>&1
}
compare &
COMPARE=$!

$RUN train/pretrain_general.py --preset base --out_dir "$OUT/s1" --steps "$S1_STEPS" --progress false
$RUN train/pretrain_reasoning.py --preset base --init_from "$OUT/s1/final" --out_dir "$OUT/s2" --steps "$S2_STEPS" --progress false
$RUN train/pretrain_long_context.py --preset base --init_from "$OUT/s2/final" --out_dir "$OUT/s3" --steps "$S3_STEPS" --progress false
python -c "
import torch, qwen3mini
from qwen3mini.training.stage import save_pretrained
save_pretrained(qwen3mini.load_model('$OUT/s3/final', dtype=torch.bfloat16), '$OUT/ship', 'checkpoints/tokenizer-16k')
"
python train/eval_long_context.py --model "$OUT/ship" --data data/shards/s3/val --out_dir "$OUT/eval"
wait $COMPARE

python -c "
from qwen3mini.training.logs import plot_losses
runs = {'dense (18.9M)': '$OUT/cmp-dense/log.jsonl', 'MoE (47.2M total, 18.9M active: top-2 of 8 experts)': '$OUT/cmp-moe/log.jsonl'}
plot_losses(runs, '$OUT/moe_vs_dense_val.png', key='val_loss', title='MoE vs dense at equal active parameters')
plot_losses(runs, '$OUT/moe_vs_dense_train.png', title='MoE vs dense at equal active parameters')
stages = {'S1 -> S2 -> S3': ['$OUT/s1/log.jsonl', '$OUT/s2/log.jsonl', '$OUT/s3/log.jsonl']}
plot_losses(stages, '$OUT/stages_train.png', title='qwen3mini-base: training loss, S1 -> S2 -> S3')
plot_losses(stages, '$OUT/stages_val.png', key='val_loss', title='qwen3mini-base: validation loss of each stage mix')
"
