"""Long-context CPU decode: the C++ backend's decode attention and whole decode step as the cache fills.

    python bench/bench_cpu_long_context.py [--threads 2] [--lengths 128,1024,4000]

On Qwen3-0.6B's shape in bf16 (random weights and a cache of random K/V: the speed does not depend on the
values): ``attention_decode`` of one layer at each cached length (best of 3 x 10 calls) with the K/V bytes it
reads per second, then ``CppDecoder.step`` (``ops.decoder``: the step the chat runs) at each length (median of
8 steps). The step is the weights (~1.2 GB) plus 28 attention calls, so at a few thousand tokens attention is
a large part of it.
"""
import argparse
import time

import torch

from qwen3mini import ops
from qwen3mini.config import PRESETS
from qwen3mini.generation import KVCache
from qwen3mini.model import Qwen3ForCausalLM
from qwen3mini.ops import cpp


def attention_ms(config, length, capacity):
    heads, kv_heads, head_dim = config.num_attention_heads, config.num_key_value_heads, config.head_dim
    q = torch.randn(1, heads, head_dim, dtype=torch.bfloat16)
    k, v = (torch.randn(1, capacity, kv_heads, head_dim, dtype=torch.bfloat16) for _ in range(2))
    lengths, out = torch.tensor([length], dtype=torch.int32), torch.empty_like(q)
    cpp._C.attention_decode(q, k, v, lengths, head_dim ** -0.5, out)
    best = float("inf")
    for _ in range(3):
        start = time.perf_counter()
        for _ in range(10):
            cpp._C.attention_decode(q, k, v, lengths, head_dim ** -0.5, out)
        best = min(best, (time.perf_counter() - start) / 10)
    return best * 1e3, length * kv_heads * head_dim * 2 * 2 / best / 1e9


@torch.no_grad()
def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--lengths", default="128,1024,4000")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    lengths = [int(n) for n in args.lengths.split(",")]
    config = PRESETS["Qwen3-0.6B"]
    for length in lengths:
        ms, rate = attention_ms(config, length, max(lengths) + 8)
        print(f"attention_decode, {length:5d} cached tokens: {ms:6.2f} ms per layer ({rate:5.1f} GB/s of K/V)")
    torch.manual_seed(0)
    model = Qwen3ForCausalLM(config).to(torch.bfloat16).eval()
    cache = KVCache.for_model(model, 1, max(lengths) + 8)
    cache.k.normal_()
    cache.v.normal_()
    decoder = ops.decoder(model, cache)
    token = torch.tensor([5])
    for length in lengths:
        cache.lengths.fill_(length)
        decoder.step(token)
        times = []
        for _ in range(8):
            cache.lengths.fill_(length)
            start = time.perf_counter()
            decoder.step(token)
            times.append(time.perf_counter() - start)
        print(f"{type(decoder).__name__}.step, {length:5d} cached tokens: {sorted(times)[4] * 1e3:6.1f} ms "
              f"({1 / sorted(times)[4]:5.1f} tok/s)")


if __name__ == "__main__":
    main()
