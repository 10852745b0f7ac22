"""Qwen3's chat template (the original hybrid-thinking one, docs/qwen3.md §4) written as plain Python.

It renders exactly what ``tokenizer_config.json["chat_template"]`` renders under transformers' Jinja settings
(``trim_blocks``, ``lstrip_blocks``, ``tojson = json.dumps(ensure_ascii=False)``); the tests check that against
the Jinja text. ChatML turns: ``<|im_start|>{role}\\n{content}<|im_end|>\\n``.

Leniency: a ``content`` of None (common for assistant tool-call messages) counts as "", where Jinja would fail.
"""
import json

_TOOLS_HEADER = ("# Tools\n\nYou may call one or more functions to assist with the user query.\n\n"
                 "You are provided with function signatures within <tools></tools> XML tags:\n<tools>")
_TOOLS_FOOTER = ("\n</tools>\n\nFor each function call, return a json object with function name and arguments "
                 "within <tool_call></tool_call> XML tags:\n<tool_call>\n"
                 '{"name": <function-name>, "arguments": <args-json-object>}\n</tool_call><|im_end|>\n')
EMPTY_THINK = "<think>\n\n</think>\n\n"


def tojson(x) -> str:
    """transformers' ``tojson`` filter: json.dumps with non-ASCII kept and the default ", " / ": " separators."""
    return json.dumps(x, ensure_ascii=False)


def _content(message, index) -> str:
    content = message.get("content")
    if content is None:
        return ""
    if not isinstance(content, str):
        raise ValueError(f"messages[{index}]['content'] must be a string, got {type(content).__name__}")
    return content


def _is_tool_response(text: str) -> bool:
    return text.startswith("<tool_response>") and text.endswith("</tool_response>")


def last_query_index(messages) -> int:
    """Rule 2: the last user message that is a real query, not tool output wrapped by the client."""
    for index in range(len(messages) - 1, -1, -1):
        if messages[index]["role"] == "user" and not _is_tool_response(_content(messages[index], index)):
            return index
    return len(messages) - 1


def split_thinking(message, index):
    """Rule 4: (reasoning, answer) from ``reasoning_content``, or from an inline ``<think>…</think>``."""
    content = _content(message, index)
    if message.get("reasoning_content") is not None:
        return message["reasoning_content"], content
    if "</think>" in content:
        reasoning = content.split("</think>")[0].rstrip("\n").split("<think>")[-1].lstrip("\n")
        return reasoning, content.split("</think>")[-1].lstrip("\n")
    return "", content


def _render_tool_call(tool_call) -> str:
    if tool_call.get("function"):  # OpenAI style {"type": "function", "function": {...}}
        tool_call = tool_call["function"]
    args = tool_call["arguments"]
    args = args if isinstance(args, str) else tojson(args)
    return '<tool_call>\n{"name": "' + str(tool_call["name"]) + '", "arguments": ' + args + "}\n</tool_call>"


def _render_assistant(message, index, is_last, in_current_turn) -> str:
    reasoning, content = split_thinking(message, index)
    # Rule 4: only the current turn's tool-call chain keeps its thinking; earlier turns lose it.
    if in_current_turn and (is_last or reasoning):
        out = "<|im_start|>assistant\n<think>\n" + reasoning.strip("\n") + "\n</think>\n\n" + content.lstrip("\n")
    else:
        out = "<|im_start|>assistant\n" + content
    for n, tool_call in enumerate(message.get("tool_calls") or []):
        if n > 0 or content:
            out += "\n"
        out += _render_tool_call(tool_call)
    return out + "<|im_end|>\n"


def render_chat(messages, tools=None, add_generation_prompt=False, enable_thinking=True) -> str:
    """The prompt string for ``messages`` (dicts with role/content[/reasoning_content/tool_calls]); the
    defaults are the template's: no generation prompt, thinking mode. ``Tokenizer.apply_chat_template`` is the
    transformers-style entry point."""
    messages = list(messages)
    if not messages:
        raise ValueError("messages must contain at least one message")
    for i, m in enumerate(messages):
        if not isinstance(m, dict) or "role" not in m:
            raise ValueError(f"messages[{i}] must be a dict with a 'role', got {m!r}")
    out = []
    # Rule 1: the system turn, with the tool signatures appended when tools are given.
    first_is_system = messages[0]["role"] == "system"
    if tools:
        out.append("<|im_start|>system\n")
        if first_is_system:
            out.append(_content(messages[0], 0) + "\n\n")
        out.append(_TOOLS_HEADER + "".join("\n" + tojson(tool) for tool in tools) + _TOOLS_FOOTER)
    elif first_is_system:
        out.append("<|im_start|>system\n" + _content(messages[0], 0) + "<|im_end|>\n")

    query = last_query_index(messages)
    last = len(messages) - 1
    for i, message in enumerate(messages):
        role = message["role"]
        if role == "user" or (role == "system" and i > 0):  # rule 3
            out.append(f"<|im_start|>{role}\n{_content(message, i)}<|im_end|>\n")
        elif role == "assistant":  # rule 4
            out.append(_render_assistant(message, i, i == last, i > query))
        elif role == "tool":  # rule 5: consecutive tool results share one user turn
            if i == 0 or messages[i - 1]["role"] != "tool":
                out.append("<|im_start|>user")
            out.append("\n<tool_response>\n" + _content(message, i) + "\n</tool_response>")
            if i == last or messages[i + 1]["role"] != "tool":
                out.append("<|im_end|>\n")
    if add_generation_prompt:  # rule 6
        out.append("<|im_start|>assistant\n")
        if enable_thinking is False:
            out.append(EMPTY_THINK)
    return "".join(out)
