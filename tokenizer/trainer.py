"""Train a byte-level BPE vocabulary with Qwen's pre-tokenizer and added tokens (docs/qwen3.md §3).

    from qwen3mini.tokenizer.trainer import train_bpe
    tok = train_bpe(["corpus.txt"], vocab_size=16384, out_dir="tok16k")   # or a list of strings
    python -m qwen3mini.tokenizer.trainer --input a.txt b.txt --vocab-size 16384 --out tok16k

How it works:
1. Count pre-tokens. Text is split on added tokens (which are never trained on), NFC-normalised and cut by
   the same regex as encoding. Only the *distinct* pre-tokens and their counts matter from here on: a large
   corpus becomes a much smaller table of short "words".
2. Start from the 256 byte tokens (id = byte value) and count every adjacent pair, weighted by word count.
3. Repeatedly merge the most frequent pair (ties: the smaller ids first) into a new token. Only the words
   that contain the pair change, so only their pairs are re-counted: we keep, per pair, the set of words it
   occurs in, and a max-heap of counts whose stale entries are fixed up when they surface. This is what makes
   a 16k vocabulary on a corpus of many megabytes practical (timings: bench/RESULTS.md).
4. Append the 26 added tokens and save tokenizer.json, vocab.json, merges.txt, tokenizer_config.json.

``vocab_size`` counts everything, added tokens included, so ids run 0..vocab_size-1.
The merge loop runs in C++ (csrc/bpe/bpe.cpp, ``train_merges``) when built; this file's Python loop is the
readable reference and gives the identical merges.
"""
import argparse
import heapq
import os
from collections import Counter, defaultdict

from tqdm import tqdm

from .added_tokens import QWEN_ADDED_TOKENS, AddedToken, AddedTokenSplitter
from .pretokenize import normalize, pretokenize
from .tokenizer import Tokenizer, _load_extension

_CHUNK_BYTES = 1 << 20


# --------------------------------------------------------------------------------------- 1. count pre-tokens
def _is_file(item) -> bool:
    """Paths are files; a str is a file if it names an existing one (and cannot be a text: short, one line)."""
    return isinstance(item, os.PathLike) or (isinstance(item, str) and len(item) < 4096 and "\n" not in item
                                             and os.path.isfile(item))


def _iter_chunks(texts_or_files):
    """Yield (text, size in bytes) chunks. Elements that are paths of existing files are read in ~1 MB
    chunks; other strings are texts."""
    if isinstance(texts_or_files, (str, os.PathLike)):
        texts_or_files = [texts_or_files]
    for item in texts_or_files:
        if not _is_file(item):
            if not isinstance(item, str):
                raise TypeError(f"train_bpe: expected texts or file paths, got {type(item).__name__}")
            yield item, len(item.encode("utf-8"))
            continue
        with open(item, encoding="utf-8", errors="replace") as f:
            yield from _file_chunks(f)


def _file_chunks(f):
    """~1 MB chunks of an open text file, each cut just before a line that starts with a non-space
    character: no pre-token spans such a cut, so counting chunk by chunk equals counting the whole file."""
    carry = ""
    while True:
        chunk = carry + f.read(_CHUNK_BYTES)
        carry = ""
        if not chunk:
            return
        chunk += f.readline()  # finish the current line
        while True:
            line = f.readline()
            if not line or not line[0].isspace():
                carry = line
                break
            chunk += line  # a line starting with whitespace may continue a whitespace pre-token
        yield chunk, len(chunk.encode("utf-8"))


def _total_bytes(texts_or_files):
    items = [texts_or_files] if isinstance(texts_or_files, (str, os.PathLike)) else texts_or_files
    if not isinstance(items, (list, tuple)):
        return None  # a generator: unknown length
    total = 0
    for item in items:
        if _is_file(item):
            total += os.path.getsize(item)
        else:
            total += len(item.encode("utf-8")) if isinstance(item, str) else 0
    return total


def count_pretokens(text: str, counts: dict) -> None:
    """Add the count of each distinct pre-token (as UTF-8 bytes) of normalised ``text`` into ``counts``."""
    for piece, n in Counter(pretokenize(text)).items():
        key = piece.encode("utf-8")
        counts[key] = counts.get(key, 0) + n


def count_corpus(texts_or_files, added_tokens=QWEN_ADDED_TOKENS, ext=None, progress=True) -> dict:
    """{pre-token bytes: count} over the corpus; the strings of ``added_tokens`` ((content, special) pairs)
    are cut out first and not counted."""
    splitter = AddedTokenSplitter([AddedToken(i, content, special)
                                   for i, (content, special) in enumerate(added_tokens)])
    count = ext.count_pretokens if ext is not None else count_pretokens
    counts = {}
    with tqdm(total=_total_bytes(texts_or_files), unit="B", unit_scale=True, desc="pre-tokenize",
              disable=not progress) as bar:
        for chunk, size in _iter_chunks(texts_or_files):
            for segment, token_id in splitter.split(chunk):
                if token_id is None:
                    count(normalize(segment), counts)
            bar.update(size)
    return counts


# ------------------------------------------------------------------------------------------- 2-3. merge loop
def _pairs(word):
    return zip(word, word[1:])


def _merge_word(word, a, b, new):
    """``word`` with every (a, b), left to right, replaced by ``new``."""
    out, i = [], 0
    while i < len(word):
        if i + 1 < len(word) and word[i] == a and word[i + 1] == b:
            out.append(new)
            i += 2
        else:
            out.append(word[i])
            i += 1
    return out


