"""qwen3mini.chat, the chat protocol, in process: settings, modes, the phase tracker, rendering, splitting a
completion into parts, text for ids without text, loading, and a session's KV-prefix reuse. (infer/chat.py, the
terminal front end, is tested as a process in test_chat.py; batches in test_generate.py.)"""
import os

import pytest
import torch

import qwen3mini.chat as protocol

STOP = protocol.STOP_THINKING
PADDING_ID = 151900          # a row of the model's embedding past the tokenizer's 151,669 ids: no text


def test_the_stop_text_is_the_papers_sentence_in_qwens_form():
    assert STOP == ("\n\nConsidering the limited time by the user, I have to give the solution based on the thinking "
                    "directly now.\n</think>\n\n")


def test_sampling_settings_refuse_values_out_of_range():
    with pytest.raises(protocol.ChatError, match=r"^temperature must be a number >= 0 \(0 = greedy\), got nan$"):
        protocol.sampling_settings("think", {"temperature": float("nan")})
    with pytest.raises(protocol.ChatError, match=r"^top_k must be a whole number >= 0"):
        protocol.sampling_settings("think", {"top_k": 2.5})


def test_the_last_soft_switch_wins():
    user = lambda text: {"role": "user", "content": text}  # noqa: E731
    assert protocol.effective_mode([user("hi")], think=True) == "think"
    assert protocol.effective_mode([user("hi /no_think")], think=True) == "no-think"
    assert protocol.effective_mode([user("a /no_think"), {"role": "assistant", "content": "x"}, user("b /think")],
                                   think=True) == "think"
    assert protocol.effective_mode([user("a /no_think"), user("b")], think=True) == "no-think"
    assert protocol.effective_mode([user("b /think")], think=False) == "no-think"   # empty think block forced
    assert protocol.effective_mode([{"role": "system", "content": None}, user("hi")], think=True) == "think"


def test_thinking_tracker_counts_tokens_after_think():
    THINK_ID, END_ID, THINK, ANSWER = 10, 11, protocol.THINK, protocol.ANSWER
    tracker = protocol.ThinkingTracker(THINK_ID, END_ID, budget=2)
    assert tracker.observe(THINK_ID) == THINK and not tracker.over_budget
    assert tracker.observe(5) == THINK and not tracker.over_budget
    assert tracker.observe(6) == THINK and tracker.over_budget
    tracker.stop_thinking()
    assert tracker.observe(7) == ANSWER and not tracker.over_budget
    assert (tracker.thinking_tokens, tracker.answer_tokens, tracker.budget_hit) == (2, 1, True)

    tracker = protocol.ThinkingTracker(THINK_ID, END_ID, budget=5)       # the model ends its thinking itself
    parts = [tracker.observe(t) for t in (THINK_ID, 1, 2, END_ID, 3, 4)]
    assert parts == [THINK] * 4 + [ANSWER] * 2
    assert (tracker.thinking_tokens, tracker.answer_tokens, tracker.budget_hit) == (2, 2, False)

    tracker = protocol.ThinkingTracker(THINK_ID, END_ID, budget=0)       # no <think>: the answer, never over budget
    assert tracker.observe(3) == ANSWER and not tracker.over_budget


def test_prompt_phase():
    START, THINK_ID, END_ID = 1, 10, 11
    phase = protocol.prompt_phase
    assert phase([START, 5, START, 6], START, THINK_ID, END_ID) == "start"
    assert phase([START, 5, START, 6, THINK_ID, 7, END_ID, 7], START, THINK_ID, END_ID) == protocol.ANSWER
    assert phase([START, 6, THINK_ID, 7], START, THINK_ID, END_ID) == protocol.THINK
    # a think block of an earlier turn does not count
    assert phase([START, THINK_ID, END_ID, START, 6], START, THINK_ID, END_ID) == "start"




# ------------------------------------------------------------------------------------------- rendering, ids
def test_render_asks_for_text_with_the_assistant_turn_opened():
    """Contract: callers that want text pass tokenize=False and add_generation_prompt=True explicitly (the
    defaults are transformers', tokenize=True and add_generation_prompt=False)."""
    class Recorder:
        def apply_chat_template(self, conversation, tools=None, **kwargs):
            self.call = (conversation, tools, kwargs)
            return "text"

        def encode(self, text):
            return [len(text)]

    tok, messages = Recorder(), [{"role": "user", "content": "hi"}]
    assert protocol.render(tok, messages, think=False) == [4]
    assert tok.call == (messages, None, dict(tokenize=False, add_generation_prompt=True, enable_thinking=False))


