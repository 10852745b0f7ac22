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
   rollout batch (off-policy reuse), the KL to the cold-start model logged (and penalised with ``--kl_coef``).

    python train/rl_reasoning.py --preset tiny                      # CPU, seconds, after the cold start's tiny preset
    python train/rl_reasoning.py                                    # one GPU, from runs/sft_cold_start/final
    torchrun --standalone --nproc_per_node 8 train/rl_reasoning.py  # each rank owns whole groups

Output in ``out_dir``: ``final`` (HF layout, bf16), ``pool.json``, ``log.jsonl`` (one line per RL step),
``samples.jsonl`` (completions as text), ``curves.png``, ``summary.json`` and the resumable ``ckpt``.
"""
import dataclasses
import json
import os
import sys
import time
from dataclasses import dataclass

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import qwen3mini                                                                  # noqa: E402
from qwen3mini.chat import ChatTokens, render                                    # noqa: E402
from qwen3mini.evaluation import reply_limit, score_reply                         # noqa: E402
from qwen3mini.sampling import SamplingParams                                     # noqa: E402
from qwen3mini.tasks import FAMILIES, parse_question                              # noqa: E402
from qwen3mini.training.checkpoints import write_atomic                          # noqa: E402
from qwen3mini.training.distributed import (all_reduce, barrier, close_distributed, gathered_model,  # noqa: E402
                                            global_max, init_distributed, seed_everything, unwrap, wrap_model)
from qwen3mini.training.grpo import GRPOLoss, group_advantages                    # noqa: E402
from qwen3mini.training.logs import RunLog, plot_curves                           # noqa: E402
from qwen3mini.training.optim import Schedule, build_optimizer                    # noqa: E402
from qwen3mini.training.rollouts import QueryPool, RolloutSample, sample_groups, sync_weights, update_batches  # noqa: E402
from qwen3mini.training.settings import TrainSettings, parse_settings, setting    # noqa: E402
from qwen3mini.training.stage import load_start, run_script, save_final  # noqa: E402
from qwen3mini.training.task_samples import (balanced_pool, drawn_items, evaluation_items, pass_rates,  # noqa: E402
                                             rl_candidates)
from qwen3mini.training.trainer import Trainer                                    # noqa: E402

# The edge of the cold start's reach (its ranges: train/sft_cold_start.py) and a step or two past it.
RL_RANGES = "add:6-9,mul:3-4,expr:4-7,linear:3-6,sort:9-13,countdown:3-5,chain:5-7"


@dataclass
class Settings(TrainSettings):
    init_from: str = setting("runs/sft_cold_start/final", "the cold-start model (HF layout, with its tokenizer)")
    cold_start_dir: str = setting("runs/sft_cold_start", "the cold start's out_dir: its summary.json says which "
                                  "queries it drew, and the pool leaves them out")
    ranges: str = setting(RL_RANGES, "family:low-high difficulties the pool's candidates come from")
    candidates_per_cell: int = setting(120, "candidate queries per (family, difficulty)")
    pass_samples: int = setting(16, "samples per candidate for its pass rate")
    pass_low: float = setting(1 / 16, "keep candidates solved at least this often ...")
    pass_high: float = setting(12 / 16, "... and at most this often")
    pool_size: int = setting(4000, "queries kept at most, the same number per family")
    queries: int = setting(64, "queries per RL step, over all ranks")
    group: int = setting(16, "completions sampled per query (G)")
    max_new_tokens: int = setting(1536, "cap on a completion; each is also held to twice the solver's reply + 256")
    temperature: float = setting(1.0, "sampling temperature of the rollouts")
    rollout_rows: int = setting(2048, "rows per generation call")
    minibatches: int = setting(2, "optimizer steps per rollout batch (off-policy reuse after the first)")
    clip_low: float = setting(0.2, "lower clip of the ratio: 1 - clip_low")
    clip_high: float = setting(0.28, "upper clip of the ratio: 1 + clip_high (clip-higher)")
    kl_coef: float = setting(0.0, "weight of the KL to the start model in the loss (it is logged either way)")
    entropy_coef: float = setting(0.0, "weight of an entropy bonus")
    scale_by_std: bool = setting(False, "divide advantages by the group's standard deviation")
    samples_logged: int = setting(2, "completions per step written to samples.jsonl")
    time_limit: float = setting(0.0, "stop after the step that passes this many seconds of RL (0: no limit; "
                                "the log's last step is what --steps must say to make the run again)")
    out_dir: str = "runs/rl_reasoning"
    seq_len: int = 2048                         # packed rows: a prompt and its longest completion fit in one
    micro_batch: int = 16
    steps: int = 40                             # RL steps (rollout batches)
    lr: float = 2e-5
    min_lr: float = 2e-5
    schedule: str = "constant"
    warmup_steps: int = 4                       # optimizer steps
    weight_decay: float = 0.0
    ckpt_every: int = 10

    def __post_init__(self):
        super().__post_init__()
        if not 0 <= self.pass_low <= self.pass_high <= 1:
            raise ValueError(f"--pass_low {self.pass_low} / --pass_high {self.pass_high}: expected 0 <= low <= high <= 1")
        for name in ("candidates_per_cell", "pass_samples", "pool_size", "queries", "group", "max_new_tokens",
                     "rollout_rows", "minibatches"):
            if getattr(self, name) < 1:
                raise ValueError(f"--{name} {getattr(self, name)}: expected a positive number")
        if self.group < 2:
            raise ValueError(f"--group {self.group}: a group needs at least 2 completions to compare")


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
    summary = os.path.join(settings.cold_start_dir, "summary.json")
    if not os.path.exists(summary):
        raise ValueError(f"--cold_start_dir {settings.cold_start_dir}: no summary.json (run the cold start first)")
    with open(summary) as f:
        cold = json.load(f)["settings"]
    exclude = evaluation_items()
    exclude |= drawn_items(cold["ranges"], cold["queries_per_cell"] + cold["val_per_cell"], cold["seed"], exclude)
    candidates = rl_candidates(settings.ranges, settings.candidates_per_cell, settings.seed, exclude)
    start, mine = time.perf_counter(), candidates[info.rank::info.world_size]
    limits = [reply_limit(tokenizer, p, "think", settings.max_new_tokens) for p in mine]
    sampling = SamplingParams(temperature=settings.temperature)
    rates = torch.zeros(len(candidates), device=info.device)
    rates[info.rank::info.world_size] = torch.tensor(
        pass_rates(model, tokenizer, mine, settings.pass_samples, limits, sampling, settings.seed + info.rank,
                   settings.rollout_rows), device=info.device)
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


def rl_step(settings, step, pool, generator, model, ref_model, tokenizer, ids, trainer, info):
    """One RL step: rollouts of this rank's groups, their rewards and advantages, the GRPO updates; returns
    the step's log record and a few of its completions."""
    queries = pool.take(settings.queries)[info.rank::info.world_size]
    clock = time.perf_counter()
    sync_weights(generator, unwrap(model))
    prompts = [render(tokenizer, [{"role": "user", "content": q.question}], think=True) for q in queries]
    limits = [reply_limit(tokenizer, q, "think", settings.max_new_tokens) for q in queries]
    groups = sample_groups(generator, tokenizer, prompts, settings.group, limits,
                           SamplingParams(temperature=settings.temperature),
                           settings.seed + step * info.world_size + info.rank, settings.rollout_rows)
    scored = [[score_reply(q, r.text, r.completion, ids) for r in group] for q, group in zip(queries, groups)]
    rewards = torch.tensor([[float(s.correct) for s in group] for group in scored])
    advantages, equal = group_advantages(rewards, settings.scale_by_std)
    samples = [RolloutSample(prompt + reply.completion.tokens,
                             [False] * len(prompt) + [True] * len(reply.completion.tokens), float(a))
               for prompt, group, advs, same in zip(prompts, groups, advantages.tolist(), equal.tolist())
               if not same for reply, a in zip(group, advs)]
    generated = sum(r.completion.generated_tokens for group in groups for r in group)
    generate_seconds = _synced_seconds(clock, info)
    with trainer.autocast:
        steps = update_batches(samples, model, ref_model, settings.seq_len, settings.micro_batch,
                               settings.minibatches, tokenizer.token_to_id["<|endoftext|>"], info,
                               seed=settings.seed * 100_003 + step)
    updates = [trainer.train_step(micro_batches) for micro_batches in steps]
    update_seconds = _synced_seconds(clock, info) - generate_seconds
    families = list(FAMILIES)
    flat = [(q.family, s) for q, group in zip(queries, scored) for s in group]
    sums = torch.tensor([len(flat), sum(s.correct for _, s in flat), int(equal.sum()), len(queries),
                         sum(not s.self_ended for _, s in flat), sum(s.thinking_tokens for _, s in flat), generated,
                         *(sum(s.correct for f, s in flat if f == family) for family in families),
                         *(sum(f == family for f, _ in flat) for family in families)],
                        dtype=torch.float64, device=info.device)
    sums = all_reduce(sums).tolist()
    n, correct, same, groups_total, cut, thinking, tokens = sums[:7]
    per_family = zip(families, sums[7:7 + len(families)], sums[7 + len(families):])
    record = {"step": step + 1, "reward": correct / n, "equal_groups": same / groups_total, "truncated": cut / n,
              "thinking_tokens": thinking / n, "generated_tokens": tokens,
              "loss_tokens": sum(u["loss_tokens"] for u in updates),
              **{k: sum(u[k] * u["loss_tokens"] for u in updates) / max(1, sum(u["loss_tokens"] for u in updates))
                 for k in ("loss", "kl", "entropy", "clipped", "ratio")},
              "grad_norm": max(u["grad_norm"] for u in updates),
              "lr": updates[-1]["lr"], "generate_seconds": round(generate_seconds, 3),
              "update_seconds": round(update_seconds, 3),
              **{f"accuracy_{f}": c / k for f, c, k in per_family if k}}
    examples = [{"step": step + 1, "question": q.question, "reward": s.correct, "text": r.text[:2000]}
                for q, group, scores in zip(queries, groups, scored) for r, s in zip(group[:1], scores[:1])]
    return record, examples[:settings.samples_logged]


