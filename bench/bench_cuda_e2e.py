"""End-to-end GPU inference on a Qwen3-0.6B-shaped model (random weights, bf16): qwen3mini vs transformers.

    python bench/bench_cuda_e2e.py [--batch 256 --min-len 100 --max-len 1024 --min-new 100 --max-new 1024]
    python bench/bench_cuda_e2e.py --skip parity,batch1,batched --peer-batches 1,64     # part 4 alone
    python bench/bench_cuda_e2e.py --device cpu --preset tiny --skip parity,batch1,batched --peer-steps 8

1. parity: our logits (CUDA backend) vs transformers' on the same weights (saved by checkpoint.save_model and
   loaded with from_pretrained), and greedy continuations compared token by token;
2. batch-1 decode tokens/s: the fused decode step (ops.cuda.CudaDecodeStep) and the op path, eager and
   CUDA-graph-replayed (the fused graph also as GraphedDecodeStep.greedy_step, the argmax inside the graph),
   transformers' generate, and the bandwidth bound (weight + KV bytes per token over the measured
   device-to-device copy bandwidth; and weight bytes alone), with kernels per step from a profile;
3. batched generation: B prompts of random lengths, each with a random number of new tokens (no early stop):
   ours (generate_completions: packed prefill + graph decode, finished rows retired) vs transformers' generate
   (left padding);
4. greedy decode at batch 1 and 64 (equal prompts, prefill excluded): ours (generate_completions) vs the
   strongest transformers configurations a user would pick for GPU decode: a gpt-fast-style loop (StaticCache,
   the step compiled with torch.compile(mode="reduce-overhead"), i.e. CUDA graphs), generate with
   cache_implementation="static" (which compiles its decode step), and generate with its default dynamic cache
   (eager). Each ratio names its peer.
"""
import argparse
import tempfile
import time

import torch

from bench_cuda_profile import kernel_breakdown
from qwen3mini import ops
from qwen3mini.checkpoint import save_model
from qwen3mini.config import PRESETS
from qwen3mini.cuda_graphs import GraphedDecodeStep
from qwen3mini.generation import KVCache, generate_completions
from qwen3mini.model import Qwen3ForCausalLM