def learn_merges(word_counts: dict, num_merges: int, min_frequency=2, progress=True) -> list:
    """The merges [(left, right)] learned from {pre-token bytes: count}; new token k is id 256 + k."""
    words = [list(w) for w in word_counts]
    counts = list(word_counts.values())
    pair_counts = defaultdict(int)
    where = defaultdict(set)  # pair -> indices of words that contain (or once contained) it
    for idx, (word, n) in enumerate(zip(words, counts)):
        for pair in _pairs(word):
            pair_counts[pair] += n
            where[pair].add(idx)
    # Max-heap of (-count, pair): ties go to the smaller pair. Entries go stale as counts change.
    heap = [(-c, p) for p, c in pair_counts.items()]
    heapq.heapify(heap)
    merges = []
    with tqdm(total=num_merges, desc="merges", disable=not progress) as bar:
        while len(merges) < num_merges and heap:
            neg, pair = heapq.heappop(heap)
            current = pair_counts.get(pair, 0)
            if current != -neg:  # stale: put it back with its true count
                if current > 0:
                    heapq.heappush(heap, (-current, pair))
                continue
            if current < min_frequency:
                break
            new = 256 + len(merges)
            merges.append(pair)
            changed = set()
            for idx in where.pop(pair):
                word = words[idx]
                if not any(p == pair for p in _pairs(word)):
                    continue  # stale membership
                merged = _merge_word(word, pair[0], pair[1], new)
                n = counts[idx]
                for p in _pairs(word):
                    pair_counts[p] -= n
                for p in _pairs(merged):
                    pair_counts[p] += n
                    where[p].add(idx)
                    changed.add(p)
                words[idx] = merged
            del pair_counts[pair]
            for p in changed:  # only pairs that gained need a fresh entry; losers are fixed when they surface
                if p in pair_counts and pair_counts[p] > 0:
                    heapq.heappush(heap, (-pair_counts[p], p))
            bar.update(1)
    return merges


# ------------------------------------------------------------------------------------------------ 4. assemble
def train_bpe(texts_or_files, vocab_size, out_dir=None, min_frequency=2, added_tokens=QWEN_ADDED_TOKENS,
              progress=True, use_ext=None) -> Tokenizer:
    """Train a byte-level BPE of ``vocab_size`` ids in total (256 bytes + merges + added tokens).

    texts_or_files: a path, a text, or a list of paths/texts (a str naming an existing file is read as one).
    added_tokens: (content, special) pairs, numbered right after the learned tokens (default: Qwen's 26).
    Saves the HF files to ``out_dir`` if given. Stops early (smaller vocabulary) when no pair occurs at least
    ``min_frequency`` times. Returns the Tokenizer.
    """
    num_merges = vocab_size - 256 - len(added_tokens)
    if num_merges < 0:
        raise ValueError(f"vocab_size={vocab_size} is below 256 byte tokens + {len(added_tokens)} added tokens")
    ext = _load_extension(use_ext)
    counts = count_corpus(texts_or_files, added_tokens, ext, progress)
    if not counts:
        raise ValueError("train_bpe: the corpus is empty")
    if ext is not None:
        merges = ext.train_merges(list(counts), list(counts.values()), num_merges, min_frequency,
                                  _progress_callback(num_merges, progress))
    else:
        merges = learn_merges(counts, num_merges, min_frequency, progress)
    vocab = [bytes([b]) for b in range(256)]
    triples = []
    for a, b in merges:
        triples.append((a, b, len(vocab)))
        vocab.append(vocab[a] + vocab[b])
    added = [AddedToken(len(vocab) + i, content, special) for i, (content, special) in enumerate(added_tokens)]
    tok = Tokenizer(vocab, triples, added, use_ext=use_ext)
    if out_dir is not None:
        tok.save(out_dir)
    return tok


def _progress_callback(total, progress):
    """A callable(done) for the C++ loop that moves a tqdm bar."""
    bar = tqdm(total=total, desc="merges", disable=not progress)

    def update(done):
        bar.update(done - bar.n)
        if done >= total:
            bar.close()
    return update


def main(argv=None):
    parser = argparse.ArgumentParser(description="Train a Qwen-style byte-level BPE tokenizer.")
    parser.add_argument("--input", nargs="+", required=True, help="UTF-8 text files")
    parser.add_argument("--vocab-size", type=int, required=True, help="total ids, the 26 added tokens included")
    parser.add_argument("--out", required=True, help="output directory for tokenizer.json etc.")
    parser.add_argument("--min-frequency", type=int, default=2,
                        help="stop merging when no pair occurs this often (default: 2)")
    args = parser.parse_args(argv)
    for path in args.input:
        if not os.path.isfile(path):
            parser.error(f"--input {path!r} is not a file")
    smallest = 256 + len(QWEN_ADDED_TOKENS)
    if args.vocab_size < smallest:
        parser.error(f"--vocab-size {args.vocab_size}: at least {smallest} (256 byte tokens + "
                     f"{len(QWEN_ADDED_TOKENS)} added tokens)")
    if args.min_frequency < 1:
        parser.error(f"--min-frequency {args.min_frequency}: expected a positive number")
    try:
        tok = train_bpe(args.input, args.vocab_size, out_dir=args.out, min_frequency=args.min_frequency)
    except UnicodeDecodeError as error:
        parser.error(f"an --input file is not UTF-8 text ({error})")
    except (OSError, ValueError) as error:
        parser.error(str(error))
    print(f"saved a {tok.vocab_size}-id tokenizer to {args.out}")


if __name__ == "__main__":
    main()