def test_render_modes(tokenizer):
    messages = [{"role": "user", "content": "Hi"}]
    assert tokenizer.decode(protocol.render(tokenizer, messages, think=True)) == \
        "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
    assert tokenizer.decode(protocol.render(tokenizer, messages, think=False)) == \
        "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n"


def test_chat_tokens_are_looked_up_once(tokenizer):
    ids = tokenizer.token_to_id
    tokens = protocol.ChatTokens.of(tokenizer, eos_token_ids=[7])
    assert (tokens.turn_start, tokens.think, tokens.end_think) == (ids["<|im_start|>"], ids["<think>"],
                                                                   ids["</think>"])
    assert tokens.stops == sorted([7, ids["<|im_end|>"], ids["<|endoftext|>"]])
    assert tokenizer.decode(tokens.stop_thinking) == STOP
    budget = tokens.budget(5)
    assert (budget.start_id, budget.end_id, budget.max_tokens) == (ids["<think>"], ids["</think>"], 5)
    assert budget.stop_ids == tokens.stop_thinking and tokens.budget(None) is None


# ------------------------------------------------------------------------------------------- text of ids
def test_ids_without_text_show_as_replacement_characters(tokenizer):
    ok = tokenizer.encode(" ok")
    first_byte = tokenizer.vocab.index(bytes([0xE4]))           # 你 is E4 BD A0
    assert protocol.decode_text(tokenizer, ok + [PADDING_ID] + ok) == " ok\ufffd ok"
    # an incomplete character before it shows as decode() shows it, then the id without text
    assert protocol.decode_text(tokenizer, [first_byte, PADDING_ID]) == "\ufffd\ufffd"
    stream = protocol.TextStream(tokenizer)
    byte_ids = [tokenizer.vocab.index(bytes([b])) for b in "你".encode()]
    assert [stream.feed(t) for t in byte_ids + [PADDING_ID]] == ["", "", "你", "\ufffd"]
    with pytest.raises(ValueError):                             # the tokenizer itself refuses them
        tokenizer.decode([PADDING_ID])


# ------------------------------------------------------------------------------------------- splitting
def test_split_thinking_and_answer():
    parts = protocol.split_completion("<think>\nLet me see.\n</think>\n\nIt is 4.<|im_end|>")
    assert (parts.thinking, parts.answer, parts.tool_calls) == ("Let me see.", "It is 4.", [])
    parts = protocol.split_completion("<think> one two" + STOP + "Four.<|im_end|>")     # the budget's stop text
    assert (parts.thinking, parts.answer) == (" one two", "Four.")
    assert protocol.split_completion("Four.<|endoftext|>junk") == protocol.CompletionParts("", "Four.")
    parts = protocol.split_completion("<think> cut off by the length limit")
    assert (parts.thinking, parts.answer) == (" cut off by the length limit", "")


def test_split_tool_calls_as_the_template_renders_them(tokenizer):
    calls = [{"name": "get_weather", "arguments": {"city": "Paris", "days": 2}},
             {"name": "now", "arguments": {}}]
    message = {"role": "assistant", "content": "Let me check.", "tool_calls": calls}
    text = tokenizer.apply_chat_template([{"role": "user", "content": "Weather?"}, message], tokenize=False,
                                         add_generation_prompt=False)
    completion = text.split("<|im_start|>assistant\n")[-1]     # what the model generated for that turn
    parts = protocol.split_completion(tokenizer.encode(completion), tokenizer)
    assert (parts.answer, parts.tool_calls, parts.malformed_tool_calls) == ("Let me check.", calls, [])


def test_split_keeps_malformed_tool_calls_apart():
    text = ('<tool_call>\n{"name": "f", "arguments": {"x": 1}}\n</tool_call>\n<tool_call>\n{"name": "g", '
            '"arguments": \n</tool_call>\n<tool_call>\n{"nope": 1}\n</tool_call>\n<tool_call>\n{"name": "h"')
    parts = protocol.split_completion(text)
    assert parts.answer == "" and parts.tool_calls == [{"name": "f", "arguments": {"x": 1}}]
    assert parts.malformed_tool_calls == ['\n{"name": "g", "arguments": \n', '\n{"nope": 1}\n', '\n{"name": "h"']