def copy_bandwidth():
    src = torch.randn(512 * 2**20 // 4, device="cuda")
    dst = torch.empty_like(src)
    for _ in range(3):
        dst.copy_(src)
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(20):
        dst.copy_(src)
    end.record()
    torch.cuda.synchronize()
    return 2 * src.numel() * 4 * 20 / (start.elapsed_time(end) * 1e-3)


def build_models(preset, device="cuda"):
    config = PRESETS[preset]
    torch.manual_seed(0)
    model = Qwen3ForCausalLM(config).to(device)          # normal(0, 0.02) init; the rotary buffer stays fp32
    for p in model.parameters():
        p.requires_grad_(False)
        p.data = p.data.to(torch.bfloat16)
    model.eval()
    from transformers import AutoModelForCausalLM
    with tempfile.TemporaryDirectory() as directory:
        save_model(model, directory)
        hf = AutoModelForCausalLM.from_pretrained(directory, dtype=torch.bfloat16).to(device).eval()
    return model, hf


def synchronize():
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def sync_time(fn):
    synchronize()
    t0 = time.perf_counter()
    result = fn()
    synchronize()
    return time.perf_counter() - t0, result


@torch.no_grad()
def parity(model, hf, vocab):
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(0, vocab, (2, 64), generator=g).cuda()
    ours = model(ids).float()
    theirs = hf(ids).logits.float()
    rel = ((ours - theirs).norm() / theirs.norm()).item()
    with ops.backend("reference"):  # the same model on the plain PyTorch ops: the bf16 noise floor
        rel_ref = ((model(ids).float() - theirs).norm() / theirs.norm()).item()
    greedy_ours = model.generate(ids[:1], max_new_tokens=32, stop_token_ids=[])[0, 64:]
    greedy_hf = hf.generate(ids[:1], max_new_tokens=32, min_new_tokens=32, do_sample=False,
                            pad_token_id=0)[0, 64:]
    agree = int((greedy_ours == greedy_hf).cumprod(0).sum())
    print(f"parity: logits rel diff {rel:.2e} (reference ops on the GPU: {rel_ref:.2e}); greedy tokens identical for the first {agree}/32", flush=True)
    return rel, agree


@torch.no_grad()
def decode_batch1(model, hf, vocab, copy_bw, prompt_len=128, steps=256, with_hf=True):
    """Batch-1 greedy decode, tokens/s: the fused decode step (CudaDecoder) and the op path (model.decode_step),
    each eager and graph-replayed; transformers' generate.
    Then one profiled step of each graph: kernels per step and where the time goes."""
    g = torch.Generator().manual_seed(2)
    prompt = torch.randint(0, vocab, (prompt_len,), generator=g).tolist()
    cache = KVCache.for_model(model, 1, prompt_len + steps + 8)
    fused_eager = ops.decode_step(model, cache)
    assert fused_eager is not None, "the CUDA backend offers no fused decode step for this model"
    fused_graph = GraphedDecodeStep(model, cache)
    steppers = {"op path, eager": lambda t: model.decode_step(t, cache),
                "fused, eager": fused_eager.step,
                "op path, graph": GraphedDecodeStep(model, cache, fused=False).step,
                "fused, graph": fused_graph.step,
                "fused, graph, greedy_step": fused_graph.greedy_step}

    def rate(name):
        step = steppers[name]
        greedy = name.endswith("greedy_step")   # (the argmax is in the graph)
        cache.reset()
        token = model.prefill([prompt], cache).argmax(-1)
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        for _ in range(steps):
            token = step(token) if greedy else step(token).argmax(-1)
        torch.cuda.synchronize()
        return steps / (time.perf_counter() - t0)

    results = {}
    for name in steppers:
        rate(name)                                        # warm-up (and graph capture)
        results[name] = max(rate(name), rate(name))       # best of two: the slower one met a hiccup
    if with_hf:
        results["transformers"] = hf_generate_rate(hf, torch.tensor([prompt], device="cuda"), steps, "dynamic")
    weight_bytes = sum(p.numel() * p.element_size() for p in model.parameters())
    config = model.config
    kv_bytes = (2 * config.num_hidden_layers * config.num_key_value_heads * config.head_dim * 2
                * (prompt_len + steps / 2))
    bound, weights_bound = copy_bw / (weight_bytes + kv_bytes), copy_bw / weight_bytes
    token = torch.zeros(1, dtype=torch.long, device="cuda")
    kernels = {}
    for name in ("op path, graph", "fused, graph"):
        cache.reset()
        model.prefill([prompt], cache)
        busy, kernels[name] = kernel_breakdown(lambda: steppers[name](token), f"one decode step, {name}", top=12)
        print(f"  {1e6 / results[name]:.0f} us per token wall, {busy:.0f} us of it in kernels")
    print(f"batch-1 decode ({prompt_len}-token prompt, {steps} steps); bound {bound:.0f} tok/s "
          f"({(weight_bytes + kv_bytes) / 1e9:.2f} GB/token at {copy_bw / 1e12:.2f} TB/s), weights alone "
          f"{weights_bound:.0f} tok/s:")
    for name, value in results.items():
        extra = f", {kernels[name]} kernels/step" if name in kernels else ""
        print(f"  {name:30s} {value:7.0f} tok/s  {value / bound:5.1%} of the bound "
              f"({value / weights_bound:.1%} of weights alone){extra}")
    if with_hf:
        best = results["fused, graph, greedy_step"]
        print(f"  fused graph, greedy_step = {best / results['transformers']:.0f}x transformers' generate (dynamic "
              f"cache, eager; the compiled peers: part 4), {best / results['op path, graph']:.2f}x the op path's "
              f"graph", flush=True)
    return results, bound


def hf_generate(hf, prompts, new, cache):
    """transformers' generate on left-padded prompts, run for ``new`` tokens in every row (min = max, so no row
    stops at an EOS the random model happens to draw). cache: "dynamic" (its default, which grows by
    concatenation) or "static" (pre-allocated; its automatic torch.compile is turned off: compiling for a
    batch of 256 costs minutes of device time that this benchmark does not have)."""
    longest = max(map(len, prompts))
    ids = torch.zeros(len(prompts), longest, dtype=torch.long)
    mask = torch.zeros(len(prompts), longest, dtype=torch.long)
    for i, p in enumerate(prompts):  # left padding, as transformers' generate wants for decoder-only models
        ids[i, longest - len(p):] = torch.tensor(p)
        mask[i, longest - len(p):] = 1
    extra = dict(cache_implementation="static", disable_compile=True) if cache == "static" else {}
    out = hf.generate(ids.cuda(), attention_mask=mask.cuda(), max_new_tokens=new, min_new_tokens=new,
                      do_sample=False, pad_token_id=0, **extra)
    return out.shape


@torch.no_grad()
def batched(model, hf, vocab, batch, min_len, max_len, min_new, max_new, hf_caches):
    """B prompts of random lengths in [min_len, max_len], each with its own random budget of new tokens in
    [min_new, max_new] (same seeded draws for both sides; no early stop). Ours decodes each row exactly its
    budget (finished rows retired); transformers has no per-row budget, so it runs every row to the largest
    budget. Throughput counts only the requested tokens, for both."""
    g = torch.Generator().manual_seed(3)
    lengths = torch.randint(min_len, max_len + 1, (batch,), generator=g).tolist()
    budgets = torch.randint(min_new, max_new + 1, (batch,), generator=g).tolist()
    prompts = [torch.randint(0, vocab, (n,), generator=g).tolist() for n in lengths]
    requested = sum(budgets)
    generate_completions(model, prompts[:2], [4, 2], stop_token_ids=[])  # warm-up
    t_ours, done = sync_time(lambda: generate_completions(model, prompts, budgets, stop_token_ids=[]))
    assert [len(c.tokens) for c in done] == budgets
    del done
    torch.cuda.empty_cache()                         # the KV cache of one side at a time fits in memory
    what = (f"batched generation ({batch} prompts of {min_len}-{max_len} tokens, {min_new}-{max_new} new each, "
            f"{requested} requested tokens)")
    print(f"{what}: ours {t_ours:.2f} s ({requested / t_ours:.0f} tok/s), "
          f"peak memory {torch.cuda.max_memory_allocated() / 2**30:.1f} GiB", flush=True)
    results = {"ours": t_ours}
    for cache in hf_caches:
        hf_generate(hf, prompts[:2], 4, cache)       # warm-up
        torch.cuda.reset_peak_memory_stats()
        t_hf = None
        try:
            t_hf, shape = sync_time(lambda: hf_generate(hf, prompts, max(budgets), cache))
        except torch.cuda.OutOfMemoryError:          # then in two batches of half the size, one after the other
            pass                                     # (outside the handler, so the failed run's tensors are freed)
        if t_hf is None:
            torch.cuda.empty_cache()
            half = batch // 2
            print(f"  transformers ({cache} cache) ran out of memory at {batch} rows; timing it as 2 x {half}")
            t_hf = sum(sync_time(lambda p=p: hf_generate(hf, p, max(budgets), cache))[0]
                       for p in (prompts[:half], prompts[half:]))
            shape = (batch, max(map(len, prompts)) + max(budgets))
        torch.cuda.empty_cache()
        results[f"transformers-{cache}"] = t_hf
        print(f"  transformers ({cache} cache, SDPA, {shape[0]} x {shape[1]} tokens out): {t_hf:.2f} s "
              f"({requested / t_hf:.0f} requested tok/s, peak {torch.cuda.max_memory_allocated() / 2**30:.1f} GiB): "
              f"ours is {t_hf / t_ours:.1f}x faster", flush=True)
    return results


# ---------------------------------------------------------------------------------------------- 4. compiled peers
def hf_generate_rate(hf, ids, steps, cache):
    """Greedy decode tokens/s of transformers' generate over ``ids`` [B, T] (equal lengths, no padding), prefill
    excluded (timed as the difference between ``steps`` and 1 new token). cache: "dynamic" (its default, eager)
    or "static" (a StaticCache, with which generate compiles its decode step by itself)."""
    extra = dict(cache_implementation="static") if cache == "static" else {}
    run = lambda n: hf.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=n, min_new_tokens=n,
                                do_sample=False, pad_token_id=0, **extra)
    run(steps)                                       # warm-up: compilation and graph capture, at the timed shapes
    run(steps)
    t_short, _ = sync_time(lambda: run(1))
    t_long, _ = sync_time(lambda: run(steps))
    return ids.shape[0] * (steps - 1) / (t_long - t_short)


