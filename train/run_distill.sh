#!/usr/bin/env bash
# Strong-to-weak distillation (paper §4.5, issue 20) on one GPU, from the post-trained teacher:
#   1. pretrain: the students (config.py PRESETS "student", a quarter of the teacher, and "student-moe", the
#      same active parameters in top-2 of 8 experts) through S1 -> S2 -> S3 (shortened: the stage scripts'
#      "student" presets; S3 with half of it synthetic retrieval samples), side by side, each then measured by
#      train/eval_long_context.py (passkey at 1x, 2x, 4x the S3 length, with and without YaRN); beside them,
#      when off-policy distillation follows, the teacher samples its replies (OUT/teacher_samples.pt): three
#      small models share the GPU;
#   2. offpolicy: train/distill_off_policy.py on each student (side by side; without the teacher's samples yet,
#      the first samples the teacher, the others start once its samples are written and read them);
#   3. onpolicy: train/distill_on_policy.py on the dense student, alone on the GPU (its GPU time is a result),
#      under DISTILL_SECONDS;
#   4. control: stage 2's GRPO (train/rl_reasoning.py) from the same off-policy student, alone on the GPU, for
#      at least the on-policy run's training seconds (read from its summary.json); then a second control, the
#      same off-policy distillation continued from its model at on-policy's lr for about as many GPU-seconds
#      (off-policy's own step rate times those seconds), which asks whether any continued training helps;
#   5. evaluate: the evaluations (train/evaluate.py, pass@16 included) of the dense student's four models and of
#      the MoE's off-policy one, side by side; then the MoE student's on-policy distillation and its evaluation.
# Every stage resumes from its checkpoint when run again and a finished one (its summary.json) is skipped, so the
# script continues across device calls of 10 minutes; wall seconds per stage go to OUT/times.tsv.
# Needs the teacher (TEACHER, the shipped chat model) and data/shards/{s1,s2,s3} encoded with its tokenizer, which
# the students share (distillation compares distributions over one vocabulary; the stage scripts refuse shards
# of another tokenizer):  python -m train.data.build_shards --tokenizer checkpoints/qwen3mini-chat
#
#   bash train/run_distill.sh runs/distill                        # one GPU, every step
#   STEPS="pretrain offpolicy" bash train/run_distill.sh runs/distill   # some of the steps, in order
#   STUDENTS=student bash train/run_distill.sh runs/distill       # the dense student alone
set -euo pipefail
OUT=${1:-runs/distill}
TEACHER=${TEACHER:-checkpoints/qwen3mini-chat}
TOKENIZER=${TOKENIZER:-$TEACHER}            # the students' tokenizer: the teacher's (a copy, when it stays behind)
STUDENTS=${STUDENTS:-"student student-moe"}
STEPS=${STEPS:-"pretrain offpolicy onpolicy control evaluate"}
DISTILL_SECONDS=${DISTILL_SECONDS:-150}     # on-policy distillation's training time; RL gets at least as much
DIVERGENCE=${DIVERGENCE:-reverse}           # on-policy distillation's KL: reverse (student ‖ teacher) or forward
EVAL=${EVAL:-"--limit 20 --samples 16 --difficulties 1-14 --thinkfollow 100 --budgets 0,32,128,512,unlimited"}
mkdir -p "$OUT"

finished() { [ -f "$1/summary.json" ]; }

timed() {   # timed NAME COMMAND...: run it into OUT/NAME.log, append "NAME<TAB>seconds" to OUT/times.tsv
    local name=$1 start
    shift
    start=$(date +%s)
    "$@" > "$OUT/$name.log" 2>&1
    printf '%s\t%d\n' "$name" $(( $(date +%s) - start )) >> "$OUT/times.tsv"
}

side_by_side() {   # side_by_side FUNCTION: FUNCTION STUDENT for every student at once; fails if one does
    local pids=() student
    for student in $STUDENTS; do "$1" "$student" & pids+=($!); done
    for pid in "${pids[@]}"; do wait "$pid"; done
}

pretrain() {
    local s=$1 d=$OUT/$1
    finished "$d/s1" || timed "${s}_s1" python train/pretrain_general.py --preset student --model "$s" \
        --tokenizer "$TOKENIZER" --out_dir "$d/s1" --progress false
    finished "$d/s2" || timed "${s}_s2" python train/pretrain_reasoning.py --preset student \
        --tokenizer "$TOKENIZER" --init_from "$d/s1/final" --out_dir "$d/s2" --progress false
    finished "$d/s3" || timed "${s}_s3" python train/pretrain_long_context.py --preset student \
        --tokenizer "$TOKENIZER" --init_from "$d/s2/final" --out_dir "$d/s3" --progress false
    [ -f "$d/long_context/long_context.json" ] || timed "${s}_long_context" python train/eval_long_context.py \
        --model "$d/s3/final" --data data/shards/s3/val --seeds 8 --out_dir "$d/long_context"
}

