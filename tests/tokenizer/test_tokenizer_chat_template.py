"""Our Python chat template vs Qwen3's Jinja template rendered the way transformers renders it (docs/qwen3.md §4).

The Jinja text (qwen3_chat_template.jinja) is the original hybrid Qwen3 template from Qwen/Qwen3-*
tokenizer_config.json ["chat_template"], as copied in wangling03/BioReason
bioreason/models/dl/chat_template_dl.py; it is a test fixture only.
"""
import json
import os

import jinja2
import pytest
from hypothesis import given, strategies as st
from jinja2.ext import loopcontrols
from jinja2.sandbox import ImmutableSandboxedEnvironment

from qwen3mini.tokenizer import load_tokenizer, qwen3_tokenizer_dir, render_chat
from tokenizer_corpus import HYPOTHESIS  # noqa: E402  (tests/tokenizer is on sys.path under pytest)

TEMPLATE_PATH = os.path.join(os.path.dirname(__file__), "qwen3_chat_template.jinja")
QWEN3_JINJA = open(TEMPLATE_PATH, encoding="utf-8").read().rstrip("\n")


def render_jinja(messages, tools=None, add_generation_prompt=True, **kwargs):
    """transformers' settings: trim_blocks, lstrip_blocks, tojson = json.dumps(ensure_ascii=False)."""
    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=[loopcontrols])
    env.filters["tojson"] = lambda x, ensure_ascii=False, indent=None, separators=None, sort_keys=False: \
        json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)
    env.globals["namespace"] = jinja2.utils.Namespace
    return env.from_string(QWEN3_JINJA).render(messages=messages, tools=tools,
                                               add_generation_prompt=add_generation_prompt, **kwargs)


def check(messages, tools=None, add_generation_prompt=True, enable_thinking=None):
    kwargs = {} if enable_thinking is None else {"enable_thinking": enable_thinking}
    expected = render_jinja(messages, tools, add_generation_prompt, **kwargs)
    ours = render_chat(messages, tools=tools, add_generation_prompt=add_generation_prompt,
                       enable_thinking=True if enable_thinking is None else enable_thinking)
    assert ours == expected
    return ours


WEATHER = {"type": "function", "function": {"name": "get_weather", "description": "Wetter für eine Stadt 天气",
                                            "parameters": {"type": "object", "properties": {
                                                "city": {"type": "string"}}, "required": ["city"]}}}
TIME = {"type": "function", "function": {"name": "now", "description": "Current time", "parameters": {}}}


def test_single_user_thinking_default():
    assert check([{"role": "user", "content": "Q"}]) == "<|im_start|>user\nQ<|im_end|>\n<|im_start|>assistant\n"


def test_enable_thinking_false_adds_empty_think():
    out = check([{"role": "system", "content": "S"}, {"role": "user", "content": "Q"}], enable_thinking=False)
    assert out == ("<|im_start|>system\nS<|im_end|>\n<|im_start|>user\nQ<|im_end|>\n"
                   "<|im_start|>assistant\n<think>\n\n</think>\n\n")


def test_no_generation_prompt_and_final_assistant_gets_empty_think():
    out = check([{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}],
                add_generation_prompt=False)
    assert out == "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\nHello<|im_end|>\n"


def test_history_thinking_is_stripped():
    msgs = [{"role": "user", "content": "1+1?"},
            {"role": "assistant", "content": "<think>\nadd them\n</think>\n\n2"},
            {"role": "user", "content": "and 2+2?"},
            {"role": "assistant", "content": "<think>\nagain\n</think>\n\n4"}]
    out = check(msgs, add_generation_prompt=False)
    assert "add them" not in out and "<|im_start|>assistant\n2<|im_end|>" in out and "again" in out
    check(msgs[:3])


def test_reasoning_content_field():
    msgs = [{"role": "user", "content": "Q"},
            {"role": "assistant", "content": "\n\nA", "reasoning_content": "\nthought\n"}]
    out = check(msgs, add_generation_prompt=False)
    assert out.endswith("<think>\nthought\n</think>\n\nA<|im_end|>\n")
    check([{"role": "user", "content": "Q"}, {"role": "assistant", "content": "</think>A", "reasoning_content": ""}],
          add_generation_prompt=False)
    check([{"role": "user", "content": "Q"}, {"role": "assistant", "content": "A", "reasoning_content": None}])


