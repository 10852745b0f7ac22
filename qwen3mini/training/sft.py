"""Supervised fine-tuning on conversations (paper §4.1 cold start, §4.3 fusion, §4.5 off-policy distillation).

Three steps, each usable alone:

* ``render_sample``: a conversation ending in the assistant reply to learn -> token ids and a loss mask. The
  ids are the chat template's (docs/qwen3.md §4) exactly as inference sees them: the prompt part is
  ``apply_chat_template(history, add_generation_prompt=True)`` token for token, and the reply is what the
  model must write after it, ``<think>\\n{thinking}\\n</think>\\n\\n{answer}<|im_end|>``.
* ``pack_rows``: many samples per row of ``seq_len`` tokens; ``PackedBatches`` serves the rows to the
  trainer as (inputs, targets, position_ids) micro-batches, positions restarting at each sample, so that the
  model's training forward keeps attention inside each conversation (``model.forward(position_ids=...)``).
* the loss is pre-training's ``CausalLMLoss`` on those micro-batches, taken only where the target is an
  assistant token (the others are ``IGNORE``); the trainer divides by the global count of those tokens.

What is trained (the mask): every token of the final reply, ``<|im_end|>`` included, nothing of the prompt.
A non-thinking reply is trained with its empty think block ``<think>\\n\\n</think>\\n\\n``: under a ``/no_think``
flag the model writes that block itself (paper Table 9), so it has to learn it. Under ``enable_thinking=False``
(the hard switch: ``infer/chat.py --no-think``, the harness's non-thinking mode) the template puts the same
tokens into the prompt, after a user turn with no flag: rendered with ``enable_thinking=False`` the block is
prompt and the reply is the answer alone (``task_samples.switched_by_template`` picks such samples).
Earlier turns of a multi-turn sample are prompt: the template drops their thinking, so training on them would
teach the model to answer without thinking; a dialogue whose every turn should be learned makes one sample
per assistant turn.
"""
import random

import torch

from .losses import IGNORE

END_OF_TURN = "<|im_end|>"


def render_sample(tokenizer, messages, tools=None, enable_thinking=True) -> tuple[list[int], list[bool]]:
    """(ids, mask) of a conversation whose last message is the assistant reply to learn (a dict with
    ``content`` and, for a thinking reply, ``reasoning_content``; ``tool_calls`` for a reply that calls a tool
    of ``tools``, the schemas the template shows). ``mask[i]`` says whether token i is the model's to write (a
    loss target). ``enable_thinking=False``: the prompt the hard switch opens, the empty think block in it."""
    if not messages or messages[-1].get("role") != "assistant":
        raise ValueError("render_sample: the conversation must end with the assistant reply to learn")
    history = messages[:-1]
    prompt = tokenizer.apply_chat_template(history, tools, tokenize=False, add_generation_prompt=True,
                                           enable_thinking=enable_thinking)
    text = tokenizer.apply_chat_template(messages, tools, tokenize=False, add_generation_prompt=False)
    # The template closes the turn with "<|im_end|>\n"; the newline comes after the stop token, never generated.
    if not (text.startswith(prompt) and text.endswith(END_OF_TURN + "\n")):
        raise ValueError("render_sample: the chat template renders the reply differently from the prompt "
                         "that inference would open")
    prompt_ids, reply_ids = tokenizer.encode(prompt), tokenizer.encode(text[len(prompt):-1])
    return prompt_ids + reply_ids, [False] * len(prompt_ids) + [True] * len(reply_ids)


def pack_rows(lengths: list[int], seq_len: int, order: list[int], open_rows: int = 8) -> list[list[int]]:
    """Samples (by index, in ``order``) packed into rows of at most ``seq_len`` tokens: each goes into the
    first of the last ``open_rows`` rows with room (first fit over a window: little padding, and the rows
    keep the shuffled order's mix). A sample longer than ``seq_len`` is an error: drop such samples first."""
    rows, room = [], []
    for index in order:
        if lengths[index] > seq_len:
            raise ValueError(f"pack_rows: sample {index} has {lengths[index]} tokens, more than --seq_len {seq_len}")
        start = max(0, len(rows) - open_rows)
        fit = next((r for r in range(start, len(rows)) if room[r] >= lengths[index]), None)
        if fit is None:
            rows.append([])
            room.append(seq_len)
            fit = len(rows) - 1
        rows[fit].append(index)
        room[fit] -= lengths[index]
    return rows


