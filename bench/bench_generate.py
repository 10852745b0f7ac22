"""Batch generation as infer/generate.py runs it: tokens/s of ``generate_completions`` on a real checkpoint.

    python bench/bench_generate.py                      # checkpoints/qwen3mini-base on the GPU, batch 64
    python bench/bench_generate.py --eager              # the same loop, the decode steps launched without graphs
    python bench/bench_generate.py --device cpu --batch 4 --new-tokens 16          # a quick check on the CPU

64 fixed prompts of fixed, unequal lengths (windows of one text, 64 to 128 tokens) each get exactly
``--new-tokens`` tokens (stop tokens ignored), sampled with the thinking-mode settings that infer/generate.py
uses by default (paper §4.6: T 0.6, top-p 0.95, top-k 20; ``--temperature 0`` is greedy). The figure is
infer/generate.py's own: generated tokens over the wall time of the whole call (prefill, graph capture and
decode), best of ``--repeat`` calls after one warm-up call.

Before and after: ``--legacy`` makes the call that infer/generate.py made at commit 3bdbbda,
``model.generate(prompts, n, stop_token_ids=..., seed=..., temperature=..., top_p=..., top_k=...)``, using no
API newer than that commit. This script imports the qwen3mini of the tree it lives in, so the "before" figure
comes from a checkout of that commit with this file copied in (and its extensions built there):

    git worktree add /tmp/before 3bdbbda && cp bench/bench_generate.py /tmp/before/bench/
    (cd /tmp/before && python setup.py build_ext --inplace && TORCH_CUDA_ARCH_LIST=9.0 python csrc/cuda/build_jit.py)
    python /tmp/before/bench/bench_generate.py --legacy --model $PWD/checkpoints/qwen3mini-base
"""
import argparse
import os
import subprocess
import sys
import time

import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
import qwen3mini  # noqa: E402

TEXT = ("The history of computing is a story of abstraction: each generation of engineers hides the details that "
        "troubled the one before, so that the next can think about larger problems. Punched cards gave way to "
        "assemblers, assemblers to compilers, compilers to operating systems and libraries, and each step made a "
        "machine that was harder to understand in full but easier to use for a purpose. ") * 4


def prompts_for(tokenizer, batch: int) -> list:
    """``batch`` windows of one text, of 64 to 128 tokens: fixed, unequal, the same on every run and commit."""
    ids = tokenizer.encode(TEXT)
    return [ids[i % 32:i % 32 + 64 + (i * 37) % 65] for i in range(batch)]


def synchronize(device):
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def generate(model, prompts, args, seed):
    """One batch through the path under test; returns the number of tokens it generated."""
    sampling = dict(temperature=args.temperature, top_p=args.top_p, top_k=args.top_k)
    if args.legacy:                                       # infer/generate.py's call at commit 3bdbbda
        rows = model.generate(prompts, args.new_tokens, stop_token_ids=[], seed=seed, **sampling)
        return sum(len(row) - len(p) for row, p in zip(rows, prompts))
    from qwen3mini.generation import SamplingParams, generate_completions
    done = generate_completions(model, prompts, args.new_tokens, SamplingParams(**sampling, seed=seed),
                                stop_token_ids=[], cuda_graphs=not args.eager)
    return sum(c.generated_tokens for c in done)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default=os.path.join(ROOT, "checkpoints", "qwen3mini-base"))
    p.add_argument("--device", default="cuda")
    p.add_argument("--dtype", default="bfloat16", choices=["bfloat16", "float32"])
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--new-tokens", type=int, default=256)
    p.add_argument("--temperature", type=float, default=0.6)
    p.add_argument("--top-p", type=float, default=0.95)
    p.add_argument("--top-k", type=int, default=20)
    p.add_argument("--repeat", type=int, default=3)
    path = p.add_mutually_exclusive_group()
    path.add_argument("--legacy", action="store_true", help="model.generate, as infer/generate.py at 3bdbbda")
    path.add_argument("--eager", action="store_true", help="generate_completions without CUDA graphs")
    args = p.parse_args()

    model = qwen3mini.load_model(args.model, device=args.device, dtype=getattr(torch, args.dtype))
    prompts = prompts_for(qwen3mini.load_tokenizer(args.model), args.batch)
    commit = subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True).stdout.strip()
    where = torch.cuda.get_device_name() if torch.device(args.device).type == "cuda" else "CPU"
    what = "model.generate (legacy call)" if args.legacy else (
        f"generate_completions{', eager steps' if args.eager else ''}")
    print(f"{where} · torch {torch.__version__} · {os.path.dirname(qwen3mini.__file__)} at {commit or '?'} · "
          f"{args.model} ({args.dtype}) · "
          f"{what} · {args.batch} prompts of {min(map(len, prompts))}-{max(map(len, prompts))} tokens, "
          f"{args.new_tokens} new each, T={args.temperature} top-p={args.top_p} top-k={args.top_k}")
    rates = []
    for call in range(args.repeat + 1):                   # call 0 warms up (allocator, kernels, lazy inits)
        synchronize(args.device)
        began = time.perf_counter()
        tokens = generate(model, prompts, args, seed=call)
        synchronize(args.device)
        seconds = time.perf_counter() - began
        if call:
            rates.append(tokens / seconds)
            print(f"  call {call}: {tokens} tokens in {seconds:.2f} s, {tokens / seconds:.0f} tokens/s", flush=True)
    print(f"best: {max(rates):.0f} tokens/s")


if __name__ == "__main__":
    main()
