"""Train the small models' byte-level BPE on a sample of the corpus (all stages' domains).

    python -m train.data.train_tokenizer                      # 16,384 ids -> checkpoints/tokenizer-16k
    python -m train.data.train_tokenizer --vocab-size 8192 --out checkpoints/tokenizer-8k

The sample takes a fixed fraction of the S1 and S2 training documents (chosen by hash, so deterministic;
validation documents are never used), which covers every domain: dictionary prose, manuals, translations,
code and the synthetic problems. The trainer is the project's own (`qwen3mini.tokenizer.trainer.train_bpe`,
docs/qwen3.md §3: Qwen's pre-tokenizer regex, NFC, byte-level alphabet); it appends Qwen3's 26 added tokens at the end
of the vocabulary, so `<|endoftext|>`, `<|im_start|>`, `<think>`... keep their relative order and the Qwen3
chat template works unchanged.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from tqdm import tqdm

from .build_corpus import DATA, REPO, keep_fraction, read_jsonl

# The original Qwen3 hybrid chat template (docs/qwen3.md §4), kept by the tokenizer's tests as a fixture; saved into
# tokenizer_config.json so that transformers' apply_chat_template works on the small tokenizer too.
QWEN3_CHAT_TEMPLATE = REPO / "tests" / "tokenizer" / "qwen3_chat_template.jinja"
# Fraction of each stage's training documents that goes into the tokenizer sample.
SAMPLE_FRACTION = {"s1": 0.2, "s2": 0.1}


def write_sample(corpus: Path, out_file: Path, fractions=SAMPLE_FRACTION) -> int:
    """Write the sampled documents, separated by blank lines, to `out_file`; returns its size in bytes."""
    out_file.parent.mkdir(parents=True, exist_ok=True)
    with open(out_file, "w", encoding="utf-8") as f:
        for stage, fraction in fractions.items():
            for doc in tqdm(read_jsonl(corpus / stage / "train.jsonl"), desc=f"sample {stage}", unit="doc"):
                if keep_fraction(doc["id"], fraction, f"tokenizer-{stage}"):
                    f.write(doc["text"] + "\n\n")
    return out_file.stat().st_size


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--vocab-size", type=int, default=16384, help="all ids, the 26 added tokens included")
    parser.add_argument("--corpus", type=Path, default=DATA / "corpus", help="the stage corpora of build_corpus")
    parser.add_argument("--out", type=Path, default=None, help="default: checkpoints/tokenizer-<vocab/1024>k")
    args = parser.parse_args(argv)
    if not 8192 <= args.vocab_size <= 2**16:
        parser.error(f"--vocab-size {args.vocab_size}: expected 8192..65536 (uint16 shards)")
    out = args.out or REPO / "checkpoints" / f"tokenizer-{args.vocab_size // 1024}k"
    for stage in SAMPLE_FRACTION:
        if not (args.corpus / stage / "train.jsonl").is_file():
            parser.error(f"{args.corpus / stage / 'train.jsonl'} is missing: build the corpus first "
                         f"(`python -m train.data.build_corpus`, train/data/README.md)")

    from qwen3mini.tokenizer.trainer import train_bpe

    sample = DATA / "tokenizer_sample.txt"
    size = write_sample(args.corpus, sample)
    print(f"tokenizer sample: {size / 1e6:.1f} MB -> training {args.vocab_size} ids into {out}")
    tok = train_bpe([str(sample)], vocab_size=args.vocab_size)
    tok.save(str(out), chat_template=QWEN3_CHAT_TEMPLATE.read_text(encoding="utf-8").rstrip("\n"))
    info = {"vocab_size": args.vocab_size, "sample_bytes": size, "sample_fractions": SAMPLE_FRACTION,
            "command": f"python -m train.data.train_tokenizer --vocab-size {args.vocab_size}"}
    (out / "training_info.json").write_text(json.dumps(info, indent=1) + "\n")


if __name__ == "__main__":
    main()
