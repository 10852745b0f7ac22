#!/usr/bin/env bash
# The H200 device calls of strong-to-weak distillation (issue 20). One 30-minute slice: the same command three
# times on the warm machine (each call at most 10 minutes); train/run_distill.sh skips what is finished and
# resumes what a call's time limit cut off. The first call builds what a fresh machine lacks (the CUDA
# extension, the token shards from data/carry: the call's carry is ["data/carry"]) and, before the pipeline,
# runs the MoE training benchmark (bench/bench_moe_training.py) alone on the GPU, with the grouped-GEMM
# conformance tests, while the CPU makes the shards (BENCH_MOE=0 skips them). Every call ends by archiving the
# results so far (logs, JSON, PNG; no weights) into OUT/results.tar.gz; LIMIT (seconds of work before that) fits
# the call's time. The students' weights come back in 15 MB parts, every one a stage made (NAME-off-policy,
# NAME-on-policy, and student-rl, the control; the continued off-policy control is evaluated on the GPU and not
# returned, for the 8 files a call brings back), else the pre-trained ones (NAME-s3); cat the parts together.
# The tree that travels, carry included, is at most 64 MiB: the teacher's weights go, the base model and
# bench/results stay behind, and only 45% of the corpus's documents travel (20.1 MiB; the full carry is
# 42.5 MiB), so the students' shortened pre-training sees that share of the stage corpora, several times over.
# The machine stays warm only 30 s after a call: start the next call at once. Before the calls:
#   python -m train.data.build_corpus pack --share 0.45
#   bash bench/device_tree.sh hide checkpoints/qwen3mini-base checkpoints/qwen3mini-student \
#       checkpoints/qwen3mini-student-moe bench/results
# and `bash bench/device_tree.sh restore` after.
#
#   OUT=/tmp/out bash bench/distill_device.sh           # each call: continue the pipeline
#
# The pre-training alone (STEPS=pretrain; the teacher's tokenizer is needed, so keep the teacher or point TOKENIZER
# at a copy of its tokenizer files) fits one call; its students then travel to a
# later slice instead of the corpus: `python bench/pack_students.py` makes data/students.tar.xz from that call's
# files (18.8 MiB), a call whose carry is ["data/students.tar.xz"] unpacks it into the runs folder, and the
# pipeline starts at off-policy distillation.
set -uo pipefail
cd "$(dirname "$0")/.."
R=${RUNS:-/tmp/distill}
LIMIT=${LIMIT:-570}          # seconds of work before the archive is written (the device call allows 600)
source bench/device_common.sh
export TEACHER=${TEACHER:-checkpoints/qwen3mini-chat}
export TOKENIZER=${TOKENIZER:-$TEACHER}      # the students share the teacher's vocabulary (train/run_distill.sh)
# One slice holds every step of train/run_distill.sh only with these: 10 items a cell in the evaluations (pass@16
# included) and 100 s of on-policy distillation (the RL control gets at least as much)
export EVAL=${EVAL:-"--limit 10 --samples 16 --difficulties 1-14 --thinkfollow 100 --budgets 0,32,128,512,unlimited"}
export DISTILL_SECONDS=${DISTILL_SECONDS:-100}
[ "${STEPS:-}" = pretrain ] || [ -d "$TEACHER" ] || { echo "no teacher $TEACHER" >&2; exit 2; }
[ -f "$TOKENIZER/tokenizer.json" ] || { echo "no tokenizer in $TOKENIZER (TOKENIZER: the teacher's)" >&2; exit 2; }
if [ -f data/students.tar.xz ] && [ ! -f "$R/student/s3/summary.json" ]; then
    tar xJf data/students.tar.xz -C "$R"
fi

prepare_data() {     # the shards, for pre-training (a call that carries pre-trained students carries no corpus)
    [ -f data/shards/s3/val.bin ] || [ ! -d data/carry/sources ] ||
        { python -m train.data.build_corpus synth mix --sources-dir data/carry/sources &&
          python -m train.data.build_shards --tokenizer "$TOKENIZER"; } > "$R/data.log" 2>&1
}

bench_moe() {        # once: alone on the GPU, so that its timings are the GPU's alone
    python bench/bench_moe_training.py --json "$R/bench_moe_training.json" > "$R/bench_moe_training.log" 2>&1
    python -m pytest -q tests/model/test_grouped_moe.py > "$R/test_grouped_moe.log" 2>&1
}

call_pipeline() {
    build_cuda
    [ -f "$R/bench_moe_training.log" ] || [ "${BENCH_MOE:-1}" = 0 ] || bench_moe &   # while the CPU makes the shards
    prepare_data
    wait
    bash train/run_distill.sh "$R"
}

export -f prepare_data bench_moe call_pipeline
export R
SECONDS=0
timeout -k 10 "$LIMIT" bash -c call_pipeline
echo "call: exit $?, $SECONDS s" >> "$R/calls.txt"
for student in student student-moe; do       # every distilled or RL model (7 files at most, beside the archive)
    shipped=0
    for stage in on_policy off_policy rl; do
        weights_out "$R/$student/$stage/final/model.safetensors" "$student-${stage//_/-}" && shipped=1
    done
    [ $shipped = 1 ] || weights_out "$R/$student/s3/final/model.safetensors" "$student-s3"
done
archive
