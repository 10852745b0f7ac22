"""Synthetic retrieval documents for S3 (issue 20): facts hidden far back in a long document, questions about
them at its end, so that long-context training asks for what the long-context evaluation measures.

The report's S3 (paper §3) trains on long documents; whether a small model learns to *use* a far context
depends on whether anything in its data needs it, and the shipped base model's passkey accuracy was 0 at
every length. A retrieval sample is an S3 window (real text, ``TokenShards.long_window``) with short facts
("the code of the green lamp is 48213"; 2 to 16 in a 4k window) inserted into its first half, and at its end a
question about each fact followed by the answer, so the answers' tokens are predictable only by looking far
back. The forms differ from the passkey evaluation's (train/data/synthetic.py: other sentences, several facts,
real text around them), so the evaluation measures a transfer, not a memorised template.

    rows = with_retrieval(rows, samples, share=0.25, encode=tokenizer.encode, seed=seed)   # [B, T + 1] int64

Sample k is a retrieval sample with probability ``share``, decided and built from (seed, k) alone: resumable
and the same on any number of ranks, like the rest of the S3 sampler.
"""
import numpy as np
import torch

COLOURS = ("red", "green", "blue", "yellow", "black", "white", "orange", "purple", "grey", "brown")
THINGS = ("lamp", "door", "box", "key", "book", "chair", "clock", "ship", "tower", "garden", "river", "engine")
MAX_FACTS, TOKENS_PER_FACT = 16, 256


def retrieval_window(window: np.ndarray, encode, rng: np.random.Generator) -> np.ndarray:
    """``window`` (seq_len + 1 token ids of real text) turned into a retrieval sample of the same length:
    facts inserted at random places in the first half, questions and answers at the end."""
    return _retrieval_document(window, encode, rng, answer_last=True)[0]


def retrieval_question(window: np.ndarray, encode, rng: np.random.Generator) -> tuple[np.ndarray, str]:
    """(prompt, code): a retrieval sample of ``window``'s length whose last question is left unanswered
    (the prompt ends with "Answer:"), and the code that answers it: S3's retrieval in its own form, the
    evaluation's check that the training taught retrieval at all (train/eval_long_context.py)."""
    return _retrieval_document(window, encode, rng, answer_last=False)


def fact_count(length: int, rng: np.random.Generator) -> int:
    """How many facts a window of ``length`` tokens hides: 2 up to one per ``TOKENS_PER_FACT`` tokens, at most
    ``MAX_FACTS``. Only the answers' digits are predictable from far back, so each fact asked is more of the
    signal that retrieval is learnt from (neither 2 to 5 facts a 4k window nor up to 16 taught the distillation
    students to answer S3's own questions: bench/RESULTS.md, sessions 14 and 20)."""
    return int(rng.integers(2, max(2, min(MAX_FACTS, length // TOKENS_PER_FACT)) + 1))


def _retrieval_document(window, encode, rng, answer_last: bool) -> tuple[np.ndarray, str]:
    names = rng.choice(len(COLOURS) * len(THINGS), size=fact_count(len(window), rng), replace=False)
    facts = [(f"{COLOURS[n // len(THINGS)]} {THINGS[n % len(THINGS)]}", int(rng.integers(10_000, 100_000)))
             for n in names]
    inserted = [encode(f" (Note: the code of the {name} is {code}.) ") for name, code in facts]
    asked = rng.permutation(len(facts))
    text = "".join(f"\n\nQuestion: what is the code of the {facts[i][0]}? Answer: {facts[i][1]}." for i in asked)
    if not answer_last:
        text = text[:text.rindex(" Answer:") + len(" Answer:")]
    questions = encode(text)
    body = len(window) - len(questions) - sum(len(f) for f in inserted)
    if body < 2 * len(facts):
        raise ValueError(f"--seq_len {len(window) - 1}: too short for a retrieval sample")
    cuts = np.sort(rng.integers(0, body // 2, size=len(facts)))
    pieces, start = [], 0
    for cut, fact in zip(cuts, inserted):
        pieces += [window[start:cut], np.asarray(fact, dtype=np.int64)]
        start = cut
    pieces += [window[start:body], np.asarray(questions, dtype=np.int64)]
    return np.concatenate(pieces), str(facts[asked[-1]][1])


def with_retrieval(rows: torch.Tensor, samples, share: float, encode, seed: int) -> torch.Tensor:
    """``rows`` [B, T + 1] (samples ``samples`` of the S3 sampler) with each sample made a retrieval sample
    with probability ``share``."""
    rows = rows.clone()
    for i, k in enumerate(samples):
        rng = np.random.default_rng([seed, k, 11])
        if rng.random() < share:
            rows[i] = torch.from_numpy(retrieval_window(rows[i].numpy(), encode, rng))
    return rows
