"""Stage 2 of post-training, reasoning RL (paper §4.2): GRPO from the cold-start model on verifiable queries.

1. The query pool: fresh problems from the edge of the cold start's reach (``--ranges``: lengths and sizes just
   past its trained range, countdown), none of them an evaluation item or a query the cold start drew; each
   asked ``--pass_samples`` times of the cold-start model, kept when it solves it sometimes but not mostly
   (``--pass_low`` to ``--pass_high``: learnable but hard), the same number per family (``pool.json``).
2. Every step: ``--queries`` queries from the pool, ``--group`` completions of each sampled in thinking mode
   at temperature 1 with nothing cut from the distribution (so the sampler *is* π_old, which the importance
   ratio assumes; the paper's top-p / top-k settings are for answering), through the one generation path
   (``generate_completions``, CUDA graphs) on a bf16 copy of the policy that gets the fp32 master weights
   first. Reward 1 when the verifier accepts the final ``\\boxed{}``, else 0; a completion cut by its token cap
   gets 0 and stays in (penalised, not masked: it teaches the model to end). Groups with equal rewards are
   dropped and counted.
3. The GRPO update (qwen3mini/training/grpo.py): group-relative advantages, the clipped ratio with a wider
   upper clip, token-level normalisation over the global mini-batch, ``--minibatches`` optimizer steps per
   rollout batch (off-policy reuse), the KL to the cold-start model logged (and penalised with ``--kl_coef``),
   and, as options, an entropy bonus (``--entropy_coef``) whose weight can move after every step to hold the mean
   token entropy at the first step's (``--entropy_hold_step``; bench/RESULTS.md, session 18: measured once,
   it slowed the entropy's fall without holding it, and the edge gain was smaller than without it).

    python train/rl_reasoning.py --preset tiny                      # CPU, seconds, after the cold start's tiny preset
    python train/rl_reasoning.py                                    # one GPU, from runs/sft_cold_start/final
    torchrun --standalone --nproc_per_node 8 train/rl_reasoning.py  # each rank owns whole groups

Output in ``out_dir``: ``final`` (HF layout, bf16), ``pool.json``, ``log.jsonl`` (one line per RL step),
``samples.jsonl`` (completions as text), ``curves.png``, ``summary.json`` and the resumable ``ckpt``.
"""
import json
import os
import sys
import time
from dataclasses import dataclass

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from qwen3mini.sampling import SamplingParams                                     # noqa: E402
from qwen3mini.tasks import parse_question                                        # noqa: E402
from qwen3mini.tasks.splits import held_out                                       # noqa: E402
from qwen3mini.training.checkpoints import write_atomic                          # noqa: E402
from qwen3mini.training.distributed import all_reduce                             # noqa: E402
from qwen3mini.training.rl import RLSettings, TaskEnvironment, run_rl             # noqa: E402
from qwen3mini.training.settings import parse_settings, require_at_least, setting                 # noqa: E402
from qwen3mini.training.stage import run_script                                   # noqa: E402
from qwen3mini.training.task_samples import (balanced_pool, cold_start_queries, evaluation_items,  # noqa: E402
                                             fresh_queries)

# The edge of the cold start's reach (its ranges: train/sft_cold_start.py) and a step or two past it.
RL_RANGES = "add:6-9,mul:3-4,expr:4-7,linear:3-6,sort:9-13,countdown:3-5,chain:5-7"


@dataclass
class Settings(RLSettings):
    init_from: str = "runs/sft_cold_start/final"
    cold_start_dir: str = setting("runs/sft_cold_start", "the cold start's out_dir: its summary.json says which "
                                  "queries it drew, and the pool leaves them out (empty: a start model without "
                                  "a cold start, such as a distilled student)")
    ranges: str = setting(RL_RANGES, "family:low-high difficulties the pool's candidates come from")
    candidates_per_cell: int = setting(96, "candidate queries per (family, difficulty)")
    pass_samples: int = setting(16, "samples per candidate for its pass rate")
    pass_low: float = setting(1 / 16, "keep candidates solved at least this often ...")
    pass_high: float = setting(12 / 16, "... and at most this often")
    pool_size: int = setting(4000, "queries kept at most, the same number per family")
    out_dir: str = "runs/rl_reasoning"

    def __post_init__(self):
        super().__post_init__()
        if not 0 <= self.pass_low <= self.pass_high <= 1:
            raise ValueError(f"--pass_low {self.pass_low} / --pass_high {self.pass_high}: expected "
                             "0 <= low <= high <= 1")
        require_at_least(self, 1, "candidates_per_cell", "pass_samples", "pool_size")


