"""The loop both RL stages and on-policy distillation share (paper §4.2 reasoning RL, §4.4 general RL, §4.5
on-policy distillation): an objective trained on rollouts from an environment that turns queries into groups
of rewarded completions.

    environment = TaskEnvironment(tokenizer, max_new_tokens)           # or stage 4's mix of tasks
    run_rl("RL (reasoning)", settings, environment, make_pool)         # pool -> steps -> final model (GRPO)
    run_rl(..., make_objective=distill.distill_objective)              # the reverse KL to a teacher instead

One step (``rl_step``): this rank's share of ``settings.queries`` queries from the pool; ``environment.rollouts``
samples ``settings.group`` completions of each through the one generation path on a bf16 copy of the policy
(the fp32 master weights copied in first) and scores them; the objective picks what it trains on (GRPO:
group-relative advantages, groups with equal rewards dropped; distillation: every completion), the
completions are packed (rollouts.py) and ``settings.minibatches`` optimizer steps taken.
Every step logs the reward, the share of full rewards per kind of query (accuracy), the share of equal-reward groups, truncation,
thinking length, KL, entropy, clipping, learning rate and the time spent generating and updating; a few
completions go to ``samples.jsonl``. Checkpoints resume the run exactly (policy, optimizer, pool position, RNG).
"""
import dataclasses
import json
import os
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass

import torch

from ..chat import ChatTokens
from ..evaluation import score_reply
from ..sampling import SamplingParams
from ..tasks import FAMILIES
from .checkpoints import write_atomic
from .distributed import (all_reduce, barrier, close_distributed, gathered_model, global_max, init_distributed,
                          seed_everything, unwrap, wrap_model)
from .grpo import GRPOLoss, group_advantages
from .logs import RunLog, plot_curves
from .losses import LossFunction
from .optim import Schedule, build_optimizer
from .rollouts import QueryPool, RolloutSample, sample_task_groups, sync_weights, update_batches
from .settings import TrainSettings, require_at_least, setting
from .stage import load_start, save_final
from .trainer import Trainer

@dataclass
class RLSettings(TrainSettings):
    """What both RL stages decide the same way (their scripts add the pool's and the tasks' settings)."""
    init_from: str = setting("", "the model to start from (HF layout, with its tokenizer)")
    queries: int = setting(64, "queries per RL step, over all ranks")
    group: int = setting(16, "completions sampled per query (G)")
    max_new_tokens: int = setting(1024, "cap on a completion's tokens")
    temperature: float = setting(1.0, "sampling temperature of the rollouts (1: the sampler is the policy)")
    rollout_rows: int = setting(2048, "rows per generation call")
    minibatches: int = setting(2, "optimizer steps per rollout batch (off-policy reuse after the first)")
    clip_low: float = setting(0.2, "lower clip of the ratio: 1 - clip_low")
    clip_high: float = setting(0.28, "upper clip of the ratio: 1 + clip_high (clip-higher)")
    kl_coef: float = setting(0.0, "weight of the KL to the start model in the loss (it is logged either way)")
    entropy_coef: float = setting(0.0, "weight of an entropy bonus (at the start, with --entropy_hold_step)")
    entropy_hold_step: float = setting(0.0, "after every step, move the entropy bonus's weight by this to hold "
                                       "the mean token entropy at the first step's (0: the weight stays fixed)")
    scale_by_std: bool = setting(False, "divide advantages by the group's standard deviation")
    samples_logged: int = setting(2, "completions per step written to samples.jsonl")
    time_limit: float = setting(0.0, "stop after the step that passes this many seconds of RL (0: no limit; "
                                "the log's last step is what --steps must say to make the run again)")
    seq_len: int = 2048                         # packed rows: a prompt and its longest completion fit in one
    micro_batch: int = 16
    steps: int = 60                             # RL steps (rollout batches); --time_limit may stop it sooner
    lr: float = 3e-5
    min_lr: float = 3e-5
    schedule: str = "constant"
    warmup_steps: int = 4                       # optimizer steps
    weight_decay: float = 0.0
    ckpt_every: int = 10

    def __post_init__(self):
        super().__post_init__()
        require_at_least(self, 1, "queries", "max_new_tokens", "rollout_rows", "minibatches")
        if self.group < 2:
            raise ValueError(f"--group {self.group}: a group needs at least 2 completions to compare")