def test_tools_block_with_and_without_system():
    out = check([{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Weather in 東京?"}],
                tools=[WEATHER, TIME])
    assert out.startswith("<|im_start|>system\nBe brief.\n\n# Tools\n\n") and "天气" in out
    check([{"role": "user", "content": "Weather?"}], tools=[WEATHER])
    check([{"role": "user", "content": "Weather?"}], tools=[])  # empty list = no tools


def test_tool_calls_and_grouped_tool_responses():
    msgs = [{"role": "user", "content": "Weather in Paris and Rome, and the time?"},
            {"role": "assistant", "content": "",
             "tool_calls": [{"type": "function", "function": {"name": "get_weather", "arguments": {"city": "Paris"}}},
                            {"type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Rome"}'}},
                            {"name": "now", "arguments": {}}]},
            {"role": "tool", "content": "18C"}, {"role": "tool", "content": "25C"}, {"role": "tool", "content": "noon"},
            {"role": "assistant", "content": "<think>\nall three in\n</think>\n\nLet me check once more.",
             "tool_calls": [{"name": "now", "arguments": {"tz": "Europe/Paris"}}]},
            {"role": "tool", "content": "12:01"}]
    out = check(msgs, tools=[WEATHER, TIME])
    assert out.count("<|im_start|>user\n<tool_response>") == 2  # two groups
    assert "all three in" in out  # thinking inside the current turn's tool chain is kept
    check(msgs, tools=[WEATHER, TIME], enable_thinking=False)
    check(msgs + [{"role": "assistant", "content": "Paris 18C, Rome 25C."}], add_generation_prompt=False)


def test_user_wrapped_tool_response_does_not_count_as_query():
    msgs = [{"role": "user", "content": "first"},
            {"role": "assistant", "content": "<think>\nr1\n</think>\n\ncall"},
            {"role": "user", "content": "<tool_response>\nok\n</tool_response>"},
            {"role": "assistant", "content": "<think>\nr2\n</think>\n\ndone"}]
    out = check(msgs, add_generation_prompt=False)
    assert "r1" in out and "r2" in out  # both after the last real query


def test_system_later_in_the_conversation():
    check([{"role": "user", "content": "a"}, {"role": "system", "content": "new rules"},
           {"role": "user", "content": "b"}])


@pytest.fixture(scope="module")
def hf_and_ours():
    """transformers' tokenizer and ours, loaded from the same directory with Qwen3's Jinja template."""
    transformers = pytest.importorskip("transformers")
    directory = qwen3_tokenizer_dir(chat_template=QWEN3_JINJA)
    return transformers.AutoTokenizer.from_pretrained(directory), load_tokenizer(directory)


def transformers_result(hf, conversation, **kwargs):
    """transformers' apply_chat_template with ``return_dict`` pinned to ours (False unless given; 5.x made True
    its default, the one default this contract keeps from transformers 4)."""
    out = hf.apply_chat_template(conversation, **{"return_dict": False, **kwargs})
    return dict(out) if kwargs.get("return_dict") and kwargs.get("tokenize", True) else out


CONVERSATION = [{"role": "system", "content": "S"}, {"role": "user", "content": "Q"},
                {"role": "assistant", "content": "<think>\nr\n</think>\n\nA"}, {"role": "user", "content": "Q2"}]
ANSWERED = [{"role": "user", "content": "Q"}, {"role": "assistant", "content": "A", "reasoning_content": "r"}]


@pytest.mark.parametrize("kwargs", [
    {},  # the defaults: ids, no generation prompt, thinking
    {"add_generation_prompt": True}, {"add_generation_prompt": True, "enable_thinking": False},
    {"tokenize": False}, {"tokenize": False, "add_generation_prompt": True, "enable_thinking": False},
    {"tools": [WEATHER], "add_generation_prompt": True}, {"tools": [WEATHER, TIME], "tokenize": False},
    {"return_dict": True, "add_generation_prompt": True}, {"enable_thinking": False, "unused_variable": 1}])
def test_apply_chat_template_equals_transformers(hf_and_ours, kwargs):
    hf, ours = hf_and_ours
    for conversation in (CONVERSATION, ANSWERED, [CONVERSATION, ANSWERED]):  # one, and a batch of two
        assert ours.apply_chat_template(conversation, **kwargs) == transformers_result(hf, conversation, **kwargs)


@pytest.mark.parametrize("field", [True, "content", "reasoning_content", "thinking"])
def test_continue_final_message_equals_transformers(hf_and_ours, field):
    hf, ours = hf_and_ours
    for tokenize in (False, True):
        expected = transformers_result(hf, ANSWERED, continue_final_message=field, tokenize=tokenize)
        assert ours.apply_chat_template(ANSWERED, continue_final_message=field, tokenize=tokenize) == expected
    text = ours.apply_chat_template(ANSWERED, continue_final_message=field, tokenize=False)
    assert text.endswith("<think>\nr" if field in ("reasoning_content", "thinking") else "</think>\n\nA")


def test_message_fields_as_transformers_reads_them(hf_and_ours):
    """None fields are dropped; `thinking` and `reasoning` are read as `reasoning_content` (transformers 5.x)."""
    hf, ours = hf_and_ours
    for extra in ({"thinking": "t"}, {"reasoning": "t"}, {"reasoning_content": None, "tool_calls": None}):
        conversation = [{"role": "user", "content": "Q"}, {"role": "assistant", "content": "A", **extra}]
        assert ours.apply_chat_template(conversation, tokenize=False) == \
            transformers_result(hf, conversation, tokenize=False)


def test_apply_chat_template_refuses_what_it_does_not_implement(hf_and_ours):
    _, ours = hf_and_ours
    for kwargs in ({"padding": True}, {"return_tensors": "pt"}, {"chat_template": "{{ messages }}"}):
        with pytest.raises(ValueError, match=f"{next(iter(kwargs))} not supported"):
            ours.apply_chat_template(ANSWERED, **kwargs)
    assert ours.apply_chat_template(ANSWERED, padding=False, return_tensors=None) == ours.apply_chat_template(ANSWERED)
    for conversation, error in (([], "non-empty list"), (["hi"], "message 0 is not a dict"),
                                (ANSWERED, "exclude each other")):
        with pytest.raises(ValueError, match=error):
            ours.apply_chat_template(conversation, continue_final_message=True, add_generation_prompt=True)
    with pytest.raises(ValueError, match="does not read 'name'"):
        ours.apply_chat_template(ANSWERED, continue_final_message="name")


_text = st.text(st.sampled_from(list("ab \n<>/thinkolrespu你")), max_size=12) | st.sampled_from(
    ["", "\n", "<think>\nx\n</think>\n\ny", "</think>z", "<tool_response>\nr\n</tool_response>", "<think>a</think>"])
_call = st.fixed_dictionaries({"name": st.sampled_from(["f", "g"]),
                               "arguments": st.one_of(st.just('{"a": 1}'), st.dictionaries(
                                   st.sampled_from(["x", "ü"]), st.integers(0, 3), max_size=2))})
_message = st.one_of(
    st.fixed_dictionaries({"role": st.sampled_from(["user", "system", "tool"]), "content": _text}),
    st.fixed_dictionaries({"role": st.just("assistant"), "content": _text},
                          optional={"reasoning_content": st.one_of(st.none(), _text),
                                    "tool_calls": st.lists(st.one_of(_call, _call.map(
                                        lambda c: {"type": "function", "function": c})), max_size=2)}))


@HYPOTHESIS
@given(st.lists(_message, min_size=1, max_size=7), st.booleans(), st.sampled_from([None, True, False]),
       st.booleans())
def test_random_conversations_match_jinja(messages, add_generation_prompt, enable_thinking, with_tools):
    check(messages, tools=[WEATHER] if with_tools else None, add_generation_prompt=add_generation_prompt,
          enable_thinking=enable_thinking)
