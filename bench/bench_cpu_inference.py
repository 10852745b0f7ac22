"""CPU inference speed: qwen3mini (C++ kernels) vs transformers, same random 0.6B-shaped bf16 checkpoint.

    python bench/bench_cpu_inference.py                   # 2 threads, decode + 512-token prefill, 3 rounds
    python bench/bench_cpu_inference.py --threads 2 --decode-steps 32 --prefill 512 --rounds 5 --backend cpp

Reports tokens/s of batch-1 decode (ours as the chat runs it, through the C++ backend's one-call decode step,
and op by op through ``model.decode_step``) and of one prefill for both implementations, their ratio, and our decode
speed as a fraction of the memory-bandwidth bound. Ours runs twice: with the checkpoint's bf16 weights and with
int8 weights (``load_model(..., quantize="int8")``), whose decode is also measured on the kernels of every
instruction set this CPU executes (``qwen3mini._C.isas()``: avx512, avx2, baseline), bf16 beside it; the int8
model's last-token logits are compared with the bf16 model's (cosine, largest difference). A decode step must
read every weight once, so it cannot
beat (read bandwidth) / (weight bytes per token); the read bandwidth is measured here with the benchmark's
threads (a torch sum over 512 MiB: reads only), and the copy bandwidth beside it (copy_, bytes read + bytes
written, the STREAM convention), which is not a bound on reading. Both models stay loaded and the measurements
alternate, round after round (ours, then transformers, back to back), so that the load of a shared machine
hits both sides alike; each figure is the median over rounds, with its spread. A decode rate is the median
step time of its round. Results go to bench/RESULTS.md by hand.
"""
import argparse
import os
import statistics
import sys
import time

_parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
_parser.add_argument("--threads", type=int, default=2)
_parser.add_argument("--checkpoint", default="/tmp/qwen3mini-bench-0.6b", help="created if missing")
_parser.add_argument("--preset", default="Qwen3-0.6B")
_parser.add_argument("--decode-steps", type=int, default=32)
_parser.add_argument("--hf-decode-steps", type=int, default=16, help="transformers is slower: fewer steps")
_parser.add_argument("--prefill", type=int, default=512, help="prompt length of the prefill benchmark")
_parser.add_argument("--rounds", type=int, default=3, help="alternating measurement rounds")
_parser.add_argument("--backend", default="cpp", help="qwen3mini op backend (cpp or reference)")
_parser.add_argument("--skip-hf", action="store_true", help="only qwen3mini")
_parser.add_argument("--omp-wait", default="brief", choices=["brief", "passive", "active"],
                     help="what idle OpenMP threads do between parallel regions: spin briefly then sleep "
                          "(GOMP_SPINCOUNT=10000), sleep at once (passive) or spin (active). A decode step opens "
                          "~115 parallel regions a few microseconds apart: waking a sleeping thread for each "
                          "costs more than the work, and a spinning thread holds the core that other work on a "
                          "shared machine needs")
args = _parser.parse_args()
# qwen3mini._C and torch share one OpenMP runtime (torch's libgomp), configured at start-up: same for both.
os.environ["OMP_NUM_THREADS"] = str(args.threads)
if args.omp_wait == "brief":
    os.environ["GOMP_SPINCOUNT"] = "10000"
    os.environ.pop("OMP_WAIT_POLICY", None)
else:
    os.environ["OMP_WAIT_POLICY"] = args.omp_wait.upper()

import torch  # noqa: E402

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import qwen3mini  # noqa: E402
from qwen3mini import ops  # noqa: E402
from qwen3mini.checkpoint import save_model  # noqa: E402
from qwen3mini.config import PRESETS  # noqa: E402
from qwen3mini.generation import KVCache, fast_decode_step  # noqa: E402
from qwen3mini.model import Qwen3ForCausalLM  # noqa: E402
from qwen3mini.ops.decode_step import named_weights  # noqa: E402


