"""Training throughput and model FLOPs utilisation (MFU) of the pre-training step, on one GPU or several.

Times ``Trainer.train_step`` (qwen3mini/training/trainer.py; the step every stage runs: bf16 autocast, fp32
master weights, fused AdamW, gradient clipping, loss read back every step) on random tokens, for the shipped
dense shape ("base"), the ~100M-parameter shape ("100m"), the MoE comparison shape ("base-moe") or any preset of
``qwen3mini.config.PRESETS``, with and without ``torch.compile``. FLOPs per token: 6·N (active matrix parameters
incl. lm_head) + 12·L·nH·D·T (attention, PaLM appendix B). MFU is per GPU, against the dense bf16 peak of the
H100 / H200 SXM datasheet; the bf16 matmul rate this script measures on the same card (8192³) is printed as the
practical ceiling.

Under ``torchrun`` every process is one GPU's data-parallel rank (``--parallel ddp``: a replica each;
``fsdp``: FSDP2, parameters, gradients and optimizer state sharded): tokens/s counts the global batch
(micro_batch x grad_accum x processes sequences a step), the memory is the largest of any rank's, and rank 0
prints and writes the JSON. The batches are drawn per step as one global batch that each rank takes its own
micro-batches of, so a run on N processes and a run on one process with ``--grad_accum N`` train on the same
tokens and their per-step losses (``losses`` in the JSON) can be set side by side (``bench/scaling_table.py``).

    python bench/bench_training.py                       # all shapes; prints a table, writes --json
    python bench/bench_training.py --shapes 100m --compile 1
    torchrun --standalone --nproc_per_node 8 bench/bench_training.py --shapes 100m --compile 1 --json ddp8.json
    torchrun --standalone --nproc_per_node 8 bench/bench_training.py --shapes Qwen3-14B --parallel fsdp --micro_batch 1
"""
import argparse
import json
import os
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from qwen3mini.config import PRESETS                                            # noqa: E402
from qwen3mini.model import Qwen3ForCausalLM                                    # noqa: E402
from qwen3mini.training.distributed import (close_distributed, global_max, init_distributed,  # noqa: E402
                                            wrap_model)
from qwen3mini.training.optim import Schedule, build_optimizer                 # noqa: E402
from qwen3mini.training.settings import TrainSettings                          # noqa: E402
from qwen3mini.training.stage import scratch_config                            # noqa: E402
from qwen3mini.training.trainer import Trainer                                 # noqa: E402

PEAK_BF16 = 989e12          # H100 and H200 SXM dense bf16 (datasheet)


class RandomBatches:
    """Random token rows: each optimizer step's global batch (``ranks`` x ``grad_accum`` micro-batches) drawn
    from a generator seeded by the step, of which a rank takes its own ``grad_accum`` micro-batches."""

    def __init__(self, vocab, batch, seq_len, info, grad_accum=1):
        self.vocab, self.batch, self.seq_len, self.info, self.grad_accum = vocab, batch, seq_len, info, grad_accum
        self.calls = 0

    def next_batch(self):
        step, micro = divmod(self.calls, self.grad_accum)
        self.calls += 1
        generator = torch.Generator(self.info.device).manual_seed(step)
        rows = torch.randint(0, self.vocab, (self.info.world_size * self.grad_accum, self.batch, self.seq_len + 1),
                             generator=generator, device=self.info.device)[self.info.rank * self.grad_accum + micro]
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


