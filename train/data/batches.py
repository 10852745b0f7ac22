"""Batch sources for the trainer (qwen3mini/training/trainer.py) over the token shards of shards.py."""
import os

from .shards import TokenShards


class ShardBatches:
    """Micro-batches of a ``TokenShards``: its ``batch`` (fixed windows) or, with ``long=True``, its
    ``long_batch`` (S3's length mix). The position (samples drawn by all ranks) is the whole state; rank r
    reads slice r of each global micro-batch, so DDP sees what one process would."""

    def __init__(self, shards: TokenShards, micro_batch: int, seq_len: int, info, long: bool = False):
        self.shards, self.micro_batch, self.seq_len, self.info = shards, micro_batch, seq_len, info
        self.sample = shards.long_batch if long else shards.batch
        self.vocab_size = shards.vocab_size
        self.position = 0

    def next_batch(self):
        batch = self.sample(self.position, self.micro_batch, self.seq_len, rank=self.info.rank,
                            world_size=self.info.world_size)
        self.position += self.micro_batch * self.info.world_size
        return batch

    def state_dict(self):
        return {"position": self.position}

    def load_state_dict(self, state):
        self.position = state["position"]


def stage_batches(settings, info, long: bool = False):
    """(train, val) batch sources of a stage: the shards ``settings.data``/train.* and val.*."""
    if not os.path.isdir(settings.data):
        raise FileNotFoundError(f"--data {settings.data}: no such folder; build the token shards with "
                                f"`python -m train.data.build_shards` (train/data/README.md)")
    return tuple(ShardBatches(TokenShards(os.path.join(settings.data, split), seed=settings.seed),
                              settings.micro_batch, settings.seq_len, info, long=long) for split in ("train", "val"))