def packed_row(samples, indices, seq_len: int, pad_id: int) -> tuple:
    """One row: (inputs, targets, position_ids), LongTensors [seq_len]. A sample's target at token i is token
    i+1 where that one is masked in, else IGNORE; its last token has none (the next token is another
    sample's). Padding fills the end as a sequence of its own with no targets."""
    inputs, targets, positions = [], [], []
    for index in indices:
        ids, mask = samples[index]
        inputs += ids
        targets += [t if m else IGNORE for t, m in zip(ids[1:], mask[1:])] + [IGNORE]
        positions += range(len(ids))
    pad = seq_len - len(inputs)
    inputs, targets, positions = inputs + [pad_id] * pad, targets + [IGNORE] * pad, positions + list(range(pad))
    return tuple(torch.tensor(x, dtype=torch.long) for x in (inputs, targets, positions))


def split_samples(samples, seq_len: int, val_share: float, seed: int, stats, stage: str) -> tuple[list, list]:
    """(train, val) [(ids, mask)] of rendered ``samples`` [(ids, mask, (family, level), kind)]: a sample
    longer than a row dropped (counted as ``longer_than_row``), a ``val_share`` held out by its index (seeded),
    each training sample counted in ``stats`` (task_samples.SampleStats) under its cell by kind and tokens. A
    stage left without any training sample is an error (ValueError naming ``stage``)."""
    train, val = [], []
    for i, (ids, mask, cell, kind) in enumerate(samples):
        if len(ids) > seq_len:
            stats.add(*cell, "longer_than_row")
            continue
        split = val if random.Random(f"{seed}|val|{i}").random() < val_share else train
        split.append((ids, mask))
        if split is train:
            stats.add(*cell, kind)
            stats.add(*cell, "tokens", len(ids))
    if not train:
        raise ValueError(f"{stage}: no training sample (every reply was rejected or too long)")
    return train, val or train[:1]


class PackedBatches:
    """A batch source for the trainer over rendered samples ``[(ids, mask), ...]``: each epoch shuffles the
    samples (seeded by ``seed`` and the epoch), packs them into rows, and serves ``micro_batch`` rows per
    process; rank r reads slice r of each global micro-batch. The state (epoch, rows served in it) resumes
    exactly. ``shuffle=False`` (validation) keeps the samples' order in every epoch."""

    def __init__(self, samples, seq_len: int, micro_batch: int, info, seed: int, pad_id: int, vocab_size: int,
                 shuffle: bool = True):
        if not samples:
            raise ValueError("PackedBatches: no samples")
        self.samples, self.seq_len, self.micro_batch, self.info = samples, seq_len, micro_batch, info
        self.seed, self.pad_id, self.vocab_size, self.shuffle = seed, pad_id, vocab_size, shuffle
        self.lengths = [len(ids) for ids, _ in samples]
        self.epoch, self.position, self._rows = 0, 0, None

    def rows(self, epoch: int) -> list[list[int]]:
        order = list(range(len(self.samples)))
        if self.shuffle:
            random.Random(f"{self.seed}|{epoch}").shuffle(order)
        return pack_rows(self.lengths, self.seq_len, order)

    def next_batch(self) -> tuple:
        batch = []
        for n in range(self.micro_batch * self.info.world_size):
            if self._rows is None:
                self._rows = self.rows(self.epoch)
            if n // self.micro_batch == self.info.rank:
                batch.append(packed_row(self.samples, self._rows[self.position], self.seq_len, self.pad_id))
            self.position += 1
            if self.position == len(self._rows):
                self.epoch, self.position, self._rows = self.epoch + 1, 0, None
        return tuple(torch.stack(column) for column in zip(*batch))

    def state_dict(self) -> dict:
        return {"epoch": self.epoch, "position": self.position}

    def load_state_dict(self, state: dict):
        self.epoch, self.position, self._rows = state["epoch"], state["position"], None