@dataclass
class Rollout:
    """One scored completion: ``tokens`` after the prompt, ``mask`` True where the model sampled them (False:
    what an environment inserted, such as a tool's reply), its reward and what the log counts."""
    tokens: list[int]
    mask: list[bool]
    reward: float
    kind: str                   # the query's kind: its share of full rewards (1.0) is logged as accuracy_<kind>
    truncated: bool
    thinking_tokens: int
    text: str


class Environment(ABC):
    """Turns queries into groups of rollouts; ``kinds`` names every kind a query can have (the log's columns)."""
    kinds: list[str]

    @abstractmethod
    def rollouts(self, generator, queries: list, group: int, sampling: SamplingParams, seed: int,
                 batch_rows: int) -> list[tuple[list[int], list[Rollout]]]:
        """Per query: (its prompt ids, its ``group`` rollouts)."""

    @abstractmethod
    def question(self, query) -> str:
        """The query as the user asked it (for the log of sampled completions)."""


class TaskEnvironment(Environment):
    """The verifiable tasks in thinking mode (stage 2): reward 1 when the verifier accepts the final
    ``\\boxed{}`` after the think block, else 0; a completion cut by its cap scores 0 (penalised, not masked)."""
    kinds = list(FAMILIES)

    def __init__(self, tokenizer, max_new_tokens: int):
        self.tokenizer, self.max_new_tokens, self.ids = tokenizer, max_new_tokens, ChatTokens.of(tokenizer)

    def question(self, problem) -> str:
        return problem.question

    def rollouts(self, generator, problems, group, sampling, seed, batch_rows):
        prompts, groups = sample_task_groups(generator, self.tokenizer, problems, group, self.max_new_tokens,
                                             sampling, seed, batch_rows)
        done = []
        for problem, prompt, replies in zip(problems, prompts, groups):
            scored = [score_reply(problem, r.text, r.completion, self.ids) for r in replies]
            done.append((prompt, [Rollout(r.completion.tokens, [True] * len(r.completion.tokens), float(s.correct),
                                          problem.family, not s.self_ended, s.thinking_tokens, r.text)
                                  for r, s in zip(replies, scored)]))
        return done


class Objective(ABC):
    """What the loop trains on scored groups: the ``samples`` it keeps, packed by ``update_batches`` into the
    micro-batches ``loss_fn`` reads (losses.py's protocol); ``metrics``: the loss's per-token means the log
    takes; ``curves``: the log's keys that ``curves.png`` plots."""
    loss_fn: LossFunction
    metrics: tuple
    curves: list

    @abstractmethod
    def samples(self, groups, advantages: torch.Tensor, equal: torch.Tensor) -> list[RolloutSample]:
        """The completions to train on, of ``groups`` [(prompt ids, rollouts)] with their group-relative
        ``advantages`` [Q, G] and ``equal`` [Q] (groups whose rewards are all the same)."""

    @abstractmethod
    def update_batches(self, samples, model, settings, pad_id: int, info, seed: int) -> list[list[tuple]]:
        """The optimizer steps of one rollout batch: lists of micro-batches (rollouts.py)."""

    def after_step(self, record: dict):
        """After an RL step, before its log ``record`` is written: what the objective adapts from it (and adds
        to the record)."""


