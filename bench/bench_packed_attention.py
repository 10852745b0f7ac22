"""Training on packed rows (SFT and the RL update): forward + backward tokens/s of the shipped model's shape on
rows that hold several conversations each, with each attention kernel the model can use for them.

* ``varlen``: torch's FlashAttention over the sequences themselves (``torch.nn.attention.varlen``, the model's
  choice on a GPU when torch has it);
* ``masked``: the block-diagonal causal mask through the memory-efficient SDPA kernel (the fallback);
* ``unpacked``: the same rows as one causal sequence each (no packing), the speed a mask-free kernel reaches
  on the same tokens: the ceiling for packed rows.

The rows are filled by the SFT packer (qwen3mini/training/sft.py) with conversations of random lengths in
``--lengths`` (the cold start's run from about 60 to 900 tokens), bf16 autocast over fp32 weights, as in
training.

    python bench/bench_packed_attention.py                        # on a GPU; prints a table, writes --json
    python bench/bench_packed_attention.py --rows 64 --seq-len 1024 --lengths 60-900
"""
import argparse
import json
import os
import random
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import qwen3mini                                                                  # noqa: E402
import qwen3mini.model                                                            # noqa: E402
from qwen3mini.training.sft import pack_rows, packed_row                          # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def packed_batch(rows: int, seq_len: int, low: int, high: int, vocab: int, seed: int):
    """(inputs, position_ids) [rows, seq_len] of random conversations packed as the SFT stages pack them."""
    rng = random.Random(seed)
    samples = []
    while sum(len(ids) for ids, _ in samples) < rows * seq_len * 1.2:
        n = rng.randint(low, high)
        samples.append(([rng.randrange(vocab) for _ in range(n)], [True] * n))
    packed = pack_rows([len(ids) for ids, _ in samples], seq_len, list(range(len(samples))))[:rows]
    inputs, _, positions = (torch.stack(c) for c in zip(*(packed_row(samples, r, seq_len, 0) for r in packed)))
    return inputs.cuda(), positions.cuda()


def tokens_per_second(model, inputs, positions, repeats: int) -> float:
    def step():
        with torch.autocast("cuda", dtype=torch.bfloat16):
            model(inputs, position_ids=positions).float().logsumexp(-1).mean().backward()
    for _ in range(2):
        step()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(repeats):
        step()
    end.record()
    torch.cuda.synchronize()
    return inputs.numel() * repeats / (start.elapsed_time(end) / 1e3)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default=os.path.join(ROOT, "checkpoints", "qwen3mini-base"))
    p.add_argument("--rows", type=int, default=64)
    p.add_argument("--seq-len", type=int, default=1024)
    p.add_argument("--lengths", default="60-900", help="low-high tokens of a conversation")
    p.add_argument("--repeats", type=int, default=10)
    p.add_argument("--json", default="runs/bench_packed_attention.json")
    args = p.parse_args()
    if not torch.cuda.is_available():
        sys.exit("bench_packed_attention.py: needs a CUDA GPU (the kernels compared are GPU kernels)")
    low, high = (int(x) for x in args.lengths.split("-"))
    model = qwen3mini.load_model(args.model, dtype=torch.float32, device="cuda").train()
    inputs, positions = packed_batch(args.rows, args.seq_len, low, high, model.config.vocab_size, seed=0)
    varlen = qwen3mini.model.varlen_attn
    results = {}
    for kernel in ("varlen", "masked", "unpacked"):
        if kernel == "varlen" and varlen is None:
            continue
        qwen3mini.model.varlen_attn = varlen if kernel == "varlen" else None
        rows = None if kernel == "unpacked" else positions
        results[kernel] = tokens_per_second(model, inputs, rows, args.repeats)
    qwen3mini.model.varlen_attn = varlen
    conversations = int((positions == 0).sum())
    print(f"{torch.cuda.get_device_name()}, {args.rows} rows x {args.seq_len} tokens, {conversations} conversations")
    for kernel, rate in results.items():
        print(f"{kernel:9s} {rate:12,.0f} tokens/s   {rate / results['unpacked']:.2f}x unpacked")
    os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
    with open(args.json, "w") as f:
        json.dump({"device": torch.cuda.get_device_name(), "settings": vars(args), "conversations": conversations,
                   "tokens_per_second": results}, f, indent=1)


if __name__ == "__main__":
    main()
