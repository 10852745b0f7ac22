"""The pre-trained students, packed to travel to the next distillation call (issue 20).

A device call that pre-trains the students (train/run_distill.sh, step ``pretrain``) sends back each student's
S3 weights in parts (``NAME-s3.safetensors.part-*``, float32 masters) beside ``results.tar.gz`` (the summaries,
configs and long-context measurements, no weights). This puts the two back together as the runs folder holds
them, with the tokenizer and the weights rounded to bf16, in one xz archive that is small enough to travel
beside the teacher (the tree's 64 MiB): ``bench/distill_device.sh`` unpacks it into its runs folder, and
run_distill.sh then skips the finished pre-training and starts at off-policy distillation. (Off-policy
distillation thus starts from bf16-rounded weights rather than the float32 masters; its first optimizer step
moves every weight by far more than that rounding.)

    python bench/pack_students.py --results bench/results/distill_s14 --weights /work/.device/5 \
        --out data/students.tar.xz
"""
import argparse
import glob
import io
import json
import os
import shutil
import sys
import tarfile
import tempfile

import torch
from safetensors.torch import load, save_file

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from qwen3mini.training.stage import TOKENIZER_FILES                            # noqa: E402

STUDENTS = ("student", "student-moe")
# what run_distill.sh's pretrain step leaves that a later step or the findings read (besides the weights)
KEPT = ("s1/summary.json", "s2/summary.json", "s3/summary.json", "s3/final/config.json",
        "s3/final/generation_config.json", "long_context/long_context.json")


def joined_weights(weights_dir: str, student: str) -> dict:
    parts = sorted(glob.glob(os.path.join(weights_dir, f"{student}-s3.safetensors.part-*")))
    if not parts:
        raise SystemExit(f"--weights {weights_dir}: no {student}-s3.safetensors.part-* in it")
    blob = b"".join(open(part, "rb").read() for part in parts)
    try:
        tensors = load(blob)
    except Exception as error:      # (a missing or truncated part)
        raise SystemExit(f"--weights {weights_dir}: {student}'s parts {[os.path.basename(p) for p in parts]} "
                         f"do not make one safetensors file ({error})")
    return {name: t.to(torch.bfloat16) if t.is_floating_point() else t for name, t in tensors.items()}


def pack(results: str, weights_dir: str, tokenizer: str, out: str):
    with tempfile.TemporaryDirectory() as staging:
        for student in STUDENTS:
            for kept in KEPT:
                source = os.path.join(results, student, kept)
                if not os.path.isfile(source):
                    raise SystemExit(f"--results {results}: {student}/{kept} is missing (has the pretrain step "
                                     f"finished?)")
                os.makedirs(os.path.dirname(os.path.join(staging, student, kept)), exist_ok=True)
                shutil.copy(source, os.path.join(staging, student, kept))
            final = os.path.join(staging, student, "s3", "final")
            save_file(joined_weights(weights_dir, student), os.path.join(final, "model.safetensors"),
                      metadata={"format": "pt"})
            for name in TOKENIZER_FILES:
                if os.path.isfile(os.path.join(tokenizer, name)):
                    shutil.copy(os.path.join(tokenizer, name), os.path.join(final, name))
        note = {"from": os.path.abspath(results), "weights": "bf16, rounded from the float32 S3 masters"}
        with tarfile.open(out + ".tmp", "w:xz") as archive:
            for student in STUDENTS:
                archive.add(os.path.join(staging, student), arcname=student)
            text = json.dumps(note, indent=2).encode()
            info = tarfile.TarInfo("packed_students.json")
            info.size = len(text)
            archive.addfile(info, io.BytesIO(text))
    os.replace(out + ".tmp", out)       # (the previous archive stays until the new one is whole)
    print(f"{out}: {os.path.getsize(out) / 2 ** 20:.1f} MiB")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--results", required=True, help="the extracted results.tar.gz of the pre-training call")
    parser.add_argument("--weights", required=True, help="the folder with NAME-s3.safetensors.part-*")
    parser.add_argument("--tokenizer", default="checkpoints/qwen3mini-chat",
                        help="the students' tokenizer: the teacher's, which they were pre-trained with")
    parser.add_argument("--out", default="data/students.tar.xz")
    args = parser.parse_args()
    pack(args.results, args.weights, args.tokenizer, args.out)