PRESETS = {
    "tiny": dict(init_from="runs/tiny/sft_cold_start/final", cold_start_dir="runs/tiny/sft_cold_start",
                 ranges="add:1-2,sort:3", candidates_per_cell=3, pass_samples=2, pass_low=0.0, pass_high=1.0,
                 pool_size=8, queries=2, group=2, max_new_tokens=24, rollout_rows=64, seq_len=256, micro_batch=2,
                 steps=3, warmup_steps=1, lr=1e-3, min_lr=1e-3, ckpt_every=2, samples_logged=1, device="cpu",
                 dtype="float32", progress=False, out_dir="runs/tiny/rl_reasoning"),
}


def build_pool(settings, model, tokenizer, info) -> tuple[list, dict]:
    """(problems, record): the pool of step 1, reused from ``pool.json`` when the settings that make it agree."""
    keys = ("init_from", "ranges", "candidates_per_cell", "pass_samples", "pass_low", "pass_high", "pool_size",
            "seed", "temperature", "max_new_tokens")
    made_by = {k: getattr(settings, k) for k in keys}
    path = os.path.join(settings.out_dir, "pool.json")
    if os.path.exists(path):
        with open(path) as f:
            record = json.load(f)
        if record["made_by"] == made_by:
            return [parse_question(q) for q in record["questions"]], record
    exclude = evaluation_items()
    if settings.cold_start_dir:
        exclude |= held_out([cold_start_queries(settings.cold_start_dir)])
    candidates = fresh_queries(settings.ranges, settings.candidates_per_cell, settings.seed, exclude, "rl")
    start, mine = time.perf_counter(), candidates[info.rank::info.world_size]
    # The pass rate is the RL stage's own reward, over the samples RL would draw (temperature, token cap).
    groups = TaskEnvironment(tokenizer, settings.max_new_tokens).rollouts(
        model, mine, settings.pass_samples, SamplingParams(temperature=settings.temperature),
        settings.seed + info.rank, settings.rollout_rows)
    rates = torch.zeros(len(candidates), device=info.device)
    rates[info.rank::info.world_size] = torch.tensor(
        [sum(r.reward for r in group) / len(group) for _, group in groups], device=info.device)
    rates = all_reduce(rates).tolist()
    pool = balanced_pool(candidates, rates, settings.pass_low, settings.pass_high, settings.pool_size)
    cells = {}
    for problem, rate in zip(candidates, rates):
        cell = cells.setdefault(f"{problem.family}/{problem.difficulty}", {"candidates": 0, "mean_pass": 0.0})
        cell["candidates"] += 1
        cell["mean_pass"] += rate
    for cell in cells.values():
        cell["mean_pass"] = round(cell["mean_pass"] / cell["candidates"], 4)
    for problem in pool:
        cell = cells[f"{problem.family}/{problem.difficulty}"]
        cell["kept"] = cell.get("kept", 0) + 1
    record = {"made_by": made_by, "seconds": round(time.perf_counter() - start, 1), "candidates": len(candidates),
              "kept": len(pool), "cells": cells, "questions": [p.question for p in pool]}
    if info.is_main:
        os.makedirs(settings.out_dir, exist_ok=True)
        write_atomic(path, json.dumps(record, indent=1))
    return pool, record


def main(argv=None):
    settings = parse_settings(Settings, argv, PRESETS, description=__doc__)

    def make_pool(generator, tokenizer, info):
        problems, record = build_pool(settings, generator, tokenizer, info)
        if info.is_main:
            print(f"pool: {record['kept']} of {record['candidates']} candidates kept ({record['seconds']} s); "
                  f"by cell: {json.dumps(record['cells'])}")
        return problems, {k: record[k] for k in ("candidates", "kept", "seconds", "cells")}
    run_rl("RL (reasoning)", settings, lambda tokenizer: TaskEnvironment(tokenizer, settings.max_new_tokens),
           make_pool, previous_stage="the cold start")


if __name__ == "__main__":
    run_script(main)
