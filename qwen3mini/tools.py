"""Tool use (issue 19): tools offered through the chat template's ``tools`` (the calculator, whose arithmetic is
``qwen3mini.calculator``), and Qwen3's tool-call loop.

    from qwen3mini.tools import TOOLS, run_tool_call, generate_with_tools, ToolSession

    run_tool_call({"name": "calculator", "arguments": {"expression": "347 * 86"}})  # ("29842", True)
    run_tool_call({"name": "calculator", "arguments": {"expression": "1/0"}})  # ("error: division by zero", False)
    rollouts = generate_with_tools(model, tok, [[{"role": "user", "content": "What is 347 * 86?"}]],
                                   ["calculator"], 512, sampling_settings("think"), think=True, max_calls=4)
    r = rollouts[0]; r.answer, r.messages, r.calls, r.all_calls_valid, r.tokens, r.mask, r.finish

The protocol (docs/qwen3.md §4): the tools' JSON schemas go into the system turn; the model answers with
``<tool_call>{"name", "arguments"}</tool_call>`` blocks and ends its turn; each call's result comes back as a
``tool`` message, which the template renders as ``<tool_response>`` blocks inside one *user* turn; then the
assistant turn is opened again and the model continues. A reply without a call ends the loop.

``generate_with_tools`` is the batched loop (for ``infer/generate.py`` and RL): every round, all rows still going
are generated together through ``chat.generate_replies``. A row's sequence only grows: the next round's prompt
is the prompt, the model's own tokens, then the template's rendering of the tool turn appended as tokens
(``tokens``/``mask``: what RL trains on, the mask False on what the environment inserted). It equals the
template's rendering of the returned conversation when the model wrote what the template writes (the test
checks it), thanks to two rules of Qwen3's template: after the last user query an assistant turn keeps its
reasoning, and tool results are not user queries. One exception needs care: the template renders an *empty*
think block only on the last assistant turn, so a turn that was generated after one (non-thinking mode, or a
model that opened and closed ``<think>`` at once) is recorded with ``reasoning_content`` "\\n" (rendered as the
empty block) instead of "".

``ToolSession`` is the same loop for the interactive chat (``infer/chat.py --tools calculator``): a
``ChatSession`` that re-renders the conversation each round, keeping the KV cache's matching prefix.
"""
import json
import re
from dataclasses import dataclass, field, replace
from typing import Callable

from . import chat
from .calculator import SIGNIFICANT_DIGITS, CalculatorError, calculate
from .sampling import SamplingParams


class ToolError(Exception):
    """Bad arguments or a failed run; its text goes back to the model as the tool's result."""


# ---------------------------------------------------------------------------------------------- registry
@dataclass(frozen=True)
class Tool:
    """A tool the model may call: the JSON schema the chat template shows it (Qwen3's ``tools`` format) and
    ``run(arguments) -> result text``, raising ToolError for bad arguments."""
    schema: dict
    run: Callable[[dict], str]

    @property
    def name(self) -> str:
        return self.schema["function"]["name"]


def _run_calculator(arguments: dict) -> str:
    if set(arguments) != {"expression"}:
        raise ToolError('the calculator takes exactly one argument: {"expression": "<arithmetic expression>"}')
    try:
        return calculate(arguments["expression"])
    except CalculatorError as error:
        raise ToolError(str(error)) from None


CALCULATOR = Tool({
    "type": "function",
    "function": {
        "name": "calculator",
        "description": "Evaluate an arithmetic expression exactly: integers and decimals, + - * /, unary minus "
                       "and parentheses. The result is an integer, or a decimal rounded to "
                       f"{SIGNIFICANT_DIGITS} significant digits.",
        "parameters": {
            "type": "object",
            "properties": {"expression": {"type": "string",
                                          "description": "the expression, e.g. \"(347 * 86 - 12) / 4\""}},
            "required": ["expression"]}}}, _run_calculator)
TOOLS = {CALCULATOR.name: CALCULATOR}


def resolve_tools(tools) -> list:
    """Tool objects for a list of names (of TOOLS) or Tools; ValueError names an unknown one."""
    resolved = []
    for tool in tools or []:
        if isinstance(tool, str) and tool not in TOOLS:
            raise ValueError(f"unknown tool {tool!r}; the tools are: {', '.join(sorted(TOOLS))}")
        resolved.append(TOOLS[tool] if isinstance(tool, str) else tool)
    return resolved