def _synced_seconds(start, info) -> float:
    if info.device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start


def main(argv=None):
    settings = parse_settings(Settings, argv, PRESETS, description=__doc__)
    info = init_distributed(settings.device)
    seed_everything(settings.seed)
    if not os.path.isdir(settings.init_from):
        raise ValueError(f"--init_from {settings.init_from}: no such folder (run train/sft_cold_start.py first)")
    tokenizer = qwen3mini.load_tokenizer(settings.init_from)
    ids = ChatTokens.of(tokenizer)
    model = load_start(settings.init_from, tokenizer.vocab_size, previous_stage="the cold start")
    gen_dtype = torch.bfloat16 if info.device.type == "cuda" else torch.float32
    generator = qwen3mini.load_model(settings.init_from, device=info.device, dtype=gen_dtype)
    problems, pool_record = build_pool(settings, generator, tokenizer, info)
    if info.is_main:
        print(f"pool: {pool_record['kept']} of {pool_record['candidates']} candidates kept "
              f"({pool_record['seconds']} s); by cell: {json.dumps(pool_record['cells'])}")
    pool = QueryPool(problems, settings.seed)
    ref_model = load_start(settings.init_from, tokenizer.vocab_size, "the cold start").to(info.device).eval()
    wrapped = wrap_model(model, info, settings.parallel, settings.compile)
    optimizer = build_optimizer(wrapped, settings.lr, settings.weight_decay, (settings.beta1, settings.beta2))
    schedule = Schedule(settings.schedule, settings.lr, settings.min_lr, settings.warmup_steps,
                        settings.steps * settings.minibatches, settings.decay_frac)
    loss_fn = GRPOLoss(settings.clip_low, settings.clip_high, settings.kl_coef, settings.entropy_coef)
    trainer = Trainer(wrapped, optimizer, schedule, settings, info, pool, name="RL (reasoning)", loss_fn=loss_fn)
    resumed = settings.resume and trainer.load_checkpoint()
    first = trainer.step // settings.minibatches
    completions = RunLog(settings.out_dir, info.is_main, 1, "samples.jsonl")
    for log in (trainer.log, completions):
        log.start(first if resumed else None)
    records = []
    for step in range(first, settings.steps):
        record, examples = rl_step(settings, step, pool, generator, wrapped, ref_model, tokenizer, ids, trainer, info)
        trainer.elapsed += record["generate_seconds"] + record["update_seconds"]
        record["time"] = round(trainer.elapsed, 3)
        trainer.log.write(record)
        for example in examples:
            completions.write(example)
        records.append(record)
        if info.is_main:
            print(" ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in record.items()),
                  flush=True)
        out_of_time = 0 < settings.time_limit < global_max(trainer.elapsed, info.device)   # all ranks stop together
        if (step + 1) % settings.ckpt_every == 0 or step + 1 == settings.steps or out_of_time:
            trainer.save_checkpoint()
        if out_of_time:
            if info.is_main:
                print(f"--time_limit {settings.time_limit:g} s reached after step {step + 1}")
            break
    final = gathered_model(wrapped, info)
    if info.is_main:
        save_final(final, settings.out_dir, settings.init_from)
        plot_curves(trainer.log.path, os.path.join(settings.out_dir, "curves.png"),
                    ["reward", "entropy", "thinking_tokens", "kl", "equal_groups", "truncated"], "RL (reasoning)")
        summary = {"stage": "RL (reasoning)", "steps": trainer.step // settings.minibatches, "optimizer_steps": trainer.step,
                   "train_seconds": trainer.elapsed, "last": records[-1] if records else None,
                   "pool": {k: pool_record[k] for k in ("candidates", "kept", "seconds", "cells")},
                   "settings": dataclasses.asdict(settings), "parameters": model.config.num_parameters()}
        write_atomic(os.path.join(settings.out_dir, "summary.json"), json.dumps(summary, indent=2))
        print(f"RL (reasoning): {summary['steps']} steps, {trainer.elapsed:.0f} s; saved {settings.out_dir}/final")
    barrier()
    close_distributed()


if __name__ == "__main__":
    run_script(main)
