"""CPU inference speed: qwen3mini (C++ kernels) vs transformers, same random 0.6B-shaped bf16 checkpoint.

    python bench/bench_cpu_inference.py                   # 2 threads, decode + 512-token prefill
    python bench/bench_cpu_inference.py --threads 2 --decode-steps 32 --prefill 512 --backend cpp

Reports tokens/s of batch-1 decode and of one prefill for both implementations, their ratio, and our decode
speed as a fraction of the memory-bandwidth bound: a decode step must read every weight once, so it cannot
beat (copy bandwidth) / (weight bytes per token); the copy bandwidth is measured here (torch copy_ of
512 MiB, bytes read + bytes written, the STREAM convention). Results go to bench/RESULTS.md by hand.
"""
import argparse
import os
import sys
import time

_parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
_parser.add_argument("--threads", type=int, default=2)
_parser.add_argument("--checkpoint", default="/tmp/qwen3mini-bench-0.6b", help="created if missing")
_parser.add_argument("--preset", default="Qwen3-0.6B")
_parser.add_argument("--decode-steps", type=int, default=32)
_parser.add_argument("--hf-decode-steps", type=int, default=8, help="transformers is slower: fewer steps")
_parser.add_argument("--prefill", type=int, default=512, help="prompt length of the prefill benchmark")
_parser.add_argument("--backend", default="cpp", help="qwen3mini op backend (cpp or reference)")
_parser.add_argument("--skip-hf", action="store_true", help="only qwen3mini")
_parser.add_argument("--omp-wait-policy", default="passive", choices=["passive", "active"],
                     help="OpenMP idle threads sleep (passive) or spin (active); passive is far faster on a "
                          "machine shared with other work, where a spinning thread holds the core its peer needs")
args = _parser.parse_args()
# qwen3mini._C and torch share one OpenMP runtime (torch's libgomp), configured at start-up: same for both.
os.environ["OMP_NUM_THREADS"] = str(args.threads)
os.environ["OMP_WAIT_POLICY"] = args.omp_wait_policy.upper()

import torch  # noqa: E402

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import qwen3mini  # noqa: E402
from qwen3mini import ops  # noqa: E402
from qwen3mini.checkpoint import save_model  # noqa: E402
from qwen3mini.config import PRESETS  # noqa: E402
from qwen3mini.generation import KVCache  # noqa: E402
from qwen3mini.model import Qwen3ForCausalLM  # noqa: E402


