"""Qwen3's byte-level BPE tokenizer, from scratch (docs/qwen3.md §3, §4).

    tok = load_tokenizer(path)            # HF dir (tokenizer.json or vocab.json + merges.txt), or *.tiktoken
    tok = from_tiktoken("qwen.tiktoken")  # Qwen's ranks + the 26 added tokens
    ids = tok.encode(text); text = tok.decode(ids, skip_special_tokens=False)
    ids = tok.apply_chat_template(messages, add_generation_prompt=True)   # transformers' signature, defaults
    text = tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True, enable_thinking=False)
    tok.save(directory)                   # tokenizer.json, vocab.json, merges.txt, tokenizer_config.json

Files, in reading order: pretokenize.py (NFC, regex, bytes<->unicode), bpe.py (merge loop), added_tokens.py,
decoding.py (streaming), tokenizer.py (the class, load/save), chat_template.py, trainer.py, qwen_vocab.py.
The C++ fast path is csrc/bpe/bpe.cpp.
"""
from .added_tokens import QWEN_ADDED_TOKENS, AddedToken, qwen_added_tokens
from .chat_template import render_chat
from .qwen_vocab import qwen3_tokenizer_dir, qwen_tiktoken_path
from .tokenizer import Tokenizer, from_tiktoken, load_tokenizer

__all__ = ["Tokenizer", "load_tokenizer", "from_tiktoken", "render_chat", "AddedToken", "QWEN_ADDED_TOKENS",
           "qwen_added_tokens", "qwen_tiktoken_path", "qwen3_tokenizer_dir", "train_bpe"]


def train_bpe(*args, **kwargs):
    """See ``trainer.train_bpe`` (imported lazily: it pulls in tqdm)."""
    from .trainer import train_bpe as _train_bpe
    return _train_bpe(*args, **kwargs)
