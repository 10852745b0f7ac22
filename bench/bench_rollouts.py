"""Rollout throughput (issue 18): generated tokens/s of one RL rollout batch, ours against transformers'
compiled static-cache generation, on the same prompts, batch and lengths.

    python bench/bench_rollouts.py                       # checkpoints/qwen3mini-base on the GPU, 64 questions x 8
    python bench/bench_rollouts.py --model path/to/Qwen3-0.6B --queries 32 --max-new-tokens 1024
    python bench/bench_rollouts.py --device cpu --queries 2 --group 2 --max-new-tokens 8 --repeats 1 --hf-compile false

The batch is what a GRPO step samples: ``--queries`` task questions (a mix of qwen3mini.tasks families, from
their evaluation sets, at difficulties at or just past the cold start's range) rendered in thinking mode, each repeated
``--group`` times: prompts of unequal lengths. Every side samples at T=1 (no top-k, no top-p) and generates
exactly ``--max-new-tokens`` tokens in every row (stop ids ignored), so all sides do identical work. The figure
is generated tokens over the wall time of the whole call (prefill included): the median of ``--repeats`` calls
after one warm-up call (which compiles and captures graphs).

* ours: ``generate_completions`` (one packed prefill, CUDA-graph decode steps, sampling on the device). Timed
  once more with the chat's real stop ids, the RL case where finished rows retire (mean completion length shown),
  and on a GPU once more over the op path (``QWEN3MINI_FUSED_STEP=0``: ``model.decode_step`` captured instead of
  the backend's ``CudaBatchDecodeStep``), a before/after of that step.
* transformers ``generate(cache_implementation="static")``: with a static cache, generate compiles the model's
  forward for the decode steps by itself (transformers 5.x's documented way: no compile_config given, so the
  default ``CompileConfig``: inductor, mode="reduce-overhead", i.e. CUDA graphs). Left-padded prompts with their
  attention mask; do_sample, temperature 1, top_k 0, top_p 1, min_new_tokens = max_new_tokens.
* transformers, gpt-fast-style loop: a ``StaticCache``, an eager prefill, then a Python loop over one decode step
  (forward + sampling) compiled with ``torch.compile(mode="reduce-overhead", fullgraph=True)``.

``--profile`` runs our generation once more under the profiler and prints its kernels by GPU time: the sampler
is one kernel (``gumbel_sample_kernel``; ``QWEN3MINI_FUSED_SAMPLER=0`` brings back the PyTorch sampler for a
before/after), and at rollout batches attention decode is ``decode_split_kernel`` alone (no combine).

If a transformers side runs out of GPU memory, it runs the batch in 2, 4, ... equal chunks one after the other
(the same total work) and says so. Writes the table as JSON to ``--out`` too.
"""
import argparse
import inspect
import itertools
import json
import os
import statistics
import sys
import time

import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
import qwen3mini  # noqa: E402
from bench_cuda_profile import kernel_breakdown  # noqa: E402
from qwen3mini import ops  # noqa: E402
from qwen3mini.chat import ChatTokens, render  # noqa: E402
from qwen3mini.generation import SamplingParams, generate_completions  # noqa: E402
from qwen3mini.tasks.splits import evaluation_set  # noqa: E402

# (family, difficulty): at or just past the cold start's range (bench/RESULTS.md), where RL has headroom.
TASK_MIX = [("add", 7), ("mul", 4), ("sort", 12), ("countdown", 4), ("chain", 6), ("linear", 5)]


