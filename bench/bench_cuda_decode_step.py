"""Tuning the fused decode step (qwen3mini.ops.cuda.CudaDecodeStep) at batch 1 on a Qwen3-0.6B-shaped model.

    python bench/bench_cuda_decode_step.py [--variants "default;chunk=256"] [--profile] [--timeline]
    QWEN3MINI_NO_PDL=1 python bench/bench_cuda_decode_step.py --variants default --profile  # per-kernel times

Each variant is a CudaDecodeStep with other tuning knobs (the fewest cache positions per attention split), captured
in a CUDA graph and timed over 256 greedy steps after a 128-token prompt (best of three runs), against the bound
(weights + KV bytes per token over the measured copy bandwidth; also printed: weights alone). The graph feeds the
step its own greedy token, picked inside the LM head kernel (``step(token, token)``); ``argmax=torch`` captures
``logits.argmax(-1)`` and a copy instead, two more kernels a step. ``--profile`` prints the kernels of one
replay; with programmatic dependent launch on, kernels overlap and the profiler's per-kernel times include the
time spent waiting for the previous kernel, so take per-kernel times from a run with QWEN3MINI_NO_PDL=1.
``--timeline`` reads the start and end of every kernel of one replay from the profiler's trace (PDL on) and
prints, per kernel of a layer, how much each adds to the step: its end minus the previous kernel's end.
"""
import argparse
import json
import os
import tempfile
import time

import torch
from torch.profiler import ProfilerActivity, profile

from bench_cuda_e2e import copy_bandwidth
from bench_cuda_profile import kernel_breakdown
from qwen3mini.config import PRESETS
from qwen3mini.generation import KVCache
from qwen3mini.model import Qwen3ForCausalLM
from qwen3mini.ops.cuda import CudaDecodeStep

KNOBS = {"chunk": ("min_chunk", int)}


def parse_variant(text):
    """"default,chunk=256,argmax=torch" -> (CudaDecodeStep kwargs, whether the graph takes torch's argmax)."""
    kwargs, torch_argmax = {}, False
    for item in filter(None, text.split(",")):
        if item == "default":
            continue
        key, value = item.split("=")
        if key == "argmax":
            torch_argmax = value == "torch"
            continue
        name, convert = KNOBS[key]
        kwargs[name] = convert(value)
    return kwargs, torch_argmax


LAYER_KERNELS = ("qkv", "attention", "o", "gate_up", "down")


def step_timeline(replay, layers):
    """Per kernel of a layer (means over the layers 1..L-1; layer 0 also embeds): its duration in the trace, the
    gap from the previous kernel's end to its start (negative: launched early, PDL), and its end minus the
    previous end, i.e. what it adds to the step."""
    replay()
    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        replay()
        torch.cuda.synchronize()
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "trace.json")
        prof.export_chrome_trace(path)
        with open(path) as f:
            trace = json.load(f)
    kernels = sorted((e for e in trace["traceEvents"] if e.get("cat") == "kernel"), key=lambda e: e["ts"])
    kernels = [k for k in kernels if "step_gemv" in k["name"] or "step_attention" in k["name"]]
    if len(kernels) != 5 * layers + 1:
        raise RuntimeError(f"the trace has {len(kernels)} decode-step kernels, expected {5 * layers + 1}")
    ends = [k["ts"] + k["dur"] for k in kernels]
    rows = {name: [] for name in LAYER_KERNELS}
    for i in range(5, 5 * layers):
        rows[LAYER_KERNELS[i % 5]].append((kernels[i]["dur"], kernels[i]["ts"] - ends[i - 1], ends[i] - ends[i - 1]))
    print(f"  timeline of one step ({ends[-1] - kernels[0]['ts']:.1f} us from the first start to the last end), "
          f"means over layers 1-{layers - 1}, us:")
    print(f"  {'kernel':10s} {'duration':>9s} {'start - prev end':>17s} {'adds (end - prev end)':>22s}")
    for name, values in rows.items():
        dur, gap, adds = (sum(v[j] for v in values) / len(values) for j in range(3))
        print(f"  {name:10s} {dur:9.2f} {gap:17.2f} {adds:22.2f}")
    print(f"  {'LM head':10s} {kernels[-1]['dur']:9.2f} {kernels[-1]['ts'] - ends[-2]:17.2f} "
          f"{ends[-1] - ends[-2]:22.2f}")


class Graphed:
    """One CUDA graph of ``decode_step.step`` fed by its own greedy token (no host round trip): picked in the LM head
    kernel, or by torch's argmax and a copy (``torch_argmax``)."""

    def __init__(self, decode_step, cache, torch_argmax=False):
        self.cache, self.token = cache, torch.zeros(1, dtype=torch.long, device="cuda")
        saved = cache.lengths.clone()
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        step = ((lambda: self.token.copy_(decode_step.step(self.token).argmax(-1))) if torch_argmax
                else (lambda: decode_step.step(self.token, self.token)))
        with torch.cuda.stream(side):
            for _ in range(2):
                step()
                cache.lengths.copy_(saved)
        torch.cuda.current_stream().wait_stream(side)
        self.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.graph):
            step()
        cache.lengths.copy_(saved)


@torch.no_grad()
def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--variants", default="default;chunk=256")
    parser.add_argument("--prompt", type=int, default=128)
    parser.add_argument("--steps", type=int, default=256)
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--timeline", action="store_true")
    args = parser.parse_args()
    config = PRESETS["Qwen3-0.6B"]
    torch.manual_seed(0)
    model = Qwen3ForCausalLM(config).to("cuda", torch.bfloat16).eval()
    copy_bw = copy_bandwidth()
    weight_bytes = sum(p.numel() * p.element_size() for p in model.parameters())
    kv_bytes = 2 * config.num_hidden_layers * config.num_key_value_heads * config.head_dim * 2 * (
        args.prompt + args.steps / 2)
    bound, weights_bound = copy_bw / (weight_bytes + kv_bytes), copy_bw / weight_bytes
    cache = KVCache.for_model(model, 1, args.prompt + args.steps + 8)
    prompt = torch.randint(0, config.vocab_size, (args.prompt,), generator=torch.Generator().manual_seed(2)).tolist()
    print(f"device {torch.cuda.get_device_name()}; bound {bound:.0f} tok/s "
          f"({(weight_bytes + kv_bytes) / 1e9:.2f} GB/token at {copy_bw / 1e12:.2f} TB/s); "
          f"weights alone: {weights_bound:.0f} tok/s ({weight_bytes / 1e9:.3f} GB/token)")
    for text in args.variants.split(";"):
        cache.reset()
        model.prefill([prompt], cache)
        kwargs, torch_argmax = parse_variant(text)
        decode_step = CudaDecodeStep(model, cache, **kwargs)
        graphed = Graphed(decode_step, cache, torch_argmax)
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
        print(f"{text:28s} {best:6.0f} tok/s ({1e6 / best:5.0f} us/step) {best / bound:6.1%} of the bound "
              f"({best / weights_bound:.1%} of weights alone)   runs: {', '.join(f'{r:.0f}' for r in rates)}; "
              f"attention splits {decode_step._impl.splits}", flush=True)
        if args.profile:
            cache.lengths.fill_(args.prompt + args.steps // 2)
            kernel_breakdown(graphed.graph.replay, f"one replay ({text})", top=12)
        if args.timeline:
            cache.lengths.fill_(args.prompt + args.steps // 2)
            step_timeline(graphed.graph.replay, config.num_hidden_layers)
        del graphed, decode_step


if __name__ == "__main__":
    main()
