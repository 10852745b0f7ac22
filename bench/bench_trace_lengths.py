"""Token lengths of the solvers' replies (thinking + answer) per family and difficulty, with the shipped
tokenizer: what a change to the traces costs the cold start's rows and the RL and evaluation token caps.

    python bench/bench_trace_lengths.py [--problems 60] [--seed 7]

Prints mean and longest reply per cell over ``--problems`` problems drawn with one seed per cell, and how many
replies are longer than the harness's REPLY_TOKENS (a model that follows the traces cannot end those by then:
the ceiling of issue 19's "replies end within 1,024 tokens"), with the total over the cells.
"""
import argparse
import os
import random
import statistics
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
import qwen3mini  # noqa: E402
from qwen3mini.evaluation.general import REPLY_TOKENS  # noqa: E402
from qwen3mini.evaluation.thinkfollow import reply_in_mode  # noqa: E402
from qwen3mini.tasks import FAMILIES  # noqa: E402


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--problems", type=int, default=60, help="problems per cell")
    p.add_argument("--seed", type=int, default=7)
    args = p.parse_args()
    tokenizer = qwen3mini.load_tokenizer(os.path.join(ROOT, "checkpoints", "qwen3mini-base"))
    print(f"{'cell':12s} {'mean':>6s} {'longest':>7s} {f'over {REPLY_TOKENS}':>9s}")
    over_all, count = 0, 0
    for name, family in FAMILIES.items():
        for difficulty in family.difficulties:
            rng = random.Random(args.seed)
            lengths = [len(tokenizer.encode(reply_in_mode(problem, "think"))) + 1
                       for problem in (family.generate(rng, difficulty) for _ in range(args.problems))]
            over = sum(length > REPLY_TOKENS for length in lengths)     # (+1: the reply's closing <|im_end|>)
            over_all, count = over_all + over, count + len(lengths)
            print(f"{name}/{difficulty:<{11 - len(name)}d} {statistics.mean(lengths):6.0f} {max(lengths):7d} "
                  f"{over:9d}")
    print(f"longer than {REPLY_TOKENS} tokens: {over_all} of {count} replies ({over_all / count:.1%})")


if __name__ == "__main__":
    main()