def rollout_prompts(tokenizer, queries: int, group: int) -> list:
    """``queries`` questions cycling through TASK_MIX (item i // len(TASK_MIX) of its family's evaluation set),
    rendered as a thinking-mode user turn, each repeated ``group`` times in a row, as GRPO samples a group."""
    sets = [evaluation_set(family, difficulty) for family, difficulty in TASK_MIX]
    prompts = []
    for i in range(queries):
        items = sets[i % len(sets)]
        question = items[(i // len(sets)) % len(items)].question
        prompts += [render(tokenizer, [{"role": "user", "content": question}], think=True)] * group
    return prompts


def synchronize(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def timed(run, device):
    synchronize(device)
    began = time.perf_counter()
    result = run()
    synchronize(device)
    return time.perf_counter() - began, result


def median_seconds(run, repeats: int, device) -> float:
    """Median wall time of ``repeats`` calls, after one warm-up call (compilation, graph capture, allocator)."""
    run()
    return statistics.median(timed(run, device)[0] for _ in range(repeats))


def left_padded(prompts, pad: int, device):
    """[B, T] ids and attention mask, padded on the left as transformers' generate wants for decoder-only
    models; every row to the longest prompt of the whole batch, so equal chunks of it have equal shapes."""
    longest = max(map(len, prompts))
    ids = torch.full((len(prompts), longest), pad, dtype=torch.long)
    mask = torch.zeros(len(prompts), longest, dtype=torch.long)
    for row, prompt in enumerate(prompts):
        ids[row, longest - len(prompt):] = torch.tensor(prompt)
        mask[row, longest - len(prompt):] = 1
    return ids.to(device), mask.to(device)


def hf_generate(hf, new: int, pad: int, compiled: bool):
    """transformers' generate with a static cache, sampling at T=1, exactly ``new`` tokens per row. compiled:
    leave generate's own compilation on (on a CPU it must be asked for: ``_compile_all_devices``, the flag that
    CompileConfig's source keeps for testing on other devices); False: disable_compile."""
    from transformers import CompileConfig
    if not compiled:
        extra = dict(disable_compile=True)
    elif hf.device.type == "cpu":
        config = CompileConfig()
        config._compile_all_devices = True
        extra = dict(compile_config=config)
    else:
        extra = {}                                       # the documented default: generate compiles by itself

    def run(ids, mask):
        out = hf.generate(ids, attention_mask=mask, do_sample=True, temperature=1.0, top_k=0, top_p=1.0,
                          max_new_tokens=new, min_new_tokens=new, pad_token_id=pad,
                          cache_implementation="static", **extra)
        assert out.shape == (ids.shape[0], ids.shape[1] + new), out.shape
        return out[:, ids.shape[1]:]
    return run


def sample(logits):
    """One token per row from softmax(logits) (T=1), as gpt-fast samples inside its compiled step: the argmax
    of p / Exp(1) noise is a draw from p, with no host synchronisation (torch.multinomial may sync)."""
    probs = torch.softmax(logits.float(), dim=-1)
    return (probs / torch.empty_like(probs).exponential_(1)).argmax(-1, keepdim=True)


def hf_compiled_loop(hf, rows: int, width: int, new: int, compiled: bool):
    """The gpt-fast-style loop over transformers (its guide to static caches and torch.compile), adapted to
    sampling and left padding: one StaticCache for ``rows`` x (``width`` + ``new``) positions, built once so the
    compiled step is reused across calls; an eager prefill; then ``new - 1`` calls of a step compiled with
    mode="reduce-overhead" (CUDA graphs) and fullgraph=True. Each row's position ids count its real tokens
    (mask.cumsum, as generate computes them); the 2-D mask covers the whole cache (causality hides the future)."""
    from transformers import StaticCache
    past = StaticCache(config=hf.config, max_cache_len=width + new)
    parameters = inspect.signature(hf.forward).parameters
    cache_arg = "cache" if "cache" in parameters else "past_key_values"        # (transformers 5.24 / 5.17)

    def forward(ids, mask, position, **extra):
        return hf(ids, attention_mask=mask, position_ids=position, use_cache=True, **{cache_arg: past},
                  **extra).logits[:, -1]

    def decode_one(token, mask, position):
        return sample(forward(token, mask, position))
    step = decode_one
    if compiled:
        step = torch.compile(decode_one, mode="reduce-overhead", fullgraph=True, dynamic=False)

    def run(ids, mask):
        past.reset()
        mask = torch.cat([mask, mask.new_ones(rows, new)], dim=1)
        out = torch.empty(rows, new, dtype=torch.long, device=ids.device)
        out[:, :1] = sample(forward(ids, mask, (mask[:, :width].cumsum(-1) - 1).clamp(min=0), logits_to_keep=1))
        position = mask[:, :width].sum(-1, keepdim=True)
        for i in range(1, new):
            out[:, i:i + 1] = step(out[:, i - 1:i].clone(), mask, position)  # copied out before the next replay
            position += 1
        return out
    return run


def time_hf(name, make_run, ids, mask, repeats, device) -> dict:
    """Time a transformers side on the whole batch; on running out of GPU memory, in 2, 4, ... equal chunks one
    after the other (``make_run(rows)`` builds the side for chunks of ``rows``). Counts torch's CUDA-graph skips
    meanwhile: a compiled peer that silently ran without graphs would show there."""
    from torch._dynamo.utils import counters
    rows, chunks = ids.shape[0], 1
    while True:
        skips = counters["inductor"]["cudagraph_skips"]
        run = make_run(rows // chunks)
        parts = list(zip(ids.split(rows // chunks), mask.split(rows // chunks)))
        try:
            seconds = median_seconds(lambda: [run(i, m) for i, m in parts], repeats, device)
            return dict(name=name, seconds=seconds, chunks=chunks,
                        cudagraph_skips=counters["inductor"]["cudagraph_skips"] - skips)
        except torch.cuda.OutOfMemoryError:
            if (rows // chunks) % 2:
                raise
        del run                                          # (its cache; the failed call's tensors went with the error)
        torch.cuda.empty_cache()
        chunks *= 2
        print(f"  {name}: out of memory at {2 * rows // chunks} rows; running {chunks} x {rows // chunks}",
              flush=True)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default=os.path.join(ROOT, "checkpoints", "qwen3mini-base"))
    p.add_argument("--device", default="cuda")
    p.add_argument("--queries", type=int, default=64)
    p.add_argument("--group", type=int, default=8, help="samples per question (rows = queries x group)")
    p.add_argument("--max-new-tokens", type=int, default=512)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--hf-compile", choices=["true", "false"], default="true",
                   help="false: transformers eager (a quick check on a CPU, where inductor is slow)")
    p.add_argument("--peers", default="generate,loop", help="comma-separated transformers sides: generate, loop")
    p.add_argument("--profile", action="store_true",
                   help="also print where the GPU time of our generation goes, kernel by kernel (one more run)")
    p.add_argument("--out", default=os.path.join(ROOT, "runs", "bench_rollouts.json"))
    args = p.parse_args()
    device, new, compiled = torch.device(args.device), args.max_new_tokens, args.hf_compile == "true"
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    if device.type == "cuda" and "cuda" not in ops.available_backends():
        p.error("the CUDA backend is not registered (build it: bench/bench_cuda_device.sh build)")

    import transformers
    from transformers import AutoModelForCausalLM
    model = qwen3mini.load_model(args.model, device=device, dtype=dtype)
    tokenizer = qwen3mini.load_tokenizer(args.model)
    prompts = rollout_prompts(tokenizer, args.queries, args.group)
    lengths = [len(prompt) for prompt in prompts]
    rows, generated = len(prompts), len(prompts) * new
    where = torch.cuda.get_device_name() if device.type == "cuda" else "CPU"
    print(f"{where} · torch {torch.__version__} · transformers {transformers.__version__} · {args.model} "
          f"({dtype}) · {rows} rows ({args.queries} questions x {args.group}), prompts {min(lengths)}-"
          f"{max(lengths)} tokens (mean {statistics.mean(lengths):.0f}), {new} new tokens each, T=1", flush=True)

    seeds = itertools.count(args.seed)                   # a fresh seed per call, as successive RL steps draw

    def ours(stops=()):
        return generate_completions(model, prompts, new, SamplingParams(temperature=1.0, seed=next(seeds)),
                                    stop_token_ids=list(stops))
    sides = [dict(name="ours: generate_completions", seconds=median_seconds(ours, args.repeats, device))]
    stops = ChatTokens.of(tokenizer, model.config.eos_token_ids).stops
    seconds, done = timed(lambda: ours(stops=stops), device)
    tokens = sum(c.generated_tokens for c in done)
    real = dict(name="ours, real stop ids (finished rows retire)", seconds=seconds, tokens=tokens,
                tokens_per_s=tokens / seconds, mean_completion=tokens / rows,
                stopped=sum(c.finish_reason == "stop" for c in done))
    if device.type == "cuda":  # the same generation over the op path: what the backend's own batch step gives
        os.environ["QWEN3MINI_FUSED_STEP"] = "0"
        try:
            sides.append(dict(name="ours over the op path (QWEN3MINI_FUSED_STEP=0)",
                              seconds=median_seconds(ours, args.repeats, device)))
            if args.profile:
                kernel_breakdown(ours, f"our generation over the op path, {rows} rows x {new} tokens", top=16)
        finally:
            del os.environ["QWEN3MINI_FUSED_STEP"]
    if args.profile and device.type == "cuda":
        kernel_breakdown(ours, f"our generation, {rows} rows x {new} tokens", top=16)
    del done, model
    if device.type == "cuda":
        torch.cuda.empty_cache()                         # ours' cache and graphs: one side in memory at a time

    hf = AutoModelForCausalLM.from_pretrained(args.model, dtype=dtype).to(device).eval()
    pad = tokenizer.token_to_id["<|endoftext|>"]
    ids, mask = left_padded(prompts, pad, device)
    how = ("compiled by generate", "step compiled reduce-overhead") if compiled else ("eager", "eager step")
    makers = {"generate": (f"transformers generate, static cache, {how[0]}",
                           lambda chunk: hf_generate(hf, new, pad, compiled)),
              "loop": (f"transformers gpt-fast loop, StaticCache, {how[1]}",
                       lambda chunk: hf_compiled_loop(hf, chunk, ids.shape[1], new, compiled))}
    with torch.no_grad():
        for peer in filter(None, args.peers.split(",")):
            name, make_run = makers[peer]
            sides.append(time_hf(name, make_run, ids, mask, args.repeats, device))
            detail = ""
            if peer == "generate":
                sides[-1]["compiled"] = hasattr(hf, "_compiled_call")    # set by generate when it compiles
                detail = f"generate compiled its forward: {sides[-1]['compiled']}; "
            print(f"  {name}: {sides[-1]['seconds']:.2f} s ({detail}CUDA-graph skips: "
                  f"{sides[-1]['cudagraph_skips']})", flush=True)

    ours_rate = generated / sides[0]["seconds"]
    width = max(len(side["name"]) for side in sides + [real])
    print(f"\n{'side':{width}s} {'rows':>9s} {'new/row':>7s} {'seconds':>8s} {'tokens/s':>9s} {'ours/side':>9s}")
    for side in sides:
        side.update(tokens=generated, tokens_per_s=generated / side["seconds"],
                    ours_over_side=ours_rate / (generated / side["seconds"]))
        chunks = side.get("chunks", 1)
        shown = f"{chunks}x{rows // chunks}" if chunks > 1 else str(rows)
        print(f"{side['name']:{width}s} {shown:>9s} {new:7d} {side['seconds']:8.2f} {side['tokens_per_s']:9.0f} "
              f"{side['ours_over_side']:8.2f}x")
    print(f"{real['name']:{width}s} {rows:9d} {real['mean_completion']:7.1f} {real['seconds']:8.2f} "
          f"{real['tokens_per_s']:9.0f}  ({real['stopped']}/{rows} rows stopped; new/row = mean completion)")

    report = dict(device=where, torch=torch.__version__, transformers=transformers.__version__, model=args.model,
                  dtype=str(dtype), rows=rows, queries=args.queries, group=args.group, max_new_tokens=new,
                  repeats=args.repeats, hf_compile=compiled, task_mix=TASK_MIX,
                  prompt_tokens=dict(min=min(lengths), mean=statistics.mean(lengths), max=max(lengths)),
                  sides=sides, ours_real_stops=real)
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out + ".tmp", "w") as f:
        json.dump(report, f, indent=1)
    os.replace(args.out + ".tmp", args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