def run_tool_call(call, tools=None) -> tuple:
    """(result text, valid) for one parsed call ``{"name", "arguments"}`` (``chat.split_completion``'s
    ``tool_calls``). ``tools``: the offered Tools, a dict by name or a list (default: every tool of TOOLS).
    Not a {name, arguments} call, an unknown tool, bad arguments or a failed evaluation give an error text
    for the model ("error: ...") and valid=False."""
    offered = TOOLS if tools is None else tools if isinstance(tools, dict) else \
        {tool.name: tool for tool in resolve_tools(tools)}
    if not (isinstance(call, dict) and isinstance(call.get("name"), str) and isinstance(call.get("arguments"), dict)):
        return 'error: a tool call is {"name": <tool name>, "arguments": {...}}', False
    if call["name"] not in offered:       # the name is echoed only if plain: no chat markup back into the context
        name = repr(call["name"]) if re.fullmatch(r"[\w.-]{1,64}", call["name"]) else "(a name that is not plain)"
        return f"error: unknown tool {name}; the tools are: {', '.join(sorted(offered))}", False
    try:
        return offered[call["name"]].run(call["arguments"]), True
    except ToolError as error:
        return f"error: {error}", False


def describe_call(record: dict) -> str:
    """One line for a person: ``[calculator] 347 * 86 = 29842``, or ``[calculator] 1/0 -> error: ...``."""
    args = record["arguments"]
    shown = args["expression"] if isinstance(args, dict) and list(args) == ["expression"] and \
        isinstance(args["expression"], str) else json.dumps(args, ensure_ascii=False)
    return f"[{record['name'] or 'tool call'}] {shown} {'=' if record['valid'] else '->'} {record['result']}"


# ---------------------------------------------------------------------------------------------- one reply
MALFORMED = 'error: not a tool call; write <tool_call>\n{"name": <tool name>, "arguments": {...}}\n</tool_call>'
TURN_END = "\n"                # the template's "<|im_end|>\n": the model stops at <|im_end|>, the "\n" is ours


def answer_text(text: str) -> str:
    """A reply's text after its think block up to the end of the turn (what holds the answer and the tool
    calls; the same cuts as ``chat.split_completion``)."""
    for end_of_turn in ("<|im_end|>", "<|endoftext|>"):
        text = text.split(end_of_turn)[0]
    if not text.startswith("<think>"):
        return text
    for end in (chat.STOP_THINKING, "</think>"):
        if end in text:
            return text.split(end, 1)[1]
    return ""


def assistant_message(text: str, think_block: bool) -> dict:
    """The assistant message of a reply (its text), as the chat template renders it back: ``content`` (the
    answer), ``reasoning_content`` when the reply had a think block (its own, or the prompt's empty one in
    non-thinking mode; "\\n" for an empty block, see the module docstring) and ``tool_calls``. If a
    ``<tool_call>`` block does not parse, the answer with its blocks is kept verbatim as the content."""
    parts = chat.split_completion(text)
    message = {"role": "assistant", "content": parts.answer}
    if think_block:
        message["reasoning_content"] = parts.thinking or "\n"
    if parts.malformed_tool_calls:
        message["content"] = answer_text(text).lstrip("\n")
    elif parts.tool_calls:
        message["tool_calls"] = parts.tool_calls
    return message


def run_calls(text: str, offered: dict) -> list:
    """One record {"name", "arguments", "result", "valid"} per ``<tool_call>`` block of a reply, in order; a
    block that does not parse gets name None, its text as arguments and an error result."""
    records = []
    for block in chat.TOOL_CALL.findall(answer_text(text)):
        parsed = chat.split_completion(f"<tool_call>{block}</tool_call>").tool_calls
        if parsed:
            result, valid = run_tool_call(parsed[0], offered)
            records.append({**parsed[0], "result": result, "valid": valid})
        else:
            records.append({"name": None, "arguments": block, "result": MALFORMED, "valid": False})
    return records


