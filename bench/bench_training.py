"""Training throughput and model FLOPs utilisation (MFU) of the pre-training step on one GPU.

Times ``Trainer.train_step`` (qwen3mini/training/trainer.py; the step every stage runs: bf16 autocast, fp32
master weights, fused AdamW, gradient clipping, loss read back every step) on random tokens, for the shipped
dense shape ("base"), the ~100M-parameter shape ("100m") and the MoE comparison shape ("base-moe"), with and
without ``torch.compile``. FLOPs per token: 6·N (active matrix parameters incl. lm_head) + 12·L·nH·D·T
(attention, PaLM appendix B). MFU is against the dense bf16 peak of the H100 / H200 SXM datasheet; the bf16
matmul rate this script measures on the same card (8192³) is printed as the practical ceiling.

    python bench/bench_training.py                       # all shapes; prints a table, writes --json
    python bench/bench_training.py --shapes 100m --compile 1
"""
import argparse
import json
import os
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from qwen3mini.model import Qwen3ForCausalLM                                    # noqa: E402
from qwen3mini.training.distributed import init_distributed, wrap_model        # noqa: E402
from qwen3mini.training.optim import Schedule, build_optimizer                 # noqa: E402
from qwen3mini.training.settings import TrainSettings                          # noqa: E402
from qwen3mini.training.stage import scratch_config                            # noqa: E402
from qwen3mini.training.trainer import Trainer                                 # noqa: E402

PEAK_BF16 = 989e12          # H100 and H200 SXM dense bf16 (datasheet)


class RandomBatches:
    def __init__(self, vocab, batch, seq_len, device):
        self.vocab, self.batch, self.seq_len, self.device = vocab, batch, seq_len, device

    def next_batch(self):
        rows = torch.randint(0, self.vocab, (self.batch, self.seq_len + 1), device=self.device)
        return rows[:, :-1], rows[:, 1:]

    def state_dict(self):
        return {}

    def load_state_dict(self, state):
        pass


def matmul_rate(n=8192, repeats=20):
    a, b = (torch.randn(n, n, device="cuda", dtype=torch.bfloat16) for _ in range(2))
    for _ in range(3):
        a @ b
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(repeats):
        a @ b
    end.record()
    torch.cuda.synchronize()
    return 2 * n ** 3 * repeats / (start.elapsed_time(end) / 1e3)


def bench(shape, compile, micro_batch, seq_len, warmup, steps, vocab=16384):
    info = init_distributed("cuda")
    torch.manual_seed(0)
    config = scratch_config(shape, vocab, seq_len)
    model = Qwen3ForCausalLM(config)
    settings = TrainSettings(out_dir="/tmp/bench_training", seq_len=seq_len, micro_batch=micro_batch,
                             steps=warmup + steps, compile=compile, progress=False)
    wrapped = wrap_model(model, info, compile=compile)
    optimizer = build_optimizer(wrapped, 1e-3, 0.1)
    schedule = Schedule("constant", 1e-3, 1e-3, 0, warmup + steps)
    trainer = Trainer(wrapped, optimizer, schedule, settings, info,
                      RandomBatches(vocab, micro_batch, seq_len, info.device))
    t0 = time.perf_counter()
    for _ in range(warmup):
        trainer.train_step()
    torch.cuda.synchronize()
    warmup_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    for _ in range(steps):
        trainer.train_step()
    torch.cuda.synchronize()
    seconds = (time.perf_counter() - t0) / steps
    tokens = micro_batch * seq_len
    flops = config.training_flops_per_token(seq_len) * tokens / seconds
    result = {"shape": shape, "compile": compile, "params": config.num_parameters(), "micro_batch": micro_batch,
              "seq_len": seq_len, "step_ms": seconds * 1e3, "tokens_per_s": tokens / seconds,
              "tflops": flops / 1e12, "mfu": flops / PEAK_BF16, "warmup_s": warmup_s,
              "max_memory_gb": torch.cuda.max_memory_allocated() / 1e9}
    del trainer, wrapped, model, optimizer
    torch._dynamo.reset()
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats()
    return result


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--shapes", default="base,100m,base-moe")
    parser.add_argument("--compile", default="0,1")
    parser.add_argument("--micro_batch", type=int, default=64)
    parser.add_argument("--seq_len", type=int, default=1024)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--json", default="bench_training.json")
    args = parser.parse_args()
    print(f"{torch.cuda.get_device_name()}, torch {torch.__version__}", flush=True)
    ceiling = matmul_rate()
    print(f"bf16 8192^3 matmul: {ceiling / 1e12:.0f} TFLOP/s", flush=True)
    results = []
    for shape in args.shapes.split(","):
        for compile in (bool(int(c)) for c in args.compile.split(",")):
            if shape == "base-moe" and compile:
                continue          # the reference MoE dispatch syncs on the host per layer: nothing to compile
            r = bench(shape, compile, args.micro_batch, args.seq_len, args.warmup, args.steps)
            results.append(r)
            print(f"{shape:9s} compile={int(compile)} params={r['params']['total'] / 1e6:6.1f}M "
                  f"step={r['step_ms']:7.1f} ms  {r['tokens_per_s'] / 1e6:6.3f}M tok/s  "
                  f"{r['tflops']:6.1f} TFLOP/s  MFU={100 * r['mfu']:5.1f}%  "
                  f"(warmup {r['warmup_s']:.0f} s, {r['max_memory_gb']:.1f} GB)", flush=True)
    with open(args.json, "w") as f:
        json.dump({"device": torch.cuda.get_device_name(), "torch": torch.__version__,
                   "matmul_tflops": ceiling / 1e12, "results": results}, f, indent=2)


if __name__ == "__main__":
    main()