def bench(info, shape, compile, micro_batch, seq_len, warmup, steps, parallel="ddp", grad_accum=1):
    cuda = info.device.type == "cuda"
    torch.manual_seed(0)
    vocab = PRESETS[shape].vocab_size if shape.startswith("Qwen3") else 16384     # the released shapes keep theirs
    config = scratch_config(shape, vocab, seq_len)
    with info.device:      # built where it trains: a shape for FSDP2 may not fit the host once per process
        model = Qwen3ForCausalLM(config)
    settings = TrainSettings(out_dir="/tmp/bench_training", seq_len=seq_len, micro_batch=micro_batch,
                             grad_accum=grad_accum, steps=warmup + steps, compile=compile, parallel=parallel,
                             progress=False)
    wrapped = wrap_model(model, info, parallel=parallel, compile=compile)
    optimizer = build_optimizer(wrapped, 1e-3, 0.1)
    schedule = Schedule("constant", 1e-3, 1e-3, 0, warmup + steps)
    trainer = Trainer(wrapped, optimizer, schedule, settings, info,
                      RandomBatches(vocab, micro_batch, seq_len, info, grad_accum))
    synchronize = torch.cuda.synchronize if cuda else (lambda: None)
    losses = []
    t0 = time.perf_counter()
    for _ in range(warmup):
        losses.append(trainer.train_step()["loss"])
    synchronize()
    warmup_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    for _ in range(steps):
        losses.append(trainer.train_step()["loss"])
    synchronize()
    seconds = (time.perf_counter() - t0) / steps
    tokens = micro_batch * grad_accum * info.world_size * seq_len          # the global batch of a step
    flops_per_gpu = config.training_flops_per_token(seq_len) * tokens / seconds / info.world_size
    memory = global_max(torch.cuda.max_memory_allocated() / 1e9, info.device) if cuda else None
    result = {"shape": shape, "compile": compile, "parallel": parallel, "gpus": info.world_size,
              "params": config.num_parameters(), "micro_batch": micro_batch, "grad_accum": grad_accum,
              "seq_len": seq_len, "step_ms": seconds * 1e3, "tokens_per_s": tokens / seconds,
              "tflops_per_gpu": flops_per_gpu / 1e12, "mfu": flops_per_gpu / PEAK_BF16, "warmup_s": warmup_s,
              "max_memory_gb": memory, "losses": losses}
    del trainer, wrapped, model, optimizer
    torch._dynamo.reset()
    if cuda:
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    return result


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shapes", default="base,100m,base-moe", help="presets of qwen3mini.config.PRESETS")
    parser.add_argument("--compile", default="0,1")
    parser.add_argument("--parallel", default="ddp", choices=("ddp", "fsdp"), help="with several processes")
    parser.add_argument("--micro_batch", type=int, default=64, help="sequences per micro-batch and process")
    parser.add_argument("--grad_accum", type=int, default=1, help="micro-batches per step and process")
    parser.add_argument("--seq_len", type=int, default=1024)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--device", default="cuda", choices=("cuda", "cpu"), help="cpu: a check of the logic, "
                        "with gloo under torchrun (no matmul ceiling, no memory)")
    parser.add_argument("--json", default="bench_training.json")
    args = parser.parse_args()
    for shape in args.shapes.split(","):
        if shape not in PRESETS:
            parser.error(f"--shapes: {shape!r} is not a preset; expected some of {sorted(PRESETS)}")
    info = init_distributed(args.device)
    say = print if info.is_main else (lambda *_, **__: None)
    cuda = info.device.type == "cuda"
    name = torch.cuda.get_device_name() if cuda else "cpu"
    parallel = f" x {info.world_size} ({args.parallel})" if info.distributed else ""
    say(f"{name}{parallel}, torch {torch.__version__}", flush=True)
    ceiling = matmul_rate() if cuda else None
    if ceiling:
        say(f"bf16 8192^3 matmul: {ceiling / 1e12:.0f} TFLOP/s per GPU", flush=True)
    results = []
    for shape in args.shapes.split(","):
        for compile in (bool(int(c)) for c in args.compile.split(",")):
            if PRESETS[shape].is_moe and compile:
                continue          # the reference MoE dispatch syncs on the host per layer: nothing to compile
            r = bench(info, shape, compile, args.micro_batch, args.seq_len, args.warmup, args.steps,
                      args.parallel, args.grad_accum)
            results.append(r)
            memory = f", {r['max_memory_gb']:.1f} GB a GPU at most" if cuda else ""
            say(f"{shape:9s} compile={int(compile)} params={r['params']['total'] / 1e6:6.1f}M "
                f"step={r['step_ms']:7.1f} ms  {r['tokens_per_s'] / 1e6:6.3f}M tok/s  "
                f"{r['tflops_per_gpu']:6.1f} TFLOP/s a GPU  MFU={100 * r['mfu']:5.1f}%  "
                f"(warmup {r['warmup_s']:.0f} s{memory})", flush=True)
    if info.is_main:
        with open(args.json, "w") as f:
            json.dump({"device": name, "gpus": info.world_size, "torch": torch.__version__,
                       "matmul_tflops": ceiling / 1e12 if ceiling else None, "results": results}, f, indent=2)
    close_distributed()


if __name__ == "__main__":
    main()