class GRPOObjective(Objective):
    """The RL stages' (grpo.py): group-relative advantages, groups of equal rewards dropped, the clipped loss
    with π_old and the KL to the start model ``ref_model``."""
    metrics = ("loss", "kl", "entropy", "clipped", "ratio")
    curves = ["reward", "entropy", "entropy_coef", "thinking_tokens", "kl", "equal_groups", "truncated"]

    def __init__(self, settings, ref_model):
        self.ref_model = ref_model
        self.loss_fn = GRPOLoss(settings.clip_low, settings.clip_high, settings.kl_coef, settings.entropy_coef,
                                settings.entropy_hold_step)

    def samples(self, groups, advantages, equal):
        return [RolloutSample(prompt + r.tokens, [False] * len(prompt) + r.mask, float(a))
                for (prompt, group), advs, same in zip(groups, advantages.tolist(), equal.tolist()) if not same
                for r, a in zip(group, advs)]

    def update_batches(self, samples, model, settings, pad_id, info, seed):
        return update_batches(samples, model, self.ref_model, settings.seq_len, settings.micro_batch,
                              settings.minibatches, pad_id, info, seed)

    def after_step(self, record):
        record["entropy_coef"] = self.loss_fn.entropy_coef        # the weight this step used
        self.loss_fn.hold_entropy(record["entropy"])


def grpo_objective(settings, info, tokenizer, previous_stage: str) -> GRPOObjective:
    """The RL stages' objective, its reference model the start model (fp32, on the device, frozen)."""
    ref_model = load_start(settings.init_from, tokenizer.vocab_size, previous_stage).to(info.device).eval()
    return GRPOObjective(settings, ref_model)


def rl_step(settings, step: int, queries: list, environment, generator, model, objective, pad_id: int, trainer,
            info) -> tuple[dict, list]:
    """One RL step on this rank's ``queries``; returns the step's log record and a few of its completions."""
    clock = time.perf_counter()
    sync_weights(generator, unwrap(model))
    groups = environment.rollouts(generator, queries, settings.group, SamplingParams(temperature=settings.temperature),
                                  settings.seed + step * info.world_size + info.rank, settings.rollout_rows)
    rewards = torch.tensor([[r.reward for r in group] for _, group in groups])
    advantages, equal = group_advantages(rewards, settings.scale_by_std)
    samples = objective.samples(groups, advantages, equal)
    too_long = sum(len(s.ids) > settings.seq_len for s in samples)      # (a packed row holds a whole sample)
    samples = [s for s in samples if len(s.ids) <= settings.seq_len]
    generate_seconds = _synced_seconds(clock, info)
    with trainer.autocast:
        steps = objective.update_batches(samples, model, settings, pad_id, info, seed=settings.seed * 100_003 + step)
    updates = [trainer.train_step(micro_batches) for micro_batches in steps]
    update_seconds = _synced_seconds(clock, info) - generate_seconds
    flat = [r for _, group in groups for r in group]
    kinds = environment.kinds
    sums = all_reduce(torch.tensor(
        [len(flat), sum(r.reward for r in flat), int(equal.sum()), len(groups), sum(r.truncated for r in flat),
         sum(r.thinking_tokens for r in flat), sum(sum(r.mask) for r in flat), too_long,
         *(sum(r.reward == 1.0 for r in flat if r.kind == k) for k in kinds),
         *(sum(r.kind == k for r in flat) for k in kinds)],
        dtype=torch.float64, device=info.device)).tolist()
    n, reward, same, queries_total, cut, thinking, tokens, dropped = sums[:8]
    loss_tokens = sum(u["loss_tokens"] for u in updates)
    record = {"step": step + 1, "reward": reward / n, "equal_groups": same / queries_total, "truncated": cut / n,
              "thinking_tokens": thinking / n, "generated_tokens": tokens, "loss_tokens": loss_tokens,
              **{k: sum(u[k] * u["loss_tokens"] for u in updates) / max(1, loss_tokens)
                 for k in objective.metrics if k in updates[0]},
              "grad_norm": max(u["grad_norm"] for u in updates), "lr": updates[-1]["lr"],
              "generate_seconds": round(generate_seconds, 3), "update_seconds": round(update_seconds, 3),
              **{f"accuracy_{k}": total / count
                 for k, total, count in zip(kinds, sums[8:8 + len(kinds)], sums[8 + len(kinds):]) if count},
              "longer_than_row": dropped}
    examples = [{"step": step + 1, "question": environment.question(q), "reward": group[0].reward,
                 "text": group[0].text[:2000]} for q, (_, group) in zip(queries, groups)]
    return record, examples[:settings.samples_logged]


