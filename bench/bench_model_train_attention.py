"""Training attention: the model's fused-SDPA path against the reference op, forward + backward.

    python bench/bench_model_train_attention.py [--batch 8 --time 256 --heads 8 --kv-heads 4 --dim 64]

The training forward (autograd, rows of equal length) calls torch's scaled_dot_product_attention instead of
the reference ``ops.attention_prefill`` (which loops over rows and keeps every score matrix for backward).
Reports seconds per forward+backward and the relative difference of the outputs.
"""
import argparse
import time

import torch

from qwen3mini.model import PrefillContext
from qwen3mini.ops.reference import ReferenceBackend


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--time", type=int, default=256)
    parser.add_argument("--heads", type=int, default=8)
    parser.add_argument("--kv-heads", type=int, default=4)
    parser.add_argument("--dim", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    B, T, D = args.batch, args.time, args.dim
    cu_seqlens = torch.arange(B + 1, dtype=torch.int32) * T
    context = PrefillContext(cu_seqlens, equal_rows=(B, T))
    reference = ReferenceBackend()
    scale = D ** -0.5
    for dtype in (torch.float32, torch.bfloat16):
        g = torch.Generator().manual_seed(0)
        q, k, v = (torch.randn(B * T, h, D, generator=g).to(dtype).requires_grad_()
                   for h in (args.heads, args.kv_heads, args.kv_heads))
        paths = {"reference op": lambda: reference.attention_prefill(q, k, v, cu_seqlens, cu_seqlens, scale),
                 "fused SDPA": lambda: context._sdpa(q, k, v, scale)}
        seconds = {}
        for name, run in paths.items():
            run().float().square().sum().backward()                      # warm-up
            start = time.perf_counter()
            for _ in range(args.repeats):
                run().float().square().sum().backward()
            seconds[name] = (time.perf_counter() - start) / args.repeats
        with torch.no_grad():
            a, b = paths["reference op"]().float(), paths["fused SDPA"]().float()
        print(f"{str(dtype).replace('torch.', '')}: B={B} T={T} heads {args.heads}/{args.kv_heads} D={D}: "
              f"reference {seconds['reference op'] * 1e3:.0f} ms, fused SDPA {seconds['fused SDPA'] * 1e3:.0f} ms "
              f"per forward+backward ({seconds['reference op'] / seconds['fused SDPA']:.1f}x); "
              f"relative difference {((a - b).norm() / a.norm()).item():.1e}")


if __name__ == "__main__":
    main()