def tool_turn(tokenizer, records, think: bool) -> tuple:
    """(tool messages, the text that follows the model's <|im_end|>): the end of its turn, the user turn of
    ``<tool_response>`` blocks and the re-opened assistant turn, each as the chat template renders it."""
    messages = [{"role": "tool", "content": record["result"]} for record in records]
    return messages, TURN_END + tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True,
                                                              enable_thinking=think)


# ---------------------------------------------------------------------------------------------- batches
@dataclass
class ToolRollout:
    """One conversation's run through the tool loop.

    tokens: every token after the original prompt, in order (the model's, the tool turns', the re-opened
    assistant headers'); mask: True where the model sampled the token, False where the loop inserted it (tool
    turns, headers, a thinking budget's stop text). messages: the messages added to the conversation (assistant
    with tool_calls, tool, ..., the last assistant). calls: {"name", "arguments", "result", "valid"} per call
    run. finish: "stop" (a reply without a call), "length" (a reply ran out of tokens or of context: truncated),
    "max_calls" (the last reply's calls would pass max_calls and were not run)."""
    prompt: list
    tokens: list = field(default_factory=list)
    mask: list = field(default_factory=list)
    messages: list = field(default_factory=list)
    calls: list = field(default_factory=list)
    replies: list = field(default_factory=list)      # the chat.ChatCompletion of every round
    answer: str = ""                                 # the last reply's answer (without its tool calls)
    finish: str = "stop"

    @property
    def all_calls_valid(self) -> bool:
        return all(call["valid"] for call in self.calls)

    @property
    def truncated(self) -> bool:
        return self.finish == "length"


def _round_sampling(sampling, round_index: int):
    """The sampling of one round: a given seed moves on by one per round (no repeated random streams)."""
    if isinstance(sampling, SamplingParams):
        return sampling if sampling.seed is None else replace(sampling, seed=sampling.seed + round_index)
    return sampling if sampling.get("seed") is None else {**sampling, "seed": sampling["seed"] + round_index}


def generate_with_tools(model, tokenizer, conversations, tools, max_new_tokens, sampling, think: bool = True,
                        max_calls: int = 4, thinking_budget: int | None = None) -> list:
    """Run every conversation (a list of messages ending with the user's) through the tool loop; one
    ToolRollout each.

    tools: names of TOOLS or Tool objects, offered through the template. max_new_tokens: the tokens each row may
    sample over all its rounds (one int, or one per conversation); the inserted tokens do not count, but every
    token must fit the model's context. sampling: as ``chat.generate_replies`` takes it. At most ``max_calls``
    calls run per row; a reply whose calls would pass the limit ends the row unanswered ("max_calls")."""
    offered = {tool.name: tool for tool in resolve_tools(tools)}
    schemas = [tool.schema for tool in offered.values()] or None
    rows = [ToolRollout(chat.render(tokenizer, messages, think, tools=schemas)) for messages in conversations]
    left = list(max_new_tokens) if isinstance(max_new_tokens, (list, tuple)) else [max_new_tokens] * len(rows)
    stop_text = len(tokenizer.encode(chat.STOP_THINKING)) if thinking_budget is not None else 0
    context, going, round_index = model.config.max_position_embeddings, list(range(len(rows))), 0
    while going:
        ready = []
        for i in going:
            room = min(left[i], context - len(rows[i].prompt) - len(rows[i].tokens) - stop_text)
            if room < 1:
                rows[i].finish = "length"
            else:
                ready.append((i, room))
        if not ready:
            break
        replies = chat.generate_replies(model, tokenizer, [rows[i].prompt + rows[i].tokens for i, _ in ready],
                                        [room for _, room in ready], _round_sampling(sampling, round_index),
                                        thinking_budget=thinking_budget)
        going, round_index = [], round_index + 1
        for (i, _), reply in zip(ready, replies):
            left[i] -= reply.completion.generated_tokens
            if _take_reply(rows[i], reply, tokenizer, think, offered, max_calls, stop_text):
                going.append(i)
    return rows