def hf_compiled_loop_rate(hf, ids, steps):
    """Greedy decode tokens/s of a gpt-fast-style loop over transformers (the recipe of transformers' guide to
    static caches and torch.compile): a StaticCache, an eager prefill, then a Python loop over a decode step
    compiled with mode="reduce-overhead" (CUDA graphs) and fullgraph=True. Prefill excluded."""
    from transformers import StaticCache
    batch, prompt_len = ids.shape
    past = StaticCache(config=hf.config, max_cache_len=prompt_len + steps + 1)

    def decode_one(token, cache_position):
        logits = hf(token, cache_position=cache_position, past_key_values=past, use_cache=True).logits
        return logits[:, -1].argmax(-1, keepdim=True)
    step = torch.compile(decode_one, mode="reduce-overhead", fullgraph=True, dynamic=False)

    def rate():
        past.reset()
        logits = hf(ids, cache_position=torch.arange(prompt_len, device=ids.device), past_key_values=past,
                    use_cache=True).logits
        token, position = logits[:, -1].argmax(-1, keepdim=True), torch.tensor([prompt_len], device=ids.device)
        synchronize()
        t0 = time.perf_counter()
        for _ in range(steps):
            token = step(token.clone(), position)     # (clone: the graph's output buffer is reused by the next)
            position += 1
        synchronize()
        return batch * steps / (time.perf_counter() - t0)
    rate()                                           # compilation and CUDA-graph recording
    return max(rate(), rate())