def _best_time(fn, repeats=5) -> float:
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def memory_bandwidth(nbytes=512 << 20) -> tuple:
    """(copy, read) bytes per second on a tensor far larger than the caches: a copy counting the bytes read
    and written (STREAM 'copy', for reference), and a sum (reads only: the decode bound's definition)."""
    src = torch.ones(nbytes // 4)
    dst = torch.zeros_like(src)
    return 2 * nbytes / _best_time(lambda: dst.copy_(src)), nbytes / _best_time(src.sum)


def median_rate(step, steps) -> float:
    """Steps per second from the median step time (robust to a stray slow step on a shared machine)."""
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    return 1.0 / sorted(times)[len(times) // 2]


def make_checkpoint(path, preset):
    if os.path.exists(os.path.join(path, "config.json")):
        return
    print(f"writing a random {preset} checkpoint (bf16) to {path} ...", flush=True)
    torch.manual_seed(0)
    model = Qwen3ForCausalLM(PRESETS[preset]).to(torch.bfloat16)
    save_model(model, path)


def weight_bytes_per_token(model) -> int:
    """Every weight the decode step reads is read once per decoded token (the tied embedding once, as the output
    head; an int8 head instead of it); the embedding lookup of the input token itself is one row and is
    ignored."""
    return sum(t.numel() * t.element_size() for name, t in named_weights(model).items()
               if name != "model.embed_tokens.weight")


# ---------------------------------------------------------------- qwen3mini
def ours_decode(model, prompt, steps, op_path=False):
    """Batch-1 decode as the chat runs it (``generation.fast_decode_step``: the C++ backend's one-call step), or
    with ``op_path`` through ``model.decode_step`` one op at a time."""
    cache = KVCache.for_model(model, 1, len(prompt) + steps + 2)
    decoder = None if op_path else fast_decode_step(model, cache)
    decode = (lambda t: model.decode_step(t, cache)) if decoder is None else decoder.step
    logits = model.prefill([prompt], cache)
    token = logits.argmax(-1)
    decode(token)                                         # warm-up step (allocations, first touch)
    state = {"token": token}

    def step():
        state["token"] = decode(state["token"]).argmax(-1)
    return median_rate(step, steps)


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
    state = {"token": out.logits[:, -1].argmax(-1, keepdim=True)}

    def step():
        logits = model(state["token"], past_key_values=cache, use_cache=True).logits
        state["token"] = logits[:, -1].argmax(-1, keepdim=True)
    return median_rate(step, steps)


def hf_prefill(model, prompt):
    ids = torch.tensor([prompt])
    start = time.perf_counter()
    logits = model(ids, use_cache=False, logits_to_keep=1).logits[0, -1]
    return len(prompt) / (time.perf_counter() - start), logits.float()


def load_hf(path):
    import transformers
    hf = transformers.AutoModelForCausalLM.from_pretrained(path, dtype=torch.bfloat16)
    return hf.eval()


def spread(values, fmt) -> str:
    """'median (min-max)' of one figure over the rounds."""
    return f"{statistics.median(values):{fmt}} ({min(values):{fmt}}-{max(values):{fmt}})"


def kernel_isas() -> list:
    """The instruction sets whose C++ kernels this CPU executes, best first; [None] for another backend."""
    if args.backend != "cpp":
        return [None]
    from qwen3mini import _C
    return _C.isas()


def use_isa(isa):
    if isa is not None:
        from qwen3mini import _C
        _C.set_isa(isa)


def main():
    torch.set_num_threads(args.threads)
    make_checkpoint(args.checkpoint, args.preset)
    ops.use_backend(args.backend)
    model = qwen3mini.load_model(args.checkpoint, dtype=torch.bfloat16)
    int8 = qwen3mini.load_model(args.checkpoint, dtype=torch.bfloat16, quantize="int8")
    weight_bytes, int8_bytes = weight_bytes_per_token(model), weight_bytes_per_token(int8)
    hf = None if args.skip_hf else load_hf(args.checkpoint)
    generator = torch.Generator().manual_seed(1)
    prompt = torch.randint(0, 150000, (args.prefill,), generator=generator).tolist()
    short = prompt[:16]
    isas = kernel_isas()
    peer = "" if hf is None else f", transformers {sys.modules['transformers'].__version__}"
    print(f"machine: {os.cpu_count()} logical CPUs, {args.threads} threads (OpenMP wait: {args.omp_wait}), "
          f"torch {torch.__version__}{peer}, backend {args.backend}, kernels of {', '.join(map(str, isas))}; "
          f"weights {weight_bytes / 1e9:.3f} GB per token in bf16, {int8_bytes / 1e9:.3f} GB in int8")
    rounds = []
    with torch.inference_mode():
        ours_prefill(model, short)                                       # warm-up
        ours_prefill(int8, short)
        if hf is not None:
            hf_prefill(hf, short)
        for r in range(args.rounds):
            row = {"load": os.getloadavg()[0]}
            copy_bandwidth, row["bandwidth"] = memory_bandwidth()
            row["bound"], row["int8_bound"] = row["bandwidth"] / weight_bytes, row["bandwidth"] / int8_bytes
            for isa in isas[1:] + isas[:1]:                              # the best (the default) last
                use_isa(isa)
                row[f"{isa} bf16"] = ours_decode(model, short, args.decode_steps)
                row[f"{isa} int8"] = ours_decode(int8, short, args.decode_steps)
            row["ours_decode"], row["int8_decode"] = row[f"{isas[0]} bf16"], row[f"{isas[0]} int8"]
            row["ours_op_path"] = ours_decode(model, short, args.decode_steps, op_path=True)
            if hf is not None:
                row["hf_decode"] = hf_decode(hf, short, args.hf_decode_steps)
            row["ours_prefill"], ours_logits = ours_prefill(model, prompt)
            row["int8_prefill"], int8_logits = ours_prefill(int8, prompt)
            if hf is not None:
                row["hf_prefill"], hf_logits = hf_prefill(hf, prompt)
            line = (f"round {r + 1} (load {row['load']:.1f}): read {row['bandwidth'] / 1e9:.1f} GB/s (copy "
                    f"{copy_bandwidth / 1e9:.1f}), bound {row['bound']:.2f} tok/s (int8 {row['int8_bound']:.2f}) | "
                    f"decode ours {row['ours_decode']:.2f} tok/s ({100 * row['ours_decode'] / row['bound']:.0f}% "
                    f"of bound; op path {row['ours_op_path']:.2f}), int8 {row['int8_decode']:.2f} "
                    f"({100 * row['int8_decode'] / row['int8_bound']:.0f}%)")
            line += "".join(f", {isa} {row[isa + ' bf16']:.2f}/{row[isa + ' int8']:.2f}" for isa in isas[1:])
            if hf is not None:
                line += (f", transformers {row['hf_decode']:.2f} ({row['ours_decode'] / row['hf_decode']:.2f}x) | "
                         f"prefill ours {row['ours_prefill']:.1f} (int8 {row['int8_prefill']:.1f}), transformers "
                         f"{row['hf_prefill']:.1f} tok/s ({row['ours_prefill'] / row['hf_prefill']:.2f}x)")
            else:
                line += f" | prefill ours {row['ours_prefill']:.1f} (int8 {row['int8_prefill']:.1f}) tok/s"
            print(line, flush=True)
            rounds.append(row)

    def column(f):
        return [f(row) for row in rounds]
    print(f"\nmedian (min-max) over {args.rounds} rounds; load average {spread(column(lambda r: r['load']), '.1f')}")
    print(f"read bandwidth {spread(column(lambda r: r['bandwidth'] / 1e9), '.1f')} GB/s; "
          f"bound {spread(column(lambda r: r['bound']), '.2f')} tokens/s in bf16, "
          f"{spread(column(lambda r: r['int8_bound']), '.2f')} in int8")
    print(f"qwen3mini decode (the {isas[0]} kernels) {spread(column(lambda r: r['ours_decode']), '.2f')} tokens/s, "
          f"{spread(column(lambda r: 100 * r['ours_decode'] / r['bound']), '.0f')}% of the bound")
    print(f"qwen3mini decode, int8 weights {spread(column(lambda r: r['int8_decode']), '.2f')} tokens/s, "
          f"{spread(column(lambda r: 100 * r['int8_decode'] / r['int8_bound']), '.0f')}% of its bound, "
          f"{spread(column(lambda r: r['int8_decode'] / r['ours_decode']), '.2f')}x bf16")
    for isa in isas[1:]:
        print(f"qwen3mini decode on the {isa} kernels: bf16 {spread(column(lambda r: r[isa + ' bf16']), '.2f')}, "
              f"int8 {spread(column(lambda r: r[isa + ' int8']), '.2f')} tokens/s")
    print(f"qwen3mini decode, op by op (model.decode_step) {spread(column(lambda r: r['ours_op_path']), '.2f')} "
          f"tokens/s; the one-call step is {spread(column(lambda r: r['ours_decode'] / r['ours_op_path']), '.2f')}x that")
    print(f"qwen3mini prefill {spread(column(lambda r: r['ours_prefill']), '.1f')} tokens/s ({args.prefill} "
          f"tokens), int8 {spread(column(lambda r: r['int8_prefill']), '.1f')}")
    cosine = torch.nn.functional.cosine_similarity(ours_logits, int8_logits, dim=0).item()
    largest = ours_logits.abs().max().item()
    print(f"last-token logits, int8 against bf16: cosine {cosine:.5f}, max |difference| "
          f"{(int8_logits - ours_logits).abs().max().item():.3g} (max |bf16 logit| {largest:.3g}; "
          f"argmax {'agrees' if int8_logits.argmax() == ours_logits.argmax() else 'DIFFERS'})")
    if hf is None:
        return
    print(f"transformers decode  {spread(column(lambda r: r['hf_decode']), '.2f')} tokens/s (weights read at "
          f"{spread(column(lambda r: r['hf_decode'] * weight_bytes / 1e9), '.1f')} GB/s)")
    print(f"transformers prefill {spread(column(lambda r: r['hf_prefill']), '.1f')} tokens/s")
    print(f"ratio (qwen3mini / transformers, per round): decode "
          f"{spread(column(lambda r: r['ours_decode'] / r['hf_decode']), '.2f')}x (int8 "
          f"{spread(column(lambda r: r['int8_decode'] / r['hf_decode']), '.2f')}x), prefill "
          f"{spread(column(lambda r: r['ours_prefill'] / r['hf_prefill']), '.2f')}x (int8 "
          f"{spread(column(lambda r: r['int8_prefill'] / r['hf_prefill']), '.2f')}x)")
    agree = (hf_logits - ours_logits).abs().max().item()
    print(f"last-token logits, max |qwen3mini - transformers| = {agree:.3g} "
          f"(argmax {'agrees' if hf_logits.argmax() == ours_logits.argmax() else 'DIFFERS'})")


if __name__ == "__main__":
    main()