teacher_sampling() {
    [ -f "$OUT/teacher_samples.pt" ] || timed teacher_samples python train/distill_off_policy.py \
        --init_from "$TEACHER" --teacher "$TEACHER" --teacher_samples "$OUT/teacher_samples.pt" --sample_only true \
        --out_dir "$OUT/teacher_sampling" --progress false
}

off_policy() {
    finished "$OUT/$1/off_policy" || timed "$1_off_policy" python train/distill_off_policy.py \
        --init_from "$OUT/$1/s3/final" --teacher "$TEACHER" --teacher_samples "$OUT/teacher_samples.pt" \
        --out_dir "$OUT/$1/off_policy" --progress false
}

on_policy() {
    finished "$OUT/$1/on_policy" || timed "$1_on_policy" python train/distill_on_policy.py \
        --init_from "$OUT/$1/off_policy/final" --teacher "$TEACHER" --out_dir "$OUT/$1/on_policy" \
        --steps 100000 --time_limit "$DISTILL_SECONDS" --divergence "$DIVERGENCE" --progress false
}

control() {   # the same GPU time as on-policy distillation at least (its train_seconds)
    local d=$OUT/student seconds
    seconds=$(python -c "import json; print(json.load(open('$d/on_policy/summary.json'))['train_seconds'])")
    finished "$d/rl" || timed student_rl python train/rl_reasoning.py --init_from "$d/off_policy/final" \
        --cold_start_dir "" --out_dir "$d/rl" --steps 100000 --time_limit "$seconds" --progress false
    local steps
    steps=$(python -c "import json; s = json.load(open('$d/off_policy/summary.json'))
print(max(1, round(s['steps'] / s['train_seconds'] * $seconds)))")
    finished "$d/off_policy_more" || timed student_off_policy_more python train/distill_off_policy.py \
        --init_from "$d/off_policy/final" --teacher "$TEACHER" --teacher_samples "$OUT/teacher_samples.pt" \
        --steps "$steps" --warmup_steps 0 --lr 5e-5 --min_lr 5e-5 --out_dir "$d/off_policy_more" --progress false
}

evaluation() {   # evaluation MODEL_DIR NAME: train/evaluate.py of MODEL_DIR/final into OUT/eval_NAME
    [ -f "$OUT/eval_$2/evaluation.json" ] || timed "eval_$2" python train/evaluate.py --model "$1/final" \
        --out "$OUT/eval_$2" $EVAL
}

for step in $STEPS; do case $step in
  pretrain)
    pids=()
    [[ " $STEPS " != *" offpolicy "* ]] || { teacher_sampling & pids+=($!); }
    side_by_side pretrain
    for pid in "${pids[@]}"; do wait "$pid"; done ;;
  offpolicy)
    first=${STUDENTS%% *}
    off_policy "$first" & pids=($!)
    for s in ${STUDENTS#"$first"}; do     # the teacher's samples are drawn once, by the first student's run
        while [ ! -f "$OUT/teacher_samples.pt" ] && kill -0 "${pids[0]}" 2>/dev/null; do sleep 5; done
        off_policy "$s" & pids+=($!)
    done
    for pid in "${pids[@]}"; do wait "$pid"; done ;;
  onpolicy) on_policy student ;;
  control) control ;;
  evaluate)     # the dense student's four models and the MoE's off-policy model side by side, then the MoE's on-policy
    pids=()
    for s in $STUDENTS; do evaluation "$OUT/$s/off_policy" "${s}_off_policy" & pids+=($!); done
    evaluation "$OUT/student/on_policy" student_on_policy & pids+=($!)
    evaluation "$OUT/student/rl" student_rl & pids+=($!)
    evaluation "$OUT/student/off_policy_more" student_off_policy_more & pids+=($!)
    for pid in "${pids[@]}"; do wait "$pid"; done
    for s in $STUDENTS; do
        [ "$s" = student ] || { on_policy "$s"; evaluation "$OUT/$s/on_policy" "${s}_on_policy"; }
    done ;;
  *) echo "run_distill.sh: STEPS holds $step; expected pretrain, offpolicy, onpolicy, control or evaluate" >&2
     exit 2 ;;
esac; done
cat "$OUT/times.tsv"