def ours_rate(model, prompts, steps):
    """Greedy decode tokens/s of generate_completions (graph replays, the argmax inside the graph), prefill
    excluded the same way as for transformers' generate."""
    run = lambda n: generate_completions(model, prompts, n, stop_token_ids=[])
    run(steps)
    t_short, _ = sync_time(lambda: run(1))
    t_long, done = sync_time(lambda: run(steps))
    assert all(len(c.tokens) == steps for c in done)
    return len(prompts) * (steps - 1) / (t_long - t_short)


@torch.no_grad()
def decode_vs_compiled_peers(model, hf, vocab, batches, prompt_len, steps):
    g = torch.Generator().manual_seed(4)
    for batch in batches:
        prompts = torch.randint(0, vocab, (batch, prompt_len), generator=g)
        ids = prompts.to(model.device)
        ours = ours_rate(model, prompts.tolist(), steps)
        print(f"greedy decode, batch {batch} ({prompt_len}-token prompts, {steps} new tokens each), prefill "
              f"excluded: ours (generate_completions) {ours:.0f} tok/s", flush=True)
        peers = {"transformers, gpt-fast-style loop (StaticCache + torch.compile reduce-overhead)":
                     lambda: hf_compiled_loop_rate(hf, ids, steps),
                 "transformers generate(cache_implementation='static'), compiled by generate":
                     lambda: hf_generate_rate(hf, ids, steps, "static"),
                 "transformers generate (dynamic cache, eager)": lambda: hf_generate_rate(hf, ids, steps, "dynamic")}
        for name, measure in peers.items():
            try:
                theirs = measure()
            except Exception as error:                # a peer that breaks on this machine must not hide the others
                print(f"  {name}: failed ({type(error).__name__}: {str(error).splitlines()[0][:200]})")
                continue
            print(f"  {name}: {theirs:.0f} tok/s; ours is {ours / theirs:.2f}x this peer", flush=True)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--preset", default="Qwen3-0.6B")
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--min-len", type=int, default=100)
    parser.add_argument("--max-len", type=int, default=1024)
    parser.add_argument("--min-new", type=int, default=100)
    parser.add_argument("--max-new", type=int, default=1024)
    parser.add_argument("--hf-cache", default="static",
                        help="comma-separated: static, dynamic; or none (time only ours)")
    parser.add_argument("--peer-batches", default="1,64", help="comma-separated batch sizes of part 4")
    parser.add_argument("--peer-steps", type=int, default=256, help="new tokens per row in part 4")
    parser.add_argument("--peer-prompt-len", type=int, default=128)
    parser.add_argument("--device", default="cuda", help="cuda; or cpu for a check of part 4 at tiny sizes")
    parser.add_argument("--skip", default="",
                        help="comma-separated parts to skip: parity, batch1, hf-batch1 (its transformers run), "
                             "batched, peers")
    args = parser.parse_args()
    skip = args.skip.split(",")
    if args.device == "cuda":
        assert "cuda" in ops.available_backends(), "the CUDA backend is not registered (qwen3mini._cuda not built?)"
        print(f"device: {torch.cuda.get_device_name()}  torch {torch.__version__}  preset {args.preset}")
        copy_bw = copy_bandwidth()
    elif not {"parity", "batch1", "batched"} <= set(skip):
        parser.error("--device cpu runs part 4 only: add --skip parity,batch1,batched")
    model, hf = build_models(args.preset, args.device)
    vocab = model.config.vocab_size
    if "parity" not in skip:
        parity(model, hf, vocab)
    if "batch1" not in skip:
        decode_batch1(model, hf, vocab, copy_bw, with_hf="hf-batch1" not in skip)
    if "batched" not in skip:
        batched(model, hf, vocab, args.batch, args.min_len, args.max_len, args.min_new, args.max_new,
                [c for c in args.hf_cache.split(",") if c != "none"])
    if "peers" not in skip:
        decode_vs_compiled_peers(model, hf, vocab, [int(b) for b in args.peer_batches.split(",")],
                                 args.peer_prompt_len, args.peer_steps)


if __name__ == "__main__":
    main()
