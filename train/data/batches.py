"""Batch sources for the trainer (qwen3mini/training/trainer.py) over the token shards of shards.py."""
import os

import torch

from .retrieval import with_retrieval
from .shards import TokenShards


class ShardBatches:
    """Micro-batches of a ``TokenShards``: its ``batch`` (fixed windows) or, with ``long=True``, its
    ``long_batch`` (S3's length mix), a ``retrieval_share`` of those made synthetic retrieval samples with
    ``encode`` (retrieval.py). The position (samples drawn by all ranks) is the whole state; rank r reads
    slice r of each global micro-batch, so DDP sees what one process would."""

    def __init__(self, shards: TokenShards, micro_batch: int, seq_len: int, info, long: bool = False,
                 retrieval_share: float = 0.0, encode=None):
        self.shards, self.micro_batch, self.seq_len, self.info = shards, micro_batch, seq_len, info
        self.sample = shards.long_batch if long else shards.batch
        self.retrieval_share, self.encode = retrieval_share, encode
        self.vocab_size = shards.vocab_size
        self.position = 0

    def next_batch(self):
        inputs, targets = self.sample(self.position, self.micro_batch, self.seq_len, rank=self.info.rank,
                                      world_size=self.info.world_size)
        if self.retrieval_share:
            first = self.position + self.info.rank * self.micro_batch
            rows = with_retrieval(torch.cat([inputs, targets[:, -1:]], dim=1), range(first, first + self.micro_batch),
                                  self.retrieval_share, self.encode, self.shards.seed)
            inputs, targets = rows[:, :-1], rows[:, 1:]
        self.position += self.micro_batch * self.info.world_size
        return inputs, targets

    def state_dict(self):
        return {"position": self.position}

    def load_state_dict(self, state):
        self.position = state["position"]


def stage_batches(settings, info, long: bool = False, retrieval_share: float = 0.0):
    """(train, val) batch sources of a stage: the shards ``settings.data``/train.* and val.*; a
    ``retrieval_share`` of the training samples made retrieval samples with ``settings.tokenizer`` (the
    validation samples stay the stage's own text, comparable with runs without them)."""
    if not os.path.isdir(settings.data):
        raise FileNotFoundError(f"--data {settings.data}: no such folder; build the token shards with "
                                f"`python -m train.data.build_shards` (train/data/README.md)")
    encode = None
    if retrieval_share:
        import qwen3mini
        encode = qwen3mini.load_tokenizer(settings.tokenizer).encode
    return tuple(ShardBatches(TokenShards(os.path.join(settings.data, split), seed=settings.seed),
                              settings.micro_batch, settings.seq_len, info, long=long,
                              retrieval_share=retrieval_share if split == "train" else 0.0, encode=encode)
                 for split in ("train", "val"))
