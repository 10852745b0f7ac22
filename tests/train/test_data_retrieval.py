"""S3's synthetic retrieval samples (issue 20): facts far back, questions with their answers at the end, the
window's length kept, and the choice of samples a function of (seed, sample) alone."""
import re

import numpy as np
import pytest
import torch

import qwen3mini
from train.data.retrieval import fact_count, retrieval_question, retrieval_window, with_retrieval

from test_stages import TOKENIZER


@pytest.fixture(scope="module")
def tok():
    return qwen3mini.load_tokenizer(TOKENIZER)


def haystack(length, seed=0):
    return np.random.default_rng(seed).integers(100, 5000, length).astype(np.int64)


def test_facts_far_back_and_answers_at_the_end(tok):
    for seed in range(5):
        window = haystack(2049, seed)
        made = retrieval_window(window, tok.encode, np.random.default_rng(seed))
        assert made.shape == window.shape and made.dtype == np.int64
        text = tok.decode(made.tolist())
        facts = dict(re.findall(r"\(Note: the code of the (\w+ \w+) is (\d+)\.\)", text))
        answers = dict(re.findall(r"Question: what is the code of the (\w+ \w+)\? Answer: (\d+)\.", text))
        assert 2 <= len(facts) <= 2049 // 256 and answers == facts
        last_fact = max(text.index(f"the {name} is") for name in facts)
        assert last_fact < len(text) / 2 < text.index("Question:")        # hidden in the first half


def test_facts_grow_with_the_window():
    rng = np.random.default_rng(0)
    assert {fact_count(513, rng) for _ in range(50)} == {2}
    assert {fact_count(4097, rng) for _ in range(400)} == set(range(2, 17))


def test_share_and_determinism(tok):
    rows = torch.from_numpy(np.stack([haystack(513, k) for k in range(8)]))
    assert torch.equal(with_retrieval(rows, range(8), 0.0, tok.encode, seed=1), rows)
    everything = with_retrieval(rows, range(8), 1.0, tok.encode, seed=1)
    assert all(not torch.equal(a, b) for a, b in zip(everything, rows))
    half = with_retrieval(rows, range(8), 0.5, tok.encode, seed=1)
    again = with_retrieval(rows[4:], range(4, 8), 0.5, tok.encode, seed=1)       # another rank's slice
    assert torch.equal(half[4:], again) and 0 < sum(not torch.equal(a, b) for a, b in zip(half, rows)) < 8


def test_too_short_a_window_is_refused(tok):
    with pytest.raises(ValueError, match="--seq_len"):
        retrieval_window(haystack(40), tok.encode, np.random.default_rng(0))


def test_a_question_in_the_training_form(tok):
    """The evaluation's retrieval prompt: the sample's facts, its last question unanswered, its code returned."""
    for seed in range(5):
        window = haystack(2049, seed)
        prompt, code = retrieval_question(window, tok.encode, np.random.default_rng(seed))
        text = tok.decode(prompt.tolist())
        facts = dict(re.findall(r"\(Note: the code of the (\w+ \w+) is (\d+)\.\)", text))
        last = re.findall(r"Question: what is the code of the (\w+ \w+)\? Answer:", text)[-1]
        assert text.endswith("Answer:") and facts[last] == code and len(prompt) <= len(window)
        full = tok.decode(retrieval_window(window, tok.encode, np.random.default_rng(seed)).tolist())
        assert full.endswith(f"Answer: {code}.")                # the same facts and questions drawn
