"""Fixtures: the real Qwen vocabulary (qwen.tiktoken from the dashscope wheel, fetched once into .cache/) and
the two references built from the same ranks: a tiktoken Encoding and a `tokenizers` Tokenizer."""
import base64

import pytest

from qwen3mini.tokenizer import QWEN_ADDED_TOKENS, load_tokenizer, qwen3_tokenizer_dir, qwen_tiktoken_path
from qwen3mini.tokenizer.pretokenize import PRETOKENIZE_PATTERN, bytes_to_token


@pytest.fixture(scope="session")
def qwen_tiktoken():
    return qwen_tiktoken_path()


@pytest.fixture(scope="session")
def qwen_ranks(qwen_tiktoken):
    with open(qwen_tiktoken, "rb") as f:
        return {base64.b64decode(tok): int(rank) for tok, rank in (line.split() for line in f if line.strip())}


@pytest.fixture(scope="session")
def qwen_dir(qwen_tiktoken):
    return qwen3_tokenizer_dir()


@pytest.fixture(scope="session")
def tok(qwen_dir):
    """Ours, on the C++ path when it is built (required in CI)."""
    return load_tokenizer(qwen_dir)


@pytest.fixture(scope="session")
def tok_py(qwen_dir):
    """Ours, pure Python."""
    return load_tokenizer(qwen_dir, use_ext=False)


@pytest.fixture(scope="session")
def added_ids():
    return {content: 151643 + i for i, (content, _) in enumerate(QWEN_ADDED_TOKENS)}


@pytest.fixture(scope="session")
def ref_tiktoken(qwen_ranks, added_ids):
    tiktoken = pytest.importorskip("tiktoken")
    return tiktoken.Encoding("qwen", pat_str=PRETOKENIZE_PATTERN, mergeable_ranks=qwen_ranks,
                             special_tokens=added_ids)


@pytest.fixture(scope="session")
def ref_tokenizers(qwen_ranks, tok):
    """A `tokenizers` Tokenizer assembled with its own API (not from our saved file), Qwen's pipeline (docs/qwen3.md §3)."""
    tk = pytest.importorskip("tokenizers")
    from tokenizers import AddedToken, Regex, decoders, models, normalizers, pre_tokenizers
    vocab = {bytes_to_token(b): r for b, r in qwen_ranks.items()}
    names = {r: name for name, r in vocab.items()}
    merges = [(names[a], names[b]) for a, b, _ in tok.bpe.merges]
    t = tk.Tokenizer(models.BPE(vocab, merges, fuse_unk=False, byte_fallback=False, ignore_merges=False))
    t.normalizer = normalizers.NFC()
    t.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(PRETOKENIZE_PATTERN), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=False, use_regex=False)])
    t.decoder = decoders.ByteLevel()
    for content, special in QWEN_ADDED_TOKENS:  # one at a time: ids follow the order of addition
        token = AddedToken(content, normalized=False, special=special)
        (t.add_special_tokens if special else t.add_tokens)([token])
    assert t.token_to_id("</think>") == 151668
    return t
