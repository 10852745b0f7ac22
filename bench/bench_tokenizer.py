"""Encode throughput (MB/s, one thread) of our tokenizer vs `tokenizers` and tiktoken, same vocabulary, same text.

    python bench/bench_tokenizer.py                        # ~10 MB from data/corpus/sources/*.jsonl if present,
                                                           # else Python's stdlib sources
    python bench/bench_tokenizer.py --input a.txt b.jsonl --mb 10
    python bench/bench_tokenizer.py --train-vocab 16384 --train-mb 100   # also time the trainer

All three use Qwen's real vocabulary (qwen.tiktoken, fetched into .cache/ if absent) and encode the same
documents one call per document. Every library is held to one thread (RAYON_NUM_THREADS=1; `tokenizers`'
single encode() is sequential anyway). tiktoken gets text that is already NFC (it has no normaliser); ours
and `tokenizers` normalise themselves. "cold" is the first pass of a fresh tokenizer (empty pre-token
caches), "warm" the best of the next passes. The ids of all three are checked to be identical.
Times are the calling thread's CPU time (time.thread_time): on a shared, oversubscribed machine wall time
mostly measures the neighbours; all three libraries encode on the calling thread.
"""
import argparse
import glob
import json
import os
import sys
import time
import unicodedata

os.environ.setdefault("RAYON_NUM_THREADS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def read_docs(paths, max_bytes):
    """Documents from .jsonl ("text" field) or plain text files, taken round-robin so that sources mix."""
    streams = []
    for path in paths:
        with open(path, encoding="utf-8", errors="replace") as f:
            if path.endswith(".jsonl"):
                streams.append([json.loads(line)["text"] for line in f if line.strip()])
            else:
                streams.append([f.read()])
    docs, total, i = [], 0, 0
    while total < max_bytes and any(streams):
        stream = streams[i % len(streams)]
        i += 1
        if stream:
            doc = stream.pop(0)
            docs.append(doc)
            total += len(doc.encode("utf-8"))
    return docs


def default_inputs():
    jsonl = sorted(glob.glob(os.path.join(REPO, "data", "corpus", "sources", "*.jsonl")))
    return jsonl or sorted(glob.glob(os.path.join(os.path.dirname(os.__file__), "**", "*.py"), recursive=True))


def timed(encode, docs, passes):
    """(seconds of the first pass, best seconds of the other passes, ids of the first pass)."""
    times, first_ids = [], None
    for p in range(passes):
        t0 = time.thread_time()
        ids = [encode(d) for d in docs]
        times.append(time.thread_time() - t0)
        if p == 0:
            first_ids = ids
    return times[0], min(times[1:]) if len(times) > 1 else times[0], first_ids


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--input", nargs="*", help="text or .jsonl files (default: see module docstring)")
    parser.add_argument("--mb", type=float, default=10.0, help="megabytes of text to encode")
    parser.add_argument("--passes", type=int, default=3)
    parser.add_argument("--python-mb", type=float, default=1.0, help="MB for the (slow) pure-Python path")
    parser.add_argument("--train-vocab", type=int, default=0, help="also train a vocabulary of this size")
    parser.add_argument("--train-mb", type=float, default=100.0, help="MB of text for --train-vocab")
    args = parser.parse_args()

    import tiktoken
    import tokenizers
    import base64
    from qwen3mini.tokenizer import QWEN_ADDED_TOKENS, load_tokenizer, qwen3_tokenizer_dir, qwen_tiktoken_path
    from qwen3mini.tokenizer.pretokenize import PRETOKENIZE_PATTERN

    docs = read_docs(args.input or default_inputs(), int(args.mb * 1e6))
    nbytes = sum(len(d.encode("utf-8")) for d in docs)
    nfc_docs = [unicodedata.normalize("NFC", d) for d in docs]
    directory = qwen3_tokenizer_dir()
    with open(qwen_tiktoken_path(), "rb") as f:
        ranks = {base64.b64decode(t): int(r) for t, r in (line.split() for line in f if line.strip())}
    specials = {c: 151643 + i for i, (c, _) in enumerate(QWEN_ADDED_TOKENS)}
    print(f"corpus: {len(docs)} documents, {nbytes / 1e6:.2f} MB; python {sys.version.split()[0]}, "
          f"tokenizers {tokenizers.__version__}, tiktoken {tiktoken.__version__}")

    results = {}
    ours = load_tokenizer(directory)
    assert ours._fast is not None, "the C++ extension qwen3mini._bpe is not built"
    results["qwen3mini (C++)"] = timed(ours.encode, docs, args.passes)
    hf = tokenizers.Tokenizer.from_file(os.path.join(directory, "tokenizer.json"))
    results["tokenizers"] = timed(lambda d: hf.encode(d, add_special_tokens=False).ids, docs, args.passes)
    enc = tiktoken.Encoding("qwen", pat_str=PRETOKENIZE_PATTERN, mergeable_ranks=ranks, special_tokens=specials)
    results["tiktoken"] = timed(lambda d: enc.encode(d, allowed_special="all"), nfc_docs, args.passes)

    reference = results["tokenizers"][2]
    for name, (_, _, ids) in results.items():
        assert ids == reference, f"{name} disagrees with tokenizers"
    ntokens = sum(map(len, reference))

    # The pure-Python path on a slice (it is far slower), checked against the same ids.
    py_docs, size = [], 0
    for d in docs:
        if size >= args.python_mb * 1e6:
            break
        py_docs.append(d)
        size += len(d.encode("utf-8"))
    py = load_tokenizer(directory, use_ext=False)
    cold, warm, ids = timed(py.encode, py_docs, 2)
    assert ids == reference[:len(py_docs)], "pure Python disagrees with tokenizers"

    print(f"{ntokens} tokens ({nbytes / ntokens:.2f} bytes/token); identical ids from all")
    print(f"{'tokenizer':<18} {'cold MB/s':>10} {'warm MB/s':>10}")
    for name, (c, w, _) in results.items():
        print(f"{name:<18} {nbytes / c / 1e6:>10.2f} {nbytes / w / 1e6:>10.2f}")
    print(f"{'qwen3mini (Python)':<18} {size / cold / 1e6:>10.2f} {size / warm / 1e6:>10.2f}   (first {size / 1e6:.1f} MB)")
    ratio = results["tokenizers"][1] / results["qwen3mini (C++)"][1]
    print(f"ours / tokenizers (warm): {ratio:.2f}x")
    if args.train_vocab:
        bench_trainer(args)


def bench_trainer(args):
    """CPU and wall time of train_bpe (C++ counting and merge loop) on --train-mb of the same sources."""
    from qwen3mini.tokenizer.trainer import train_bpe
    docs = read_docs(args.input or default_inputs(), int(args.train_mb * 1e6))
    nbytes = sum(len(d.encode("utf-8")) for d in docs)
    cpu, wall = time.process_time(), time.perf_counter()
    tok = train_bpe(docs, args.train_vocab, progress=False)
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    print(f"train_bpe: {nbytes / 1e6:.1f} MB -> {tok.vocab_size} ids in {cpu:.1f} s CPU ({wall:.1f} s wall)")


if __name__ == "__main__":
    main()
