"""The committed small tokenizer (checkpoints/tokenizer-16k): 16,384 ids, Qwen3's 26 added tokens last and in
Qwen3's order, and the Qwen3 chat template rendered and encoded identically by transformers (the reference)
and by qwen3mini."""
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))
import qwen3mini  # noqa: E402
from qwen3mini.tokenizer.added_tokens import QWEN_ADDED_TOKENS  # noqa: E402
from train.data import synthetic  # noqa: E402

TOKENIZER = REPO / "checkpoints" / "tokenizer-16k"


def test_vocabulary_layout():
    tok = qwen3mini.load_tokenizer(str(TOKENIZER))
    assert tok.vocab_size == 16384
    first = 16384 - len(QWEN_ADDED_TOKENS)
    assert len(QWEN_ADDED_TOKENS) == 26
    for i, (content, _special) in enumerate(QWEN_ADDED_TOKENS):
        assert tok.token_to_id[content] == first + i
        assert tok.encode(content) == [first + i]


def test_transformers_agrees_on_chat_template_and_ids():
    from transformers import AutoTokenizer

    hf = AutoTokenizer.from_pretrained(str(TOKENIZER))
    ours = qwen3mini.load_tokenizer(str(TOKENIZER))
    messages = [{"role": "system", "content": "Réponds brièvement."},
                {"role": "user", "content": "Wie viel ist 12 × 7?"},
                {"role": "assistant", "content": "<think>\n12 × 7 = 84\n</think>\n\n84"},
                {"role": "user", "content": "日本語で説明して。"}]
    for thinking in (True, False):
        text = hf.apply_chat_template(messages, tokenize=False, add_generation_prompt=True, enable_thinking=thinking)
        assert text == ours.apply_chat_template(messages, tokenize=False, add_generation_prompt=True, enable_thinking=thinking)
        assert hf.encode(text, add_special_tokens=False) == ours.encode(text)
    sample = synthetic.corpus_document(3)[1] + "\n\n    def f(x):\n\treturn x ** 2  # ünïcode\n"
    assert hf.encode(sample, add_special_tokens=False) == ours.encode(sample)
    assert ours.decode(ours.encode(sample)) == sample
