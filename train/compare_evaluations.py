#!/usr/bin/env python
"""Compare evaluations of the same held-out cells (train/evaluate.py's evaluation.json), e.g. a stage's model
against the one it started from: greedy pass@1 per family and difficulty side by side, the gain of the last
over the first, each family's reach (the last difficulty before pass@1 falls below 50%), and the mean over the
edge cells (where the first model succeeds only sometimes).

    python train/compare_evaluations.py cold=runs/posttrain/eval_cold_start/evaluation.json \
        rl=runs/posttrain/eval_rl_reasoning/evaluation.json --out runs/posttrain/compare_rl

Writes OUT/comparison.json, OUT/comparison.md and OUT/comparison.png, and prints the Markdown.
"""
import argparse
import json
import os

from qwen3mini.evaluation.report import compare, comparison_markdown, plot_comparison
from qwen3mini.training.checkpoints import write_atomic


def parse_args(argv=None):
    p = argparse.ArgumentParser(prog="compare_evaluations.py", description=__doc__.split("\n\n")[0])
    p.add_argument("runs", nargs="+", metavar="LABEL=PATH", help="evaluation.json files, the baseline first")
    p.add_argument("--mode", choices=["think", "no-think"], default="think", help="which mode's cells (default think)")
    p.add_argument("--edge", default="0.05-0.75", help="the baseline's pass@1 range of the edge cells")
    p.add_argument("--out", default="runs/compare", help="output directory (default runs/compare)")
    args = p.parse_args(argv)
    if len(args.runs) < 2 or any("=" not in r for r in args.runs):
        p.error("give at least two LABEL=PATH arguments, the baseline first")
    low, _, high = args.edge.partition("-")
    try:
        args.edge = (float(low), float(high))
    except ValueError:
        p.error(f"argument --edge: expected LOW-HIGH such as 0.05-0.75, got {args.edge!r}")
    return args


def main(argv=None):
    args = parse_args(argv)
    runs = {}
    for item in args.runs:
        label, _, path = item.partition("=")
        try:
            with open(path) as f:
                runs[label] = json.load(f)
        except (OSError, json.JSONDecodeError) as error:
            raise SystemExit(f"compare_evaluations.py: {path}: {error}")
    figures = compare(runs, args.mode, args.edge)
    if not figures["cells"]:
        raise SystemExit(f"compare_evaluations.py: the evaluations share no {args.mode} cell")
    os.makedirs(args.out, exist_ok=True)
    text = comparison_markdown(figures)
    write_atomic(os.path.join(args.out, "comparison.json"), json.dumps(figures, indent=1))
    write_atomic(os.path.join(args.out, "comparison.md"), text)
    plot_comparison(figures, os.path.join(args.out, "comparison.png"))
    print(text, end="")


if __name__ == "__main__":
    main()