def copy_bandwidth(nbytes=512 << 20, repeats=5) -> float:
    """Bytes per second of a large tensor copy, counting the read and the write (STREAM 'copy')."""
    src = torch.ones(nbytes // 4)
    dst = torch.empty_like(src)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        dst.copy_(src)
        best = min(best, time.perf_counter() - start)
    return 2 * nbytes / best


def make_checkpoint(path, preset):
    if os.path.exists(os.path.join(path, "config.json")):
        return
    print(f"writing a random {preset} checkpoint (bf16) to {path} ...", flush=True)
    torch.manual_seed(0)
    model = Qwen3ForCausalLM(PRESETS[preset]).to(torch.bfloat16)
    save_model(model, path)


def weight_bytes_per_token(model) -> int:
    """Every parameter is read once per decoded token (the tied embedding once, as the output head); the
    embedding lookup of the input token itself is one row and is ignored."""
    return sum(p.numel() * p.element_size() for p in model.parameters())


# ---------------------------------------------------------------- qwen3mini
def ours_decode(model, prompt, steps):
    cache = KVCache.for_model(model, 1, len(prompt) + steps + 1)
    logits = model.prefill([prompt], cache)
    token = logits.argmax(-1)
    model.decode_step(token, cache)                       # warm-up step (allocations, first touch)
    start = time.perf_counter()
    for _ in range(steps):
        token = model.decode_step(token, cache).argmax(-1)
    return steps / (time.perf_counter() - start)


def ours_prefill(model, prompt):
    cache = KVCache.for_model(model, 1, len(prompt))
    start = time.perf_counter()
    logits = model.prefill([prompt], cache)
    return len(prompt) / (time.perf_counter() - start), logits[0].float()


# ---------------------------------------------------------------- transformers
def hf_decode(model, prompt, steps):
    from transformers import DynamicCache
    cache = DynamicCache()
    ids = torch.tensor([prompt])
    out = model(ids, past_key_values=cache, use_cache=True, logits_to_keep=1)
    token = out.logits[:, -1].argmax(-1, keepdim=True)
    out = model(token, past_key_values=cache, use_cache=True)          # warm-up step
    token = out.logits[:, -1].argmax(-1, keepdim=True)
    start = time.perf_counter()
    for _ in range(steps):
        token = model(token, past_key_values=cache, use_cache=True).logits[:, -1].argmax(-1, keepdim=True)
    return steps / (time.perf_counter() - start)


def hf_prefill(model, prompt):
    ids = torch.tensor([prompt])
    start = time.perf_counter()
    logits = model(ids, use_cache=False, logits_to_keep=1).logits[0, -1]
    return len(prompt) / (time.perf_counter() - start), logits.float()


def main():
    torch.set_num_threads(args.threads)
    make_checkpoint(args.checkpoint, args.preset)
    ops.use_backend(args.backend)
    bandwidth = copy_bandwidth()
    model = qwen3mini.load_model(args.checkpoint, dtype=torch.bfloat16)
    weight_bytes = weight_bytes_per_token(model)
    bound = bandwidth / weight_bytes
    generator = torch.Generator().manual_seed(1)
    prompt = torch.randint(0, 150000, (args.prefill,), generator=generator).tolist()
    short = prompt[:16]

    with torch.inference_mode():
        ours_prefill(model, short)                                       # warm-up
        ours_prefill_tps, ours_logits = ours_prefill(model, prompt)
        ours_decode_tps = ours_decode(model, short, args.decode_steps)

    print(f"machine: {os.cpu_count()} logical CPUs, {args.threads} threads (OMP_WAIT_POLICY={args.omp_wait_policy}), "
          f"torch {torch.__version__}, backend {args.backend}, load average {os.getloadavg()[0]:.1f}")
    print(f"copy bandwidth {bandwidth / 1e9:.1f} GB/s; weights {weight_bytes / 1e9:.3f} GB per token; "
          f"bound {bound:.2f} tokens/s")
    print(f"qwen3mini decode  {ours_decode_tps:8.2f} tokens/s  ({100 * ours_decode_tps / bound:.0f}% of the bound)")
    print(f"qwen3mini prefill {ours_prefill_tps:8.1f} tokens/s  ({args.prefill} tokens)")
    if args.skip_hf:
        return
    del model
    import transformers
    hf = transformers.AutoModelForCausalLM.from_pretrained(args.checkpoint, dtype=torch.bfloat16)
    hf.eval()
    with torch.inference_mode():
        hf_prefill(hf, short)                                            # warm-up
        hf_prefill_tps, hf_logits = hf_prefill(hf, prompt)
        hf_decode_tps = hf_decode(hf, short, args.hf_decode_steps)
    agree = (hf_logits - ours_logits).abs().max().item()
    print(f"transformers {transformers.__version__} decode  {hf_decode_tps:8.2f} tokens/s   "
          f"prefill {hf_prefill_tps:8.1f} tokens/s")
    print(f"ratio (qwen3mini / transformers): decode {ours_decode_tps / hf_decode_tps:.2f}x, "
          f"prefill {ours_prefill_tps / hf_prefill_tps:.2f}x")
    print(f"last-token logits, max |qwen3mini - transformers| = {agree:.3g} "
          f"(argmax {'agrees' if hf_logits.argmax() == ours_logits.argmax() else 'DIFFERS'})")


if __name__ == "__main__":
    main()
