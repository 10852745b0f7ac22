"""What RL trains on (paper §4.2): a pool of queries, groups of sampled completions through the one generation
path, and the packed micro-batches of those completions that ``grpo.GRPOLoss`` reads.

    pool = QueryPool(problems, seed)                 # seeded epochs, resumable position
    groups = sample_groups(generator, tokenizer, prompts, group=16, limits=[768, ...], sampling=..., seed=...)
    samples = [RolloutSample(prompt + reply.completion.tokens, mask, advantage), ...]
    minibatches = update_batches(samples, policy, ref, seq_len, micro_batch, minibatches, pad_id, info, ...)

The generation model is a bf16 copy of the policy on the same device (``sync_weights`` copies the fp32 master
weights into it before every rollout batch); it decodes with the CUDA graphs of ``generate_completions``.
"""
import math
import random
from dataclasses import dataclass

import torch

from ..chat import generate_replies, render
from ..evaluation import reply_limit
from ..sampling import SamplingParams
from .distributed import DistInfo, global_max
from .grpo import policy_logprobs
from .sft import pack_rows, packed_row


class QueryPool:
    """``items`` served ``n`` at a time in epochs, each a fresh seeded shuffle; ``state_dict`` is the position."""

    def __init__(self, items: list, seed: int):
        if not items:
            raise ValueError("QueryPool: no queries (the pool selection kept none)")
        self.items, self.seed = list(items), seed
        self.epoch, self.position = 0, 0

    def _order(self) -> list[int]:
        order = list(range(len(self.items)))
        random.Random(f"{self.seed}|pool|{self.epoch}").shuffle(order)
        return order

    def take(self, n: int) -> list:
        taken, order = [], self._order()
        while len(taken) < n:
            taken.append(self.items[order[self.position]])
            self.position += 1
            if self.position == len(self.items):
                self.epoch, self.position = self.epoch + 1, 0
                order = self._order()
        return taken

    def state_dict(self) -> dict:
        return {"epoch": self.epoch, "position": self.position}

    def load_state_dict(self, state: dict):
        self.epoch, self.position = state["epoch"], state["position"]


@torch.no_grad()
def sync_weights(generator, policy):
    """Copy the policy's (fp32 master) weights into the generation model, cast to its dtype."""
    generator.load_state_dict(policy.state_dict())


def sample_groups(generator, tokenizer, prompts: list, group: int, limits: list[int], sampling: SamplingParams,
                  seed: int, batch_rows: int = 2048) -> list[list]:
    """``group`` sampled replies (``chat.ChatCompletion``) to each prompt, each of at most its prompt's
    ``limits`` tokens, through ``generate_replies``, at most ``batch_rows`` rows a call (whole groups)."""
    rows = [(p, n) for p, n in zip(prompts, limits) for _ in range(group)]
    per_call = max(group, batch_rows // group * group)
    replies = []
    for call, start in enumerate(range(0, len(rows), per_call)):
        params = SamplingParams(**{**sampling.__dict__, "seed": seed * 1000 + call})
        batch = rows[start:start + per_call]
        replies += generate_replies(generator, tokenizer, [p for p, _ in batch], [n for _, n in batch], params)
    return [replies[i:i + group] for i in range(0, len(replies), group)]


def sample_task_groups(generator, tokenizer, problems: list, group: int, max_new_tokens: int,
                       sampling: SamplingParams, seed: int, batch_rows: int = 2048,
                       mode: str = "think") -> tuple[list, list]:
    """(prompt ids, groups of replies) of task problems asked in ``mode`` ("think" or "no-think"), ``group``
    replies each, every reply held to the evaluation's limit (twice the solver's reply + 256, at most
    ``max_new_tokens``)."""
    prompts = [render(tokenizer, [{"role": "user", "content": p.question}], think=mode == "think") for p in problems]
    limits = [reply_limit(tokenizer, p, mode, max_new_tokens) for p in problems]
    return prompts, sample_groups(generator, tokenizer, prompts, group, limits, sampling, seed, batch_rows)


@dataclass
class RolloutSample:
    """One completion to train on: the prompt and completion ids, which of them are the model's (``mask``:
    the completion's sampled tokens; an environment's tool replies would be False), and its advantage."""
    ids: list[int]
    mask: list[bool]
    advantage: float


def update_batches(samples: list[RolloutSample], policy, ref_policy, seq_len: int, micro_batch: int,
                   minibatches: int, pad_id: int, info: DistInfo, seed: int) -> list[list[tuple]]:
    """GRPO's optimizer steps of one rollout batch: ``packed_steps``' micro-batches, each extended to (inputs,
    targets, position_ids, advantages, old_logprobs, ref_logprobs). π_old and π_ref are computed here, once,
    by ``policy`` and ``ref_policy`` (None: π_ref = π_old, for a run that neither tracks nor penalises KL),
    under the caller's autocast."""
    steps = packed_steps(samples, seq_len, micro_batch, minibatches, pad_id, info, seed)
    for micro_batches in steps:
        for n, (inputs, targets, positions, advantages) in enumerate(micro_batches):
            old = policy_logprobs(policy, inputs, targets, positions)
            ref = old if ref_policy is None else policy_logprobs(ref_policy, inputs, targets, positions)
            micro_batches[n] = (inputs, targets, positions, advantages, old, ref)
    return steps


def packed_steps(samples: list[RolloutSample], seq_len: int, micro_batch: int, minibatches: int, pad_id: int,
                 info: DistInfo, seed: int) -> list[list[tuple]]:
    """The optimizer steps of one rollout batch: ``minibatches`` lists of micro-batches, each a tuple
    (inputs, targets, position_ids, advantages) on the device.

    The samples are shuffled (seeded) and packed into rows of ``seq_len`` tokens (sft.pack_rows). Every rank
    gets the same number of micro-batches (DDP all-reduces in the last one's backward): a rank with fewer rows
    fills up with empty rows, which hold no loss token (when no rank has any, a single one-token row per step)."""
    order = list(range(len(samples)))
    random.Random(f"{seed}|rows").shuffle(order)
    pairs = [(s.ids, s.mask) for s in samples]
    rows = pack_rows([len(s.ids) for s in samples], seq_len, order)
    longest = int(global_max(len(rows), info.device))
    if longest == 0:                    # no rank has a sample (every group's rewards equal): one tiny empty
        seq_len, micro_batch = 1, 1     # micro-batch per optimizer step keeps the steps in line, nearly free
    per_step = max(1, math.ceil(longest / minibatches))
    per_step = math.ceil(per_step / micro_batch) * micro_batch
    tensors = [_rollout_row(pairs, samples, indices, seq_len, pad_id) for indices in rows]
    tensors += [_rollout_row(pairs, samples, [], seq_len, pad_id)] * (per_step * minibatches - len(tensors))
    return [[tuple(torch.stack(column).to(info.device) for column in zip(*tensors[start:start + micro_batch]))
             for start in range(first, first + per_step, micro_batch)]
            for first in range(0, per_step * minibatches, per_step)]


def _rollout_row(pairs, samples, indices, seq_len: int, pad_id: int) -> tuple:
    """sft.packed_row's (inputs, targets, position_ids) plus each token's advantage (its sample's); no indices:
    a row of padding, which holds no loss token."""
    inputs, targets, positions = packed_row(pairs, indices, seq_len, pad_id)
    advantages = torch.zeros(seq_len)
    at = 0
    for index in indices:
        advantages[at:at + len(samples[index].ids)] = samples[index].advantage
        at += len(samples[index].ids)
    return inputs, targets, positions, advantages

