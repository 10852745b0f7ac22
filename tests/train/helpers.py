"""Scaffolding for the training tests: a deterministic toy corpus and a one-call tiny training run.

The toy language: every row counts upwards modulo the vocabulary by a stride of 1, 2 or 3 from a start token
(``row(i)`` is a fixed function of the row index), so a model that has seen two tokens can predict the rest
and the loss must fall. Row ``i`` is the same whatever the number of processes, which is what lets the DDP
tests compare a 2-process run with a 1-process run of the same global batch.
"""
import sys

import torch

from qwen3mini.config import PRESETS
from qwen3mini.model import Qwen3ForCausalLM
from qwen3mini.training.losses import IGNORE
from qwen3mini.training.distributed import init_distributed, seed_everything, wrap_model
from qwen3mini.training.optim import Schedule, build_optimizer
from qwen3mini.training.settings import TrainSettings
from qwen3mini.training.trainer import Trainer


class ToyBatches:
    """Batch source over the toy rows: draw ``d`` of rank ``r`` holds global rows of optimizer step
    ``d // grad_accum``, micro-batch ``d % grad_accum`` (rank-major), ``micro_batch`` rows each."""

    def __init__(self, vocab, seq_len, micro_batch, grad_accum=1, rank=0, world_size=1, seed=0, masked=False):
        self.vocab, self.seq_len, self.micro_batch = vocab, seq_len, micro_batch
        self.grad_accum, self.rank, self.world_size, self.seed = grad_accum, rank, world_size, seed
        self.masked = masked        # ignore the first (i % 5) * 3 targets of row i, as SFT ignores prompts
        self.draws = 0

    def rows(self, first, count):
        i = torch.arange(first, first + count, dtype=torch.long)[:, None]
        start = (i * 2654435761 + self.seed * 97) % self.vocab
        stride = 1 + (i * 40503 + self.seed) % 3
        return (start + stride * torch.arange(self.seq_len + 1)) % self.vocab

    def next_batch(self):
        step, micro = divmod(self.draws, self.grad_accum)
        per_step = self.micro_batch * self.grad_accum * self.world_size
        first = step * per_step + (self.rank * self.grad_accum + micro) * self.micro_batch
        self.draws += 1
        rows = self.rows(first, self.micro_batch)
        targets = rows[:, 1:].clone()
        if self.masked:
            i = torch.arange(first, first + self.micro_batch)[:, None]
            targets[torch.arange(self.seq_len) < (i % 5) * 3] = IGNORE
        return rows[:, :-1], targets

    def state_dict(self):
        return {"draws": self.draws}

    def load_state_dict(self, state):
        self.draws = state["draws"]


def tiny_run(out_dir, preset="tiny", steps=30, micro_batch=8, grad_accum=1, seq_len=32, seed=0, lr=1e-2,
             ckpt_every=1000, lbl_coef=0.01, parallel="ddp", masked=False, **overrides):
    """Train a tiny model on the toy corpus in this process (joining a process group if the environment
    describes one). Returns (trainer, records)."""
    info = init_distributed("cpu")
    settings = TrainSettings(out_dir=out_dir, seed=seed, seq_len=seq_len, micro_batch=micro_batch,
                                      grad_accum=grad_accum, steps=steps, lr=lr, min_lr=lr / 10,
                                      warmup_steps=5, eval_every=10, eval_batches=2, ckpt_every=ckpt_every,
                                      lbl_coef=lbl_coef, device="cpu", dtype="float32", progress=False,
                                      parallel=parallel, **overrides)
    seed_everything(seed)
    config = PRESETS[preset]
    model = Qwen3ForCausalLM(config)
    wrapped = wrap_model(model, info, parallel=settings.parallel)
    optimizer = build_optimizer(wrapped, settings.lr, settings.weight_decay,
                                         (settings.beta1, settings.beta2))
    schedule = Schedule(settings.schedule, settings.lr, settings.min_lr, settings.warmup_steps,
                                 settings.steps, settings.decay_frac)
    train = ToyBatches(config.vocab_size, seq_len, micro_batch, grad_accum, info.rank, info.world_size, seed, masked)
    val = ToyBatches(config.vocab_size, seq_len, micro_batch, 1, info.rank, info.world_size, seed + 1)
    trainer = Trainer(wrapped, optimizer, schedule, settings, info, train, val)
    return trainer, trainer.fit()


if __name__ == "__main__":      # the resume test runs this file as a subprocess: out_dir steps
    tiny_run(sys.argv[1], preset="tiny-moe", steps=int(sys.argv[2]), ckpt_every=10, micro_batch=2,
             grad_accum=2, seq_len=32)
