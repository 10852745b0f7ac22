"""The BPE trainer: C++ and Python learn the same merges, and `tokenizers`/`transformers` load the result."""
import base64
import glob
import os
import subprocess
import sys
import unicodedata

import pytest

from qwen3mini.tokenizer import load_tokenizer
from qwen3mini.tokenizer.trainer import count_corpus, learn_merges, train_bpe

from tokenizer_corpus import CORPUS

_STDLIB = sorted(glob.glob(os.path.join(os.path.dirname(os.__file__), "*.py")))


@pytest.fixture(scope="module")
def corpus_files(tmp_path_factory):
    """~300 KB of Python source plus the multilingual corpus, with added tokens sprinkled in."""
    d = tmp_path_factory.mktemp("corpus")
    a, b = d / "a.txt", d / "b.txt"
    a.write_text("".join(open(f, encoding="utf-8").read() for f in _STDLIB[:12]), encoding="utf-8")
    b.write_text(("<|im_start|>user\n" + "\n".join(CORPUS.values()) + "<|im_end|>\n") * 20, encoding="utf-8")
    return [str(a), str(b)]


@pytest.fixture(scope="module")
def held_out():
    return open(_STDLIB[-1], encoding="utf-8").read()[:20000] + "\n".join(CORPUS.values())


def test_cpp_and_python_learn_the_same_merges(corpus_files):
    try:
        from qwen3mini import _bpe as ext
    except ImportError:
        if os.environ.get("QWEN3MINI_REQUIRE_EXT") == "1":
            raise
        pytest.skip("C++ extension qwen3mini._bpe not built")
    counts = count_corpus(corpus_files, ext=None, progress=False)
    assert counts == count_corpus(corpus_files, ext=ext, progress=False)
    assert "<|im_start|>".encode() not in counts and b"user" in counts  # added tokens are not trained on
    py = learn_merges(counts, 300, progress=False)
    cpp = ext.train_merges(list(counts), list(counts.values()), 300, 2)
    assert [tuple(m) for m in cpp] == py


def test_saved_tokenizer_loads_in_tokenizers_and_transformers(corpus_files, held_out, tmp_path):
    tok = train_bpe(corpus_files, vocab_size=1024, out_dir=tmp_path, progress=False)
    assert tok.vocab_size == 1024 and tok.token_to_id["</think>"] == 1023
    ids = tok.encode(held_out)
    assert tok.decode(ids) == unicodedata.normalize("NFC", held_out)
    tokenizers = pytest.importorskip("tokenizers")
    assert tokenizers.Tokenizer.from_file(str(tmp_path / "tokenizer.json")).encode(
        held_out, add_special_tokens=False).ids == ids
    transformers = pytest.importorskip("transformers")
    hf = transformers.AutoTokenizer.from_pretrained(str(tmp_path))
    assert hf.encode(held_out, add_special_tokens=False) == ids
    assert load_tokenizer(tmp_path).encode(held_out) == ids
    # The same ranks as a tiktoken file: merges are derived back from ranks alone.
    rank_file = tmp_path / "small.tiktoken"
    rank_file.write_bytes(b"".join(base64.b64encode(t) + b" %d\n" % i for i, t in enumerate(tok.vocab)))
    from_ranks = load_tokenizer(rank_file)
    assert from_ranks.bpe.merges == tok.bpe.merges and from_ranks.encode(held_out) == ids


def test_merges_only_shorten(corpus_files, held_out):
    small = train_bpe(corpus_files, vocab_size=400, progress=False)
    large = train_bpe(corpus_files, vocab_size=2000, progress=False)
    assert len(large.encode(held_out)) < len(small.encode(held_out)) < len(held_out.encode())


def test_texts_and_errors():
    tok = train_bpe(["hello hello hello world world"] * 3, vocab_size=256 + 26 + 5, progress=False)
    assert tok.decode(tok.encode("hello world")) == "hello world"
    custom = train_bpe(["a b a b <eot> a b"], vocab_size=256 + 1 + 1, added_tokens=[("<eot>", True)],
                       progress=False)
    assert custom.token_to_id == {"<eot>": 257} and custom.encode(" b<eot>") == [256, 257]
    with pytest.raises(ValueError, match="vocab_size=100"):
        train_bpe(["x"], vocab_size=100, progress=False)
    with pytest.raises(ValueError, match="empty"):
        train_bpe([""], vocab_size=300, progress=False)


def test_cli(corpus_files, tmp_path):
    out = tmp_path / "cli"
    subprocess.run([sys.executable, "-m", "qwen3mini.tokenizer.trainer", "--input", *corpus_files,
                    "--vocab-size", "600", "--out", str(out)], check=True, capture_output=True)
    assert load_tokenizer(out).vocab_size == 600
    bad = subprocess.run([sys.executable, "-m", "qwen3mini.tokenizer.trainer", "--input", str(tmp_path / "nope"),
                          "--vocab-size", "600", "--out", str(out)], capture_output=True, text=True)
    assert bad.returncode != 0 and "nope" in bad.stderr


def test_file_chunks_do_not_cut_pretokens(monkeypatch):
    import io
    import random

    from qwen3mini.tokenizer import trainer
    from qwen3mini.tokenizer.trainer import _file_chunks, count_pretokens
    monkeypatch.setattr(trainer, "_CHUNK_BYTES", 50)
    rng = random.Random(0)
    text = "".join(rng.choice(["word ", "x\n", "\n", "  ", "\t\n", " y", "1.", "\r\n", "你好", "\n\n  z", "!\n"])
                   for _ in range(3000))
    chunks = [c for c, _ in _file_chunks(io.StringIO(text))]
    assert len(chunks) > 10 and "".join(chunks) == text
    whole, parts = {}, {}
    count_pretokens(text, whole)
    for c in chunks:
        count_pretokens(c, parts)
    assert parts == whole


@pytest.mark.parametrize("argv,message", [(["--vocab-size", "281"], "--vocab-size 281: at least 282"),
                                          (["--vocab-size", "600", "--min-frequency", "0"], "--min-frequency 0")])
def test_cli_rejects_settings_before_reading_the_corpus(argv, message, tmp_path, capsys):
    from qwen3mini.tokenizer.trainer import main
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("hello world " * 10)
    with pytest.raises(SystemExit) as exit_info:
        main(["--input", str(corpus), "--out", str(tmp_path / "out"), *argv])
    assert exit_info.value.code == 2 and message in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