def _synced_seconds(start, info) -> float:
    if info.device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start


def run_rl(name: str, settings: RLSettings, make_environment, make_pool, previous_stage: str,
           make_objective=grpo_objective) -> dict:
    """A whole RL stage: the policy from ``settings.init_from``, ``make_pool(generator, tokenizer, info) ->
    (queries, record)``, ``make_environment(tokenizer) -> Environment``, ``make_objective(settings, info,
    tokenizer, previous_stage) -> Objective`` (GRPO by default), the steps (resuming from ``out_dir/ckpt``),
    then ``out_dir/final`` (bf16), ``curves.png`` and ``summary.json``."""
    import qwen3mini
    info = init_distributed(settings.device)
    seed_everything(settings.seed)
    if not os.path.isdir(settings.init_from):
        raise ValueError(f"--init_from {settings.init_from}: no such folder (run {previous_stage} first)")
    tokenizer = qwen3mini.load_tokenizer(settings.init_from)
    model = load_start(settings.init_from, tokenizer.vocab_size, previous_stage)
    generator = qwen3mini.load_model(settings.init_from, device=info.device,
                                     dtype=torch.bfloat16 if info.device.type == "cuda" else torch.float32)
    queries, pool_record = make_pool(generator, tokenizer, info)
    pool = QueryPool(queries, settings.seed)
    objective = make_objective(settings, info, tokenizer, previous_stage)
    wrapped = wrap_model(model, info, settings.parallel, settings.compile)
    optimizer = build_optimizer(wrapped, settings.lr, settings.weight_decay, (settings.beta1, settings.beta2))
    schedule = Schedule(settings.schedule, settings.lr, settings.min_lr, settings.warmup_steps,
                        settings.steps * settings.minibatches, settings.decay_frac)
    trainer = Trainer(wrapped, optimizer, schedule, settings, info, pool, name=name, loss_fn=objective.loss_fn)
    resumed = settings.resume and trainer.load_checkpoint()
    first = trainer.step // settings.minibatches
    completions = RunLog(settings.out_dir, info.is_main, 1, "samples.jsonl")
    for log in (trainer.log, completions):
        log.start(first if resumed else None)
    environment, pad_id = make_environment(tokenizer), tokenizer.token_to_id["<|endoftext|>"]
    records = []
    for step in range(first, settings.steps):
        queries = pool.take(settings.queries)[info.rank::info.world_size]        # each rank owns whole groups
        record, examples = rl_step(settings, step, queries, environment, generator, wrapped, objective, pad_id,
                                   trainer, info)
        objective.after_step(record)
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
    summary = {}
    if info.is_main:
        save_final(final, settings.out_dir, settings.init_from)
        plot_curves(trainer.log.path, os.path.join(settings.out_dir, "curves.png"), objective.curves, name)
        summary = {"stage": name, "steps": trainer.step // settings.minibatches, "optimizer_steps": trainer.step,
                   "train_seconds": trainer.elapsed, "last": records[-1] if records else None, "pool": pool_record,
                   "settings": dataclasses.asdict(settings), "parameters": model.config.num_parameters()}
        write_atomic(os.path.join(settings.out_dir, "summary.json"), json.dumps(summary, indent=2))
        print(f"{name}: {summary['steps']} steps, {trainer.elapsed:.0f} s; saved {settings.out_dir}/final")
    barrier()
    close_distributed()
    return summary