def _take_reply(row: ToolRollout, reply, tokenizer, think, offered, max_calls, stop_text) -> bool:
    """Add one round's reply to the row; run its calls and append the tool turn. True if the row goes on."""
    completion = reply.completion
    mask = [True] * len(completion.tokens)
    if completion.forced_at is not None:          # the thinking budget's stop text was inserted, not sampled
        mask[completion.forced_at:completion.forced_at + stop_text] = [False] * stop_text
        mask = mask[:len(completion.tokens)]
    row.tokens += completion.tokens
    row.mask += mask
    row.replies.append(reply)
    row.answer = reply.parts.answer
    row.messages.append(assistant_message(reply.text, not think or reply.text.startswith("<think>")))
    blocks = chat.TOOL_CALL.findall(answer_text(reply.text))
    if completion.finish_reason != "stop":
        row.finish = "length"
        return False
    if not blocks:
        row.finish = "stop"
        return False
    if len(row.calls) + len(blocks) > max_calls:
        row.finish = "max_calls"
        return False
    records = run_calls(reply.text, offered)
    messages, text = tool_turn(tokenizer, records, think)
    inserted = tokenizer.encode(text)
    row.calls += records
    row.messages += messages
    row.tokens += inserted
    row.mask += [False] * len(inserted)
    return True


# ---------------------------------------------------------------------------------------------- the chat
@dataclass
class ToolReply(chat.Reply):
    """A ChatSession Reply summed over the rounds of one user turn, with the calls run."""
    calls: list = field(default_factory=list)


class ToolSession(chat.ChatSession):
    """A ChatSession whose turns may call tools. ``reply`` answers the user, and while the reply ends with tool
    calls (at most ``max_calls`` per turn) it runs them, adds the assistant message (tool calls and, for this
    turn's chain, its reasoning) and the tool messages to the history and replies again: every round renders
    the whole conversation (with the tools) and prefills only what the KV cache lacks. Each call is shown
    through ``on_text`` as a line ``[calculator] 347 * 86 = 29842``. An interrupted or failed round, or tool
    results that leave no room for a reply (finish "context"), discard the whole turn."""

    def __init__(self, model, tokenizer, tools, system=None, max_context=None, log=None, max_calls: int = 4):
        offered = resolve_tools(tools)
        super().__init__(model, tokenizer, system, max_context, log, tools=[t.schema for t in offered])
        self.offered, self.max_calls = {tool.name: tool for tool in offered}, max_calls

    def reply(self, user_text, think, sampling, budget=None, max_new_tokens=chat.POST_TRAINED_MAX_NEW_TOKENS,
              on_text=None, interrupted=lambda: False) -> ToolReply:
        on_text = on_text or (lambda text, part: None)
        saved, total = list(self.history), ToolReply(finish="stop")
        try:
            while True:
                pieces = []
                reply = super().reply(user_text, think, sampling, budget, max_new_tokens,
                                      lambda text, part: (pieces.append(text), on_text(text, part)), interrupted)
                total = _merged(total, reply)
                text = "".join(pieces)
                blocks = chat.TOOL_CALL.findall(answer_text(text))
                if reply.finish != "stop" or not blocks:
                    break
                if len(total.calls) + len(blocks) > self.max_calls:
                    on_text(f"\n[tool-call limit: {self.max_calls} calls per turn; these were not run]", chat.ANSWER)
                    break
                records = run_calls(text, self.offered)
                self.history[-1] = assistant_message(text, not think or text.startswith("<think>"))
                self.history += tool_turn(self.tok, records, think)[0]
                for record in records:
                    on_text("\n" + describe_call(record) + "\n", chat.ANSWER)
                total.calls += records
                user_text = None                   # the next round continues this turn
        except chat.TooLong:
            if user_text is not None:              # the user's message itself does not fit: nothing changed
                raise
            self.history, total.finish = saved, "context"
        except BaseException:
            self.history = saved
            raise
        if total.finish == "interrupted":
            self.history = saved
        return total


def _merged(total: ToolReply, reply) -> ToolReply:
    """The turn so far plus one more round."""
    return ToolReply(finish=reply.finish, thinking_tokens=total.thinking_tokens + reply.thinking_tokens,
                     answer_tokens=total.answer_tokens + reply.answer_tokens,
                     budget_hit=total.budget_hit or reply.budget_hit, seconds=total.seconds + reply.seconds,
                     generated=total.generated + reply.generated, answer=reply.answer,
                     dropped_turns=total.dropped_turns + reply.dropped_turns, calls=total.calls)
