"""Long-context CPU decode: the C++ backend's decode attention and whole decode step as the cache fills.

    python bench/bench_cpu_long_context.py [--threads 2] [--lengths 128,1024,4000]

On Qwen3-0.6B's shape in bf16 (random weights and a cache of random K/V: the speed does not depend on the
values): ``attention_decode`` of one layer at each cached length (best of 5 x 10 calls) with the K/V bytes it
reads per second, beside the machine's copy bandwidth (the bound, as in bench_cpu_inference.py), then
``CppDecodeStep.step`` (``ops.decode_step``: the step the chat runs) at each length (median of 8 steps). The step is
the weights (~1.2 GB) plus 28 attention calls, so at a few thousand tokens attention is a large part of it.
"""
import argparse
import time

import torch

from bench_cpu_inference import _best_time, median_rate, memory_bandwidth
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

    def ten_calls():
        for _ in range(10):
            cpp._C.attention_decode(q, k, v, lengths, head_dim ** -0.5, out)

    seconds = _best_time(ten_calls) / 10
    return seconds * 1e3, length * kv_heads * head_dim * 2 * 2 / seconds / 1e9


@torch.no_grad()
def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--lengths", default="128,1024,4000")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    lengths = [int(n) for n in args.lengths.split(",")]
    config = PRESETS["Qwen3-0.6B"]
    copy, _ = memory_bandwidth()
    print(f"copy bandwidth {copy / 1e9:.1f} GB/s (bytes read + written), {args.threads} threads")
    for length in lengths:
        ms, rate = attention_ms(config, length, max(lengths) + 8)
        print(f"attention_decode, {length:5d} cached tokens: {ms:6.2f} ms per layer ({rate:5.1f} GB/s of K/V)")
    torch.manual_seed(0)
    model = Qwen3ForCausalLM(config).to(torch.bfloat16).eval()
    cache = KVCache.for_model(model, 1, max(lengths) + 8)
    cache.k.normal_()
    cache.v.normal_()
    decode_step = ops.decode_step(model, cache)
    token = torch.tensor([5])

    def step_at(length):
        cache.lengths.fill_(length)
        decode_step.step(token)

    for length in lengths:
        step_at(length)
        rate = median_rate(lambda: step_at(length), 8)
        print(f"{type(decode_step).__name__}.step, {length:5d} cached tokens: {1e3 / rate:6.1f} ms ({rate:5.1f} tok/s)")


if __name__ == "__main__":
    main()
