"""How much a student's passkey retrieval moves under small changes of its attention (issue 20, finding 7).

YaRN changes two things at once (docs/qwen3.md §5): the rotary frequencies (the low ones interpolated by the
factor) and the attention temperature (cos and sin scaled by ``attention_factor``, 0.1 ln(factor) + 1, so the
attention logits by its square). This separates them: passkey accuracy (train/eval_long_context.py's prompts and
greedy check) on a grid of {plain RoPE, YaRN's frequencies} x attention factors, at multiples of the trained
length. A model that truly retrieves keeps its accuracy across the grid; one whose answer rests on a thin margin
swings with every cell.

    python bench/passkey_sensitivity.py --model runs/distill/student/s3/final --out passkey_sensitivity.json
"""
import argparse
import json
import os
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import qwen3mini                                                  # noqa: E402
from train.eval_long_context import passkey_accuracy, variant     # noqa: E402

YARN_FACTOR = 4.0


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True, help="an S3 model folder (HF layout, with its tokenizer)")
    parser.add_argument("--factors", default="1.0,1.07,1.1386,1.2,1.3",
                        help="attention factors (1.1386 is YaRN's own at factor 4)")
    parser.add_argument("--multiples", default="1", help="lengths, as multiples of the trained length")
    parser.add_argument("--depths", default="0.1,0.3,0.5,0.7,0.9")
    parser.add_argument("--seeds", type=int, default=8, help="prompts per (length, depth)")
    parser.add_argument("--dtype", default="bfloat16", choices=("bfloat16", "float32"))
    parser.add_argument("--out", required=True, help="the JSON written")
    args = parser.parse_args()
    if not os.path.isdir(args.model):
        raise SystemExit(f"--model {args.model}: no such folder")
    try:
        factors = [float(f) for f in args.factors.split(",")]
        multiples = [int(m) for m in args.multiples.split(",")]
        depths = [float(d) for d in args.depths.split(",")]
    except ValueError as error:
        raise SystemExit(f"--factors, --multiples, --depths: comma-separated numbers expected ({error})")
    device = "cuda" if torch.cuda.is_available() else "cpu"
    base = qwen3mini.load_model(args.model, device=device, dtype=getattr(torch, args.dtype))
    tok = qwen3mini.load_tokenizer(args.model)
    trained = base.config.max_position_embeddings           # S3 wrote its sequence length here
    grid = {}
    for frequencies, yarn in (("RoPE", None), (f"YaRN x{YARN_FACTOR:g}", YARN_FACTOR)):
        for multiple in multiples:
            model = variant(base, yarn, trained, multiple * trained)
            own = model.model.rotary.attention_factor
            for factor in factors:
                model.model.rotary.attention_factor = factor
                start = time.time()
                accuracy = passkey_accuracy(model, tok, multiple * trained, depths, args.seeds)
                grid.setdefault(frequencies, {}).setdefault(f"{multiple}x", {})[f"{factor:g}"] = accuracy
                mark = " (its own)" if factor == own else ""
                print(f"{frequencies:8s} {multiple}x  attention factor {factor:<7g}{mark:11s} passkey {accuracy:.3f}"
                      f"  ({time.time() - start:.0f} s)", flush=True)
    result = {"model": args.model, "trained_len": trained, "prompts_per_cell": len(depths) * args.seeds,
              "dtype": args.dtype, "device": device, "passkey_accuracy": grid}
    with open(args.out + ".tmp", "w") as f:
        json.dump(result, f, indent=2)
    os.replace(args.out + ".tmp", args.out)


if __name__ == "__main__":
    main()
