"""Fixtures for the chat tests: the real Qwen3 tokenizer and tiny "scripted" checkpoints.

A scripted checkpoint is a real Qwen3 checkpoint (HF layout, full 151,936-row vocabulary, hidden size 64) whose
weights make it a deterministic bigram model for a handful of tokens: the attention and MLP outputs are zero, so
the last hidden state is the normalised embedding of the current token; script token i embeds as the unit
vector e_i and the head row of its successor has a large weight on e_i. Every other token gets random
embeddings and head rows in the remaining dimensions, so the model babbles there. The scripts:

    prompt ends "...assistant\\n"  -> <think> one two three four five six </think> "\\n\\n" -> reply
    prompt ends "</think>\\n\\n" (--no-think, and the budget's stop text) -> reply
    reply = the three UTF-8 bytes of "你" as three byte tokens, then " ok", then <|im_end|>
            (the "endless" model repeats " ok" forever instead of ending)

The margin (logit 80 against at most 0) makes the script deterministic under any of the chat's samplings.
A scripted checkpoint says it is post-trained (its generation_config.json stops on <|im_end|>, as Qwen's
post-trained releases do); ``post_trained=False`` writes none, like a base model.
"""
import dataclasses
import json
import os
import shutil

import pytest
import torch

THINKING = [" one", " two", " three", " four", " five", " six"]


def _one_token(tok, text):
    ids = tok.encode(text)
    assert len(ids) == 1, f"{text!r} is {len(ids)} tokens"
    return ids[0]


def script_ids(tok, endless=False):
    """The bigram script {token id: next token id} described in the module docstring."""
    special = tok.token_to_id
    think = [_one_token(tok, w) for w in THINKING]
    byte = {b: tok.vocab.index(bytes([b])) for b in "你".encode()}      # E4 BD A0
    ok, nl, nlnl = _one_token(tok, " ok"), _one_token(tok, "\n"), _one_token(tok, "\n\n")
    chain = [nl, special["<think>"], *think, special["</think>"], nlnl]
    script = dict(zip(chain, chain[1:]))
    reply = list(byte.values()) + [ok]
    script[nlnl] = reply[0]
    script.update(zip(reply, reply[1:]))
    script[ok] = ok if endless else special["<|im_end|>"]
    return script


def build_scripted_checkpoint(directory, tokenizer_dir, tok, endless=False, max_position_embeddings=1024,
                              post_trained=True):
    from qwen3mini.checkpoint import save_model
    from qwen3mini.config import PRESETS
    from qwen3mini.model import Qwen3ForCausalLM

    config = dataclasses.replace(PRESETS["tiny"], vocab_size=151936, num_hidden_layers=1,
                                 tie_word_embeddings=False, max_position_embeddings=max_position_embeddings)
    torch.manual_seed(0)
    model = Qwen3ForCausalLM(config)
    script = script_ids(tok, endless)
    H, states = config.hidden_size, len(script)
    assert states <= H // 2
    with torch.no_grad():
        for layer in model.model.layers:
            layer.self_attn.o_proj.weight.zero_()
            layer.mlp.down_proj.weight.zero_()
        embed, head = model.model.embed_tokens.weight, model.lm_head.weight
        embed.normal_()
        head.normal_()
        embed[:, : H // 2] = 0
        head[:, : H // 2] = 0
        head[list(tok.token_to_id.values())] = 0          # special tokens only ever come from the script
        for state, (token, successor) in enumerate(script.items()):
            embed[token] = 0
            embed[token, state] = 1.0
            head[successor, state] = 10.0
    save_model(model, directory)
    for name in os.listdir(tokenizer_dir):
        shutil.copy(os.path.join(tokenizer_dir, name), directory)
    if post_trained:
        special = tok.token_to_id
        with open(os.path.join(directory, "generation_config.json"), "w") as f:
            json.dump({"eos_token_id": [special["<|im_end|>"], special["<|endoftext|>"]]}, f)
    return directory


@pytest.fixture(scope="session")
def tokenizer_dir():
    from qwen3mini.tokenizer import qwen3_tokenizer_dir
    return qwen3_tokenizer_dir()


@pytest.fixture(scope="session")
def tokenizer(tokenizer_dir):
    from qwen3mini.tokenizer import load_tokenizer
    return load_tokenizer(tokenizer_dir)


@pytest.fixture(scope="session")
def scripted_model(tmp_path_factory, tokenizer_dir, tokenizer):
    return build_scripted_checkpoint(str(tmp_path_factory.mktemp("scripted")), tokenizer_dir, tokenizer)


@pytest.fixture(scope="session")
def endless_model(tmp_path_factory, tokenizer_dir, tokenizer):
    return build_scripted_checkpoint(str(tmp_path_factory.mktemp("endless")), tokenizer_dir, tokenizer,
                                     endless=True)


@pytest.fixture(scope="session")
def endless_base_model(tmp_path_factory, tokenizer_dir, tokenizer):
    """The endless model as a base model: no generation_config.json."""
    return build_scripted_checkpoint(str(tmp_path_factory.mktemp("endless-base")), tokenizer_dir, tokenizer,
                                     endless=True, post_trained=False)
