"""Tokenize the stage corpora once into memory-mapped uint16 token shards (format: shards.py).

    python -m train.data.build_shards                              # tokenizer: checkpoints/tokenizer-16k
    python -m train.data.build_shards --stages s3 --tokenizer checkpoints/tokenizer-16k --corpus data/corpus --out data/shards

Reads data/corpus/<stage>/<split>.jsonl (or .jsonl.xz) and writes data/shards/<stage>/<split>.{bin,docs.npy,json}.
Every document is followed by `<|endoftext|>`; no other special token is added. The encoder is the project's
tokenizer (`qwen3mini.load_tokenizer`) with its C++ fast path, one process per core (documents stay in
order, so the output does not depend on the number of cores); where that extension is not built, the Rust
`tokenizers` library reads the same tokenizer.json. Both give identical ids (tests/train/test_data_shards.py).
"""
from __future__ import annotations

import argparse
import hashlib
import itertools
import json
import lzma
import multiprocessing
import sys
import time
from pathlib import Path
from typing import Iterator

from tqdm import tqdm

from .shards import write_shard

REPO = Path(__file__).resolve().parents[2]
STAGES = ("s1", "s2", "s3")
SPLITS = ("train", "val")
BATCH_DOCS = 256


def corpus_file(corpus: Path, stage: str, split: str) -> Path:
    for name in (f"{split}.jsonl", f"{split}.jsonl.xz"):
        if (corpus / stage / name).exists():
            return corpus / stage / name
    raise FileNotFoundError(f"no {corpus / stage / split}.jsonl[.xz]: run `python -m train.data.build_corpus` "
                            f"or unpack the carried corpus (train/data/README.md)")


def read_texts(path: Path) -> Iterator[str]:
    opener = lzma.open if path.suffix == ".xz" else open
    with opener(path, "rt", encoding="utf-8") as f:
        for line in f:
            yield json.loads(line)["text"]


def tokenizer_info(path: Path) -> tuple[Path, int, int, str]:
    """(tokenizer.json, `<|endoftext|>` id, vocabulary size with added tokens, sha256 of tokenizer.json)."""
    import qwen3mini

    file = path / "tokenizer.json" if path.is_dir() else path
    if not file.is_file():
        raise FileNotFoundError(f"tokenizer file {file} does not exist "
                                f"(train it with `python -m train.data.train_tokenizer`)")
    tok = qwen3mini.load_tokenizer(file)
    eot = tok.token_to_id.get("<|endoftext|>")
    if eot is None:
        raise ValueError(f"{file}: no <|endoftext|> token")
    return file, eot, tok.vocab_size, hashlib.sha256(file.read_bytes()).hexdigest()


def fast_path_built() -> bool:
    try:
        from qwen3mini import _bpe  # noqa: F401
        return True
    except ImportError:
        return False


_worker_tokenizer = None


def _init_worker(directory: str) -> None:
    global _worker_tokenizer
    import qwen3mini

    _worker_tokenizer = qwen3mini.load_tokenizer(directory)


def _encode(text: str) -> list[int]:
    return _worker_tokenizer.encode(text)


def tokenize_file(tokenizer_file: Path, path: Path) -> Iterator[list[int]]:
    """Token ids of every document of a corpus file, in file order."""
    texts = read_texts(path)
    if fast_path_built():
        with multiprocessing.Pool(initializer=_init_worker, initargs=(str(tokenizer_file.parent),)) as pool:
            yield from pool.imap(_encode, texts, chunksize=16)
        return
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(tokenizer_file))
    while batch := list(itertools.islice(texts, BATCH_DOCS)):
        yield from (enc.ids for enc in tok.encode_batch(batch, add_special_tokens=False))


def build(tokenizer: Path, corpus: Path, out: Path, stages=STAGES, splits=SPLITS) -> dict:
    file, eot, vocab_size, tok_hash = tokenizer_info(tokenizer)
    summary = {}
    for stage in stages:
        for split in splits:
            src = corpus_file(corpus, stage, split)
            t0 = time.time()
            docs = tqdm(tokenize_file(file, src), desc=f"tokenize {stage}/{split}", unit="doc")
            meta = write_shard(out / stage / split, docs, eot, vocab_size,
                               {"tokenizer_sha256": tok_hash, "source": f"{stage}/{src.name}"})
            summary[f"{stage}/{split}"] = {"tokens": meta["num_tokens"], "docs": meta["num_docs"]}
            tqdm.write(f"{stage}/{split}: {meta['num_docs']} docs, {meta['num_tokens']:,} tokens "
                       f"({time.time() - t0:.0f} s)")
    return summary


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tokenizer", type=Path, default=REPO / "checkpoints" / "tokenizer-16k",
                        help="directory with tokenizer.json (or the file)")
    parser.add_argument("--corpus", type=Path, default=REPO / "data" / "corpus")
    parser.add_argument("--out", type=Path, default=REPO / "data" / "shards")
    parser.add_argument("--stages", nargs="*", default=list(STAGES), choices=STAGES)
    args = parser.parse_args(argv)
    summary_file = args.out / "summary.json"
    summary = json.loads(summary_file.read_text()) if summary_file.exists() else {}
    summary.update(build(args.tokenizer, args.corpus, args.out, args.stages))
    tmp = summary_file.with_suffix(".json.tmp")          # a kill while writing leaves the old summary
    tmp.write_text(json.dumps(summary, indent=1, sort_keys=True) + "\n")
    tmp.replace(summary_file)


if __name__ == "__main__":
    try:
        main()
    except (OSError, ValueError) as error:               # a missing input names its file and the command to run
        sys.exit(f"build_shards: error: {error}")
