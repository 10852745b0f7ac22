"""Tuning the fused decode step (qwen3mini.ops.cuda.CudaDecoder) at batch 1 on a Qwen3-0.6B-shaped model.

    python bench/bench_cuda_decoder.py [--variants "default;chunk=256"] [--profile]
    QWEN3MINI_NO_PDL=1 python bench/bench_cuda_decoder.py --variants default --profile  # per-kernel times

Each variant is a CudaDecoder with other tuning knobs (the fewest cache positions per attention split), captured
in a CUDA graph and timed over 256 greedy steps after a 128-token prompt (best of three runs), against the bound
(weights + KV bytes per token over the measured copy bandwidth). ``--profile`` prints the kernels of one
replay; with programmatic dependent launch on, kernels overlap and the profiler's per-kernel times include the
time spent waiting for the previous kernel, so take per-kernel times from a run with QWEN3MINI_NO_PDL=1.
"""
import argparse
import time

import torch

from bench_cuda_e2e import copy_bandwidth
from bench_cuda_profile import kernel_breakdown
from qwen3mini.config import PRESETS
from qwen3mini.generation import KVCache
from qwen3mini.model import Qwen3ForCausalLM
from qwen3mini.ops.cuda import CudaDecoder

KNOBS = {"chunk": ("min_chunk", int)}


def parse_variant(text):
    kwargs = {}
    for item in filter(None, text.split(",")):
        if item == "default":
            continue
        key, value = item.split("=")
        name, convert = KNOBS[key]
        kwargs[name] = convert(value)
    return kwargs


class Graphed:
    """One CUDA graph of ``decoder.step`` fed by its own argmax (greedy decode with no host round trip)."""

    def __init__(self, decoder, cache):
        self.cache, self.token = cache, torch.zeros(1, dtype=torch.long, device="cuda")
        saved = cache.lengths.clone()
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            for _ in range(2):
                decoder.step(self.token)
                cache.lengths.copy_(saved)
        torch.cuda.current_stream().wait_stream(side)
        self.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.graph):
            self.token.copy_(decoder.step(self.token).argmax(-1))
        cache.lengths.copy_(saved)


@torch.no_grad()
def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--variants", default="default;chunk=256")
    parser.add_argument("--prompt", type=int, default=128)
    parser.add_argument("--steps", type=int, default=256)
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args()
    config = PRESETS["Qwen3-0.6B"]
    torch.manual_seed(0)
    model = Qwen3ForCausalLM(config).to("cuda", torch.bfloat16).eval()
    copy_bw = copy_bandwidth()
    weight_bytes = sum(p.numel() * p.element_size() for p in model.parameters())
    kv_bytes = 2 * config.num_hidden_layers * config.num_key_value_heads * config.head_dim * 2 * (
        args.prompt + args.steps / 2)
    bound = copy_bw / (weight_bytes + kv_bytes)
    cache = KVCache.for_model(model, 1, args.prompt + args.steps + 8)
    prompt = torch.randint(0, config.vocab_size, (args.prompt,), generator=torch.Generator().manual_seed(2)).tolist()
    print(f"device {torch.cuda.get_device_name()}; bound {bound:.0f} tok/s "
          f"({(weight_bytes + kv_bytes) / 1e9:.2f} GB/token at {copy_bw / 1e12:.2f} TB/s)")
    for text in args.variants.split(";"):
        cache.reset()
        model.prefill([prompt], cache)
        decoder = CudaDecoder(model, cache, **parse_variant(text))
        graphed = Graphed(decoder, cache)
        rates = []
        for _ in range(3):
            cache.lengths.fill_(args.prompt)
            torch.cuda.synchronize()
            t0 = time.perf_counter()
            for _ in range(args.steps):
                graphed.graph.replay()
            torch.cuda.synchronize()
            rates.append(args.steps / (time.perf_counter() - t0))
        best = max(rates)
        print(f"{text:28s} {best:6.0f} tok/s ({1e6 / best:5.0f} us/step) {best / bound:6.1%} of the bound   "
              f"runs: {', '.join(f'{r:.0f}' for r in rates)}; attention splits {decoder._impl.splits}", flush=True)
        if args.profile:
            cache.lengths.fill_(args.prompt + args.steps // 2)
            kernel_breakdown(graphed.graph.replay, f"one replay ({text})", top=12)
        del graphed, decoder


if __name__ == "__main__":
    main()