# ------------------------------------------------------------------------------------------- loading
def test_load_tells_a_post_trained_model_from_a_base_model(scripted_model, endless_base_model):
    _, _, info = protocol.load(scripted_model)
    assert info.post_trained and info.reply_limit() == protocol.POST_TRAINED_MAX_NEW_TOKENS
    model, _, info = protocol.load(endless_base_model)
    assert not info.post_trained and info.reply_limit() == protocol.BASE_MAX_NEW_TOKENS
    assert model.dtype == torch.float32 and not model.training


def test_the_shipped_models_read_as_what_they_are():
    """Issue 16 item 8: the shipped base model never ends a turn, so its replies get the base model's short
    default instead of running to the context; the chat model (the default) ends its turns."""
    from qwen3mini.checkpoint import SHIPPED_CHECKPOINT
    _, _, info = protocol.load(os.path.join(os.path.dirname(SHIPPED_CHECKPOINT), "qwen3mini-base"))
    assert not info.post_trained and info.reply_limit() == protocol.BASE_MAX_NEW_TOKENS
    _, _, info = protocol.load(SHIPPED_CHECKPOINT)
    assert info.post_trained and info.reply_limit() == protocol.POST_TRAINED_MAX_NEW_TOKENS


def test_load_errors_are_one_line(tmp_path, scripted_model):
    with pytest.raises(protocol.ChatError, match=r"does not exist \(no such directory"):
        protocol.load(str(tmp_path / "nope"))
    import shutil
    broken = tmp_path / "broken"
    shutil.copytree(scripted_model, broken)
    (broken / "generation_config.json").write_text("{not json")
    with pytest.raises(protocol.ChatError, match=r"broken/generation_config\.json is not valid JSON"):
        protocol.load(str(broken))
    (broken / "generation_config.json").write_text('{"max_new_tokens": "many"}')
    with pytest.raises(protocol.ChatError, match=r"broken: generation_config\.json's max_new_tokens must be a whole "
                                                 r"number >= 1, got 'many'"):
        protocol.load(str(broken))
    (broken / "generation_config.json").write_text('{"max_new_tokens": 100}')     # a base model that says so
    _, _, info = protocol.load(str(broken))
    assert not info.post_trained and info.reply_limit() == 100


# ---------------------------------------------------------------------------------------- in-process session
def test_kv_cache_reuse_gives_the_logits_of_a_fresh_prefill(tokenizer):
    """With a random model whose attention matters, the reused-prefix cache must give the same next-token
    logits as running the whole rendered conversation from scratch."""
    import dataclasses
    from qwen3mini.config import PRESETS
    from qwen3mini.model import Qwen3ForCausalLM

    torch.manual_seed(0)
    config = dataclasses.replace(PRESETS["tiny"], vocab_size=151936)
    model = Qwen3ForCausalLM(config).eval()
    session = protocol.ChatSession(model, tokenizer, system="Be brief.")
    sampling = dict(temperature=0.0, top_p=1.0, top_k=0, presence_penalty=0.0)
    for text in ("first question", "second question /no_think"):
        reply = session.reply(text, think=True, sampling=sampling, max_new_tokens=6)
        assert reply.finish in ("stop", "length")
    messages = session.system + session.history + [{"role": "user", "content": "third"}]
    ids = protocol.render(tokenizer, messages, think=True)
    cached = list(session.gen.tokens[0])
    reused_logits = session.prefill(ids)
    assert sum(1 for a, b in zip(cached, ids) if a == b) > len(ids) // 2     # most of the prompt was reused
    with torch.no_grad():
        fresh_logits = model(torch.tensor([ids]))[0, -1]
    torch.testing.assert_close(reused_logits, fresh_logits, rtol=1e-4, atol=1e-4)


def test_a_tokenizer_without_chat_tokens_is_refused():
    from qwen3mini.config import PRESETS
    from qwen3mini.model import Qwen3ForCausalLM
    from qwen3mini.tokenizer import Tokenizer

    bytes_only = Tokenizer([bytes([b]) for b in range(256)], merges=[])
    with pytest.raises(protocol.ChatError, match=r"lacks Qwen3's chat tokens \['<\|im_start\|>'"):
        protocol.ChatSession(Qwen3ForCausalLM(PRESETS["tiny"]), bytes_only)
