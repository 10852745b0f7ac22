"""Perplexity of the shipped model with int8 weights against its bf16 weights, on validation text it never
trained on.

    python bench/bench_int8_perplexity.py                 # checkpoints/qwen3mini-base, 2 threads

The text: the validation documents (``train/data/sources.py``, ``split_of``) of the corpus source
"python-stdlib" (Python 3.11's standard library, Debian's libpython3.11-stdlib and -minimal), read from this
machine's own copy of those packages (``dpkg -L``) and cleaned as the corpus builder cleans them. Each document
ends with ``<|endoftext|>`` as in the shards; the token stream is cut into windows of ``--window`` tokens
(the S1 sequence length) and scored by the mean next-token loss over every window, perplexity = e^loss.
"""
import argparse
import math
import os
import subprocess
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import qwen3mini  # noqa: E402
from qwen3mini.checkpoint import SHIPPED_CHECKPOINT  # noqa: E402
from train.data import extract  # noqa: E402
from train.data.sources import split_of  # noqa: E402

PACKAGES = ("libpython3.11-stdlib", "libpython3.11-minimal")


def validation_documents() -> list:
    """The cleaned text of every python-stdlib document on the validation side, in document-id order."""
    docs = {}
    for package in PACKAGES:
        listing = subprocess.run(["dpkg", "-L", package], capture_output=True, text=True, check=True).stdout
        for path in listing.split():
            doc_id = f"{package}{path}"                  # "<package>/<path inside the package>", as the builder
            if path.startswith("/usr/lib/python3") and path.endswith(".py") and split_of(doc_id) == "val":
                docs[doc_id] = extract.clean_text(extract.read_text(Path(path)))
    return [docs[doc_id] for doc_id in sorted(docs)]


@torch.inference_mode()
def mean_loss(model, windows) -> float:
    total, count = 0.0, 0
    for window in windows:
        logits = model(window[None, :-1]).float()[0]
        total += F.cross_entropy(logits, window[1:], reduction="sum").item()
        count += len(window) - 1
    return total / count


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default=SHIPPED_CHECKPOINT)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--window", type=int, default=1024, help="tokens per scored window")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    tokenizer = qwen3mini.load_tokenizer(args.model)
    end = tokenizer.token_to_id["<|endoftext|>"]
    documents = validation_documents()
    stream = [token for text in documents for token in tokenizer.encode_ordinary(text) + [end]]
    windows = [torch.tensor(stream[i:i + args.window]) for i in range(0, len(stream) - args.window + 1, args.window)]
    print(f"{len(documents)} validation documents of python-stdlib, {len(stream)} tokens, {len(windows)} windows "
          f"of {args.window}")
    losses = {}
    for name, quantize in (("bf16", None), ("int8", "int8")):
        model = qwen3mini.load_model(args.model, dtype=torch.bfloat16, quantize=quantize)
        losses[name] = mean_loss(model, windows)
        print(f"{name}: loss {losses[name]:.4f}, perplexity {math.exp(losses[name]):.3f}", flush=True)
    ratio = math.exp(losses["int8"] - losses["bf16"])
    print(f"int8 perplexity / bf16 perplexity = {ratio:.4f} ({100 * (ratio - 1):+.2f}%)")


if __name__ == "__main__":
    main()
