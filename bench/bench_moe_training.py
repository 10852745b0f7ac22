"""MoE training at speed (issue 20): the training step of the MoE student against the dense student at equal
active parameters, on one GPU.

The step is bench_training.py's (``Trainer.train_step``: bf16 autocast, fp32 masters, AdamW) on random tokens;
the MoE runs its grouped-GEMM training path (qwen3mini/ops/grouped_moe.py) and, for comparison, the reference
dispatch (``ops.backend("reference")``). The figure of merit is tokens/s times active parameters (per token),
against the dense student's; the issue's goal is at least 0.7.

    python bench/bench_moe_training.py                     # prints a table, writes --json
    python bench/bench_moe_training.py --micro_batch 32 --seq_len 2048
    python bench/bench_moe_training.py --explain       # where compiling the MoE breaks its graph, and the
                                                       # compiled MoE step's kernels by GPU time (no table)
"""
import argparse
import json
import os
import platform
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench.bench_training import bench                                         # noqa: E402
from qwen3mini import ops                                                      # noqa: E402
from qwen3mini.model import Qwen3ForCausalLM                                   # noqa: E402
from qwen3mini.ops.grouped_moe import grouped_mm_available                     # noqa: E402
from qwen3mini.training.distributed import init_distributed                    # noqa: E402
from qwen3mini.training.stage import scratch_config                           # noqa: E402

# (label, shape, compile, the op backend forced during the step or None)
RUNS = [("dense", "student", False, None), ("dense compiled", "student", True, None),
        ("MoE grouped GEMMs", "student-moe", False, None), ("MoE grouped GEMMs compiled", "student-moe", True, None),
        ("MoE reference dispatch", "student-moe", False, "reference")]


def explain(info, micro_batch, seq_len, vocab=16384):
    """The compiler's view of the MoE student's forward (graphs, breaks and why), then the compiled training
    step under the profiler: its kernels by GPU time, the lead for why compiling helps the MoE less."""
    model = Qwen3ForCausalLM(scratch_config("student-moe", vocab, seq_len)).cuda()
    ids = torch.randint(vocab, (micro_batch, seq_len), device="cuda")
    with torch.autocast("cuda", dtype=torch.bfloat16):
        report = torch._dynamo.explain(model)(ids)
    print(f"graphs {report.graph_count}, graph breaks {report.graph_break_count}, ops {report.op_count}")
    for n, reason in enumerate(report.break_reasons[:12]):
        frame = reason.user_stack[-1] if reason.user_stack else None
        where = f" at {frame.filename}:{frame.lineno}" if frame else ""
        print(f"break {n}: {reason.reason.splitlines()[0][:300]}{where}")
    del model
    torch._dynamo.reset()
    from torch.profiler import ProfilerActivity, profile
    bench(info, "student-moe", True, micro_batch, seq_len, 3, 1)   # compiled and autotuned here, outside the profile
    with profile(activities=[ProfilerActivity.CUDA]) as prof:      # (the compile cache answers this one)
        bench(info, "student-moe", True, micro_batch, seq_len, 1, 3)
    print(prof.key_averages().table(sort_by="self_cuda_time_total", row_limit=25, max_name_column_width=70))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--micro_batch", type=int, default=64)
    parser.add_argument("--seq_len", type=int, default=1024)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--json", default="bench_moe_training.json")
    parser.add_argument("--explain", action="store_true", help="graph breaks and kernel profile instead")
    parser.add_argument("--device", default="cuda", help="cuda (the measurement); cpu runs the script through "
                        "(a check of the script: the CPU has no grouped kernel and its figures mean nothing)")
    args = parser.parse_args(argv)
    if args.explain and args.device != "cuda":
        parser.error("--explain profiles the GPU's kernels: it needs --device cuda")
    info = init_distributed(args.device)
    if args.explain:
        return explain(info, args.micro_batch, args.seq_len)
    name = torch.cuda.get_device_name() if info.device.type == "cuda" else platform.processor() or "CPU"
    print(f"{name}, torch {torch.__version__}; grouped GEMM kernel: {grouped_mm_available(info.device)}",
          flush=True)
    results = []
    for label, shape, compile, forced in RUNS:
        try:
            with ops.backend(forced):                   # (None: the automatic choice)
                r = bench(info, shape, compile, args.micro_batch, args.seq_len, args.warmup, args.steps)
        except Exception as error:                      # (a side that fails to compile: the others still run)
            print(f"{label}: failed: {type(error).__name__}: {str(error).splitlines()[0][:300]}", flush=True)
            continue
        r["label"] = label
        r["active_param_tokens_per_s"] = r["tokens_per_s"] * r["params"]["active"]
        results.append(r)
    dense = max(r["active_param_tokens_per_s"] for r in results if r["shape"] == "student")
    for r in results:
        r["vs_dense"] = r["active_param_tokens_per_s"] / dense
        print(f"{r['label']:28s} active={r['params']['active'] / 1e6:5.2f}M step={r['step_ms']:7.1f} ms "
              f"{r['tokens_per_s'] / 1e6:6.3f}M tok/s  x active params vs the best dense: {r['vs_dense']:.2f}",
              flush=True)
    with open(args.json, "w") as f:
        json.dump({"device": name, "torch": torch.__version__, "results": results}, f,
                  indent=2)


if __name__ == "__main__":
    main()
