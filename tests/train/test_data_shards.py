"""Token shards: byte-identical rebuilds, <|endoftext|> between documents, and the batch samplers
(deterministic, resumable from one integer, DDP slices equal to the single-process batch)."""
import hashlib
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))
from train.data import build_shards, synthetic  # noqa: E402
from train.data.shards import TokenShards, shard_paths, write_shard  # noqa: E402

TOKENIZER = REPO / "checkpoints" / "tokenizer-16k"
EOT = 7


def _docs(n=40, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.integers(8, 500, size=int(rng.integers(1, 300))).tolist() for _ in range(n)]


@pytest.fixture
def shard(tmp_path):
    docs = _docs()
    write_shard(tmp_path / "s" / "train", docs, eot_id=EOT, vocab_size=512)
    return tmp_path / "s" / "train", docs


def test_layout_documents_followed_by_eot(shard):
    data, docs = TokenShards(shard[0]), shard[1]
    assert data.num_docs == len(docs) and len(data) == sum(len(d) + 1 for d in docs)
    assert data.tokens.tolist() == [t for d in docs for t in d + [EOT]]
    for i, d in enumerate(docs):
        assert data.document(i).tolist() == d
        assert data.tokens[data.doc_starts[i + 1] - 1] == EOT


def test_write_is_deterministic_and_checks_range(tmp_path):
    for name in ("a", "b"):
        write_shard(tmp_path / name, _docs(), eot_id=EOT, vocab_size=512)
    for pa, pb in zip(shard_paths(tmp_path / "a"), shard_paths(tmp_path / "b")):
        assert pa.read_bytes() == pb.read_bytes()
    with pytest.raises(ValueError, match="out of range"):
        write_shard(tmp_path / "c", [[1, 2, 600]], eot_id=EOT, vocab_size=512)
    with pytest.raises(FileNotFoundError, match="missing"):
        TokenShards(tmp_path / "nothing")


def test_epoch_covers_every_window_once(shard):
    data = TokenShards(shard[0])
    seq = 16
    w = data.num_windows(seq)
    tokens = np.asarray(data.tokens, dtype=np.int64)
    start_of = {tokens[s:s + seq + 1].tobytes(): s for s in range(0, w * seq, seq)}
    seen = [start_of[data.window(k, seq).tobytes()] for k in range(w)]
    assert sorted(seen) == list(range(0, w * seq, seq))
    # the next epoch uses another order
    assert not all(np.array_equal(data.window(k, seq), data.window(k + w, seq)) for k in range(w))


def test_batches_resume_and_shard_across_ranks(shard):
    data = TokenShards(shard[0])
    x, y = data.batch(position=12, batch_size=4, seq_len=16)
    assert x.dtype == torch.int64 and x.shape == (4, 16) and torch.equal(x[:, 1:], y[:, :-1])
    # resume: a fresh reader at the same position gives the same batch
    x2, _ = TokenShards(shard[0]).batch(12, 4, 16)
    assert torch.equal(x, x2)
    # DDP: ranks 0 and 1 with batch 2 read the two halves of the single-process batch of 4
    r0, _ = data.batch(12, 2, 16, rank=0, world_size=2)
    r1, _ = data.batch(12, 2, 16, rank=1, world_size=2)
    assert torch.equal(torch.cat([r0, r1]), x)
    with pytest.raises(ValueError, match="rank"):
        data.batch(0, 2, 16, rank=2, world_size=2)


def test_long_batch_starts_at_documents_of_the_requested_length(tmp_path):
    lengths = [5, 40, 60, 100, 120, 7, 90, 64, 20, 33] * 5
    docs = [[10 + i % 50] * n for i, n in enumerate(lengths)]
    write_shard(tmp_path / "long", docs, eot_id=EOT, vocab_size=512)
    data = TokenShards(tmp_path / "long")
    seq = 128
    tokens = np.asarray(data.tokens, dtype=np.int64)
    doc_at = {tokens[s:s + seq + 1].tobytes(): i for i, s in enumerate(data.doc_starts[:-1]) if s + seq < len(data)}
    long_docs = 0
    for k in range(200):
        n = lengths[doc_at[data.long_window(k, seq).tobytes()]] + 1
        assert seq // 8 <= n <= seq + 1
        long_docs += n >= seq // 2
    assert 0.6 < long_docs / 200 < 0.9  # 75% from the long bucket
    a, _ = data.long_batch(3, 4, seq, rank=1, world_size=2)
    b, _ = data.long_batch(3, 8, seq)
    assert torch.equal(a, b[4:])


@pytest.fixture(scope="module")
def tiny_corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("corpus")
    docs = [t for _, t in synthetic.corpus(12, seed=5)] + ["Ünïcødé: 日本語のテキスト, русский текст.\n\n\tdef f(x):  return x"]
    for stage in ("s1",):
        for split in ("train", "val"):
            (root / stage).mkdir(exist_ok=True)
            with open(root / stage / f"{split}.jsonl", "w") as f:
                for d in (docs if split == "train" else docs[:3]):
                    f.write(json.dumps({"id": "x", "text": d}, ensure_ascii=False) + "\n")
    return root, docs


def test_build_shards_deterministic_and_decodes_back(tiny_corpus, tmp_path, monkeypatch):
    from tokenizers import Tokenizer

    corpus, docs = tiny_corpus
    for out in ("a", "b"):
        build_shards.build(TOKENIZER, corpus, tmp_path / out, stages=["s1"])
    # the Rust `tokenizers` path (used where the C++ extension is not built) writes the same bytes
    monkeypatch.setattr(build_shards, "fast_path_built", lambda: False)
    build_shards.build(TOKENIZER, corpus, tmp_path / "hf", stages=["s1"])
    digest = {out: [hashlib.sha256(p.read_bytes()).hexdigest() for p in shard_paths(tmp_path / out / "s1" / "train")]
              for out in ("a", "b", "hf")}
    assert digest["a"] == digest["b"] == digest["hf"]
    data = TokenShards(tmp_path / "a" / "s1" / "train")
    tok = Tokenizer.from_file(str(TOKENIZER / "tokenizer.json"))
    assert data.eot_id == tok.token_to_id("<|endoftext|>")
    assert data.num_docs == len(docs)
    assert int((data.tokens == data.eot_id).sum()) == len(docs)  # <|endoftext|> only as separator
    for i, d in enumerate(docs):
        assert tok.decode(data.document(i).tolist(), skip_special_tokens=False) == d


def test_long_window_inside_documents_longer_than_the_window(tmp_path):
    lengths = [300, 50, 1000, 30, 700]
    first = np.cumsum([0] + lengths) + 100  # every token id occurs once: a window tells where it came from
    docs = [list(range(first[i], first[i] + n)) for i, n in enumerate(lengths)]
    write_shard(tmp_path / "l", docs, eot_id=EOT, vocab_size=4096)
    data = TokenShards(tmp_path / "l")
    used, windows = set(), set()
    for k in range(100):
        body = data.long_window(k, 128, mix=((1.0, 0.5, 1.0),))[:-1]
        assert np.array_equal(body, np.arange(body[0], body[0] + 128))  # consecutive: one document, no separator
        used.add(int(np.searchsorted(first, body[0], side="right") - 1))
        windows.add(int(body[0]))
    assert used == {0, 2, 4}  # the three documents longer than half the window
    assert len(windows) > 50  # from random offsets inside them
