"""Memory-mapped token shards and the batch sampler the training stages use.

On disk, one stage split (e.g. `data/shards/s1/train`) is three files:

* `train.bin`       the token ids as little-endian uint16, every document followed by `<|endoftext|>`
                    (paper §3 / docs/qwen3.md §3: `<|endoftext|>` separates documents in pre-training);
* `train.docs.npy`  int64 start offset of every document, plus the total length at the end;
* `train.json`      metadata: format, dtype, vocab_size, eot_id, num_tokens, num_docs, tokenizer hash.

Usage (the training scripts):

    data = TokenShards("data/shards/s1/train")
    x, y = data.batch(position, batch_size, seq_len, rank=rank, world_size=world)   # LongTensors [B, T]
    position += batch_size * world                                                   # after every micro-batch

`position` counts the samples drawn so far by all ranks; it is the whole data state, so a checkpoint stores
this one integer and a resumed run continues with exactly the same batches. Sample k is the fixed-length
window `perm_e[k mod W]` of epoch e = k div W, where W = (num_tokens - 1) // seq_len windows and perm_e is a
permutation seeded by (seed, e): every token is seen once per epoch, and rank r of a world of n reads the same
samples as slice r of a single process with an n-times larger batch (so DDP matches single-process training).

`long_batch` is the S3 sampler (paper §3: "75% documents of 16,384-32,768 tokens and 25% of 4,096-16,384"
at length 32,768, i.e. at sequence length L): 25% of the samples start at a document of L/8 to L/2 tokens
(packed with the documents after it), 75% are windows of a single document of at least L/2 tokens (from a
random offset inside it when it is longer than L). Sample k depends only on (seed, k), so it is resumable
and DDP-consistent in the same way.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

FORMAT = "qwen3mini-tokens-v1"
# S3 length mix at sequence length L: (probability, min_len/L, max_len/L) -- paper §3, scaled to L.
S3_LENGTH_MIX = ((0.75, 1 / 2, 1.0), (0.25, 1 / 8, 1 / 2))


def shard_paths(prefix: str | Path) -> tuple[Path, Path, Path]:
    """(tokens .bin, document offsets .docs.npy, metadata .json) of a shard prefix such as data/shards/s1/train."""
    prefix = Path(prefix)
    if prefix.suffix == ".bin":
        prefix = prefix.with_suffix("")
    return prefix.with_suffix(".bin"), prefix.with_suffix(".docs.npy"), prefix.with_suffix(".json")


def write_shard(prefix: str | Path, docs_tokens, eot_id: int, vocab_size: int, extra_meta: dict | None = None
                ) -> dict:
    """Write documents (an iterable of token-id sequences) as one shard, each followed by `eot_id`.

    Written to temporary names and renamed at the end, so a reader never sees a half-written shard.
    Returns the metadata.
    """
    if vocab_size > 2**16:
        raise ValueError(f"vocab_size {vocab_size} does not fit uint16 shards")
    bin_path, docs_path, meta_path = shard_paths(prefix)
    bin_path.parent.mkdir(parents=True, exist_ok=True)
    tmp_bin = bin_path.with_suffix(".bin.tmp")
    starts, total = [], 0
    eot = np.array([eot_id], dtype="<u2")
    with open(tmp_bin, "wb") as f:
        for ids in docs_tokens:
            arr = np.asarray(ids, dtype=np.int64)
            if arr.size and (arr.min() < 0 or arr.max() >= vocab_size):
                raise ValueError(f"{prefix}: token id out of range [0, {vocab_size})")
            starts.append(total)
            f.write(arr.astype("<u2").tobytes())
            f.write(eot.tobytes())
            total += arr.size + 1
    starts.append(total)
    meta = {"format": FORMAT, "dtype": "uint16", "vocab_size": vocab_size, "eot_id": eot_id,
            "num_tokens": total, "num_docs": len(starts) - 1, **(extra_meta or {})}
    with open(docs_path.with_suffix(".tmp"), "wb") as f:
        np.save(f, np.asarray(starts, dtype=np.int64))
    meta_path.with_suffix(".json.tmp").write_text(json.dumps(meta, indent=1) + "\n")
    tmp_bin.replace(bin_path)
    docs_path.with_suffix(".tmp").replace(docs_path)
    meta_path.with_suffix(".json.tmp").replace(meta_path)
    return meta


class TokenShards:
    """A read-only, memory-mapped view of one shard (see the module docstring for the layout and sampling)."""

    def __init__(self, prefix: str | Path, seed: int = 0):
        bin_path, docs_path, meta_path = shard_paths(prefix)
        self.prefix = str(prefix)
        for p in (bin_path, docs_path, meta_path):
            if not p.exists():
                raise FileNotFoundError(f"token shard file {p} is missing "
                                        f"(build it with `python -m train.data.build_shards`)")
        self.meta = json.loads(meta_path.read_text())
        if self.meta.get("format") != FORMAT:
            raise ValueError(f"{meta_path}: unknown format {self.meta.get('format')!r}, expected {FORMAT!r}")
        self.tokens = np.memmap(bin_path, dtype="<u2", mode="r")
        if self.tokens.size != self.meta["num_tokens"]:
            raise ValueError(f"{bin_path}: {self.tokens.size} tokens, metadata says {self.meta['num_tokens']}")
        self.doc_starts = np.load(docs_path)
        self.eot_id, self.vocab_size, self.seed = self.meta["eot_id"], self.meta["vocab_size"], seed
        self._perm_cache: dict[tuple[int, int], np.ndarray] = {}

    def __len__(self) -> int:
        return int(self.tokens.size)

    @property
    def num_docs(self) -> int:
        return len(self.doc_starts) - 1

    def document(self, i: int) -> np.ndarray:
        """Token ids of document i, without its trailing `<|endoftext|>`."""
        return np.asarray(self.tokens[self.doc_starts[i]:self.doc_starts[i + 1] - 1])

    def num_windows(self, seq_len: int) -> int:
        n = (len(self) - 1) // seq_len
        if n < 1:
            raise ValueError(f"{self.prefix}: {len(self)} tokens, too short for --seq_len {seq_len}")
        return n

    def _permutation(self, seq_len: int, epoch: int) -> np.ndarray:
        key = (seq_len, epoch)
        if key not in self._perm_cache:
            self._perm_cache.clear()  # only the current epoch is needed
            rng = np.random.default_rng([self.seed, epoch, seq_len])
            self._perm_cache[key] = rng.permutation(self.num_windows(seq_len))
        return self._perm_cache[key]

    def window(self, k: int, seq_len: int) -> np.ndarray:
        """Sample k: seq_len + 1 consecutive tokens (input and shifted target) as int64."""
        epoch, i = divmod(k, self.num_windows(seq_len))
        start = int(self._permutation(seq_len, epoch)[i]) * seq_len
        return np.asarray(self.tokens[start:start + seq_len + 1], dtype=np.int64)

    def _rank_samples(self, position: int, batch_size: int, rank: int, world_size: int) -> range:
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} is not in [0, world_size={world_size})")
        first = position + rank * batch_size
        return range(first, first + batch_size)

    def batch(self, position: int, batch_size: int, seq_len: int, rank: int = 0, world_size: int = 1
              ) -> tuple[torch.Tensor, torch.Tensor]:
        """Inputs and targets [batch_size, seq_len] of this rank for the global sample position `position`."""
        rows = np.stack([self.window(k, seq_len) for k in self._rank_samples(position, batch_size, rank, world_size)])
        rows = torch.from_numpy(rows)
        return rows[:, :-1], rows[:, 1:]

    # ------------------------------------------------------------------------------------------- S3

    def doc_lengths(self) -> np.ndarray:
        """Length of every document in tokens, including its `<|endoftext|>`."""
        return np.diff(self.doc_starts)

    def long_window(self, k: int, seq_len: int, mix=S3_LENGTH_MIX) -> np.ndarray:
        """Sample k of the S3 sampler: seq_len + 1 tokens. Choose a length bucket (prob, lo, hi) of `mix`,
        then a document of lo*seq_len to hi*seq_len tokens and start the window at its beginning (a short
        document is followed by the next ones, as in packed pre-training). The top bucket (hi >= 1) also
        takes the documents longer than the window, from a random offset inside them, so that every window
        of that bucket is one coherent document. An empty bucket falls back to all documents."""
        rng = np.random.default_rng([self.seed, k, seq_len, 3])
        probs = np.array([p for p, _, _ in mix], dtype=np.float64)
        _, lo, hi = mix[rng.choice(len(mix), p=probs / probs.sum())]
        lengths = self.doc_lengths()
        fits = self.doc_starts[:-1] + seq_len + 1 <= len(self)  # a full window starts there
        in_bucket = (lengths >= lo * seq_len) & ((lengths <= hi * seq_len + 1) | (hi >= 1.0))
        candidates = np.flatnonzero(fits & in_bucket)
        if candidates.size == 0:
            candidates = np.flatnonzero(fits)
        if candidates.size == 0:
            raise ValueError(f"{self.prefix}: {len(self)} tokens, too short for --seq_len {seq_len}")
        doc = candidates[rng.integers(candidates.size)]
        start = int(self.doc_starts[doc]) + int(rng.integers(max(1, lengths[doc] - seq_len)))
        return np.asarray(self.tokens[start:start + seq_len + 1], dtype=np.int64)

    def long_batch(self, position: int, batch_size: int, seq_len: int, rank: int = 0, world_size: int = 1,
                   mix=S3_LENGTH_MIX) -> tuple[torch.Tensor, torch.Tensor]:
        """Like `batch`, with samples from `long_window` (the S3 length mix)."""
        samples = self._rank_samples(position, batch_size, rank, world_size)
        rows = torch.from_numpy(np.stack([self.long_window(k, seq_len, mix) for k in samples]))
        return rows[:, :-1], rows[:, 1:]
