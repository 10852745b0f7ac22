"""The Qwen3 chat protocol, usable without a terminal: modes, the thinking budget, replies split into parts.

    from qwen3mini.chat import load, ChatSession, generate_replies, render, sampling_settings

    model, tok, info = load("checkpoints/qwen3mini-base")
    session = ChatSession(model, tok)                        # a conversation that keeps its KV cache
    reply = session.reply("Is 221 prime?", think=True, sampling=sampling_settings("think"), budget=256)

    prompts = [render(tok, [{"role": "user", "content": q}], think=False) for q in questions]
    for r in generate_replies(model, tok, prompts, 512, sampling_settings("no-think")):
        r.text, r.parts.thinking, r.parts.answer, r.parts.tool_calls, r.completion.finish_reason

The reply format is ``<think>\\n{thinking}\\n</think>\\n\\n{answer}`` (paper §4.3, Table 9):

* Modes. Thinking (the template's default) leaves the assistant turn open and the model writes ``<think>``
  itself; non-thinking is the template's ``enable_thinking=False``, an empty think block in the prompt.
  ``/think`` and ``/no_think`` at the end of a user or system message are plain text the model was trained to
  obey, the last one winning (paper §4.3); they stay in the message.
* Thinking budget (paper §4.3): once the model has generated N tokens after ``<think>``, it is stopped and
  ``STOP_THINKING`` (ending in ``</think>\\n\\n``) is appended as if generated; the model answers after it.
* Sampling defaults per mode: paper §4.6 (docs/qwen3.md §2.4).

docs/qwen3.md = the repository's notes on Qwen3; paper = the Qwen3 technical report (arXiv 2505.09388).
"""
import json
import math
import re
import time
from dataclasses import dataclass, field

import torch

from .checkpoint import load_model, read_generation_config, resolve_checkpoint
from .generation import Completion, Generator, SamplingParams, ThinkingBudget, generate_completions
from .tokenizer import load_tokenizer

# Paper §4.3's sentence in the form of Qwen's own implementation (docs/qwen3.md §4): on a line of its own, and the
# think block closed as the template closes it. The report's text follows the cut at once and ends "</think>.";
# the shipped model answers far better after this form at every budget up to 256 (bench/RESULTS.md, session 27).
STOP_THINKING = ("\n\nConsidering the limited time by the user, I have to give the solution based on the "
                 "thinking directly now.\n</think>\n\n")

# Paper §4.6 / docs/qwen3.md §2.4: recommended sampling per mode.
SAMPLING_DEFAULTS = {
    "think": dict(temperature=0.6, top_p=0.95, top_k=20, presence_penalty=0.0),
    "no-think": dict(temperature=0.7, top_p=0.8, top_k=20, presence_penalty=1.5),
}
SOFT_SWITCH = re.compile(r"/(think|no_think)\b")
THINK, ANSWER = "think", "answer"                # the two parts of a reply
TOOL_CALL = re.compile(r"<tool_call>(.*?)(?:</tool_call>|$)", re.DOTALL)

# Reply lengths when generation_config.json names none. A post-trained model ends its turns itself (paper §4.6
# allows it 32,768 tokens); a base model continues text and rarely ends a turn: every reply runs to the limit.
POST_TRAINED_MAX_NEW_TOKENS = 32768
BASE_MAX_NEW_TOKENS = 256


class ChatError(Exception):
    """A problem worth one clear line to the user (bad model path, bad setting, ...), not a traceback."""


# ---------------------------------------------------------------------------------------------- settings
def sampling_settings(mode: str, overrides=None) -> dict:
    """The paper's sampling for ``mode`` ("think" / "no-think"); values in ``overrides`` that are not None
    win. Raises ChatError naming the setting when a value is out of range (NaN included)."""
    settings = dict(SAMPLING_DEFAULTS[mode])
    for name in settings:
        value = (overrides or {}).get(name)
        if value is not None:
            settings[name] = value
    t, p, k, penalty = (settings[n] for n in ("temperature", "top_p", "top_k", "presence_penalty"))
    for name, bad, rule in (("temperature", not (math.isfinite(t) and t >= 0), "a number >= 0 (0 = greedy)"),
                            ("top_p", not 0 < p <= 1, "in (0, 1]"),
                            ("top_k", not (isinstance(k, int) and k >= 0), "a whole number >= 0 (0 = off)"),
                            ("presence_penalty", not math.isfinite(penalty), "a finite number")):
        if bad:
            raise ChatError(f"{name} must be {rule}, got {settings[name]}")
    return settings


def effective_mode(messages, think: bool) -> str:
    """The mode of the next reply: ``think=False`` forces the empty think block; otherwise the last /think or
    /no_think switch in a user or system message wins (paper §4.3), thinking being the default."""
    if not think:
        return "no-think"
    for message in reversed(messages):
        if message["role"] in ("user", "system"):
            switches = SOFT_SWITCH.findall(message.get("content") or "")
            if switches:
                return "think" if switches[-1] == "think" else "no-think"
    return "think"


# ---------------------------------------------------------------------------------------------- tokens
@dataclass
class ChatTokens:
    """The ids the protocol needs, looked up once: turn start, <think>, </think>, the ids that end a reply
    (the model's eos ids, <|im_end|>, <|endoftext|>) and the budget's stop text."""
    turn_start: int
    think: int
    end_think: int
    stops: list
    stop_thinking: list

    NAMES = ("<|im_start|>", "<|im_end|>", "<|endoftext|>", "<think>", "</think>")

    @classmethod
    def of(cls, tokenizer, eos_token_ids=()) -> "ChatTokens":
        ids = tokenizer.token_to_id
        missing = [name for name in cls.NAMES if name not in ids]
        if missing:
            raise ChatError(f"the tokenizer lacks Qwen3's chat tokens {missing} (docs/qwen3.md §3): "
                            "not a Qwen3 tokenizer")
        stops = sorted(set(eos_token_ids) | {ids["<|im_end|>"], ids["<|endoftext|>"]})
        return cls(ids["<|im_start|>"], ids["<think>"], ids["</think>"], stops, tokenizer.encode(STOP_THINKING))

    def budget(self, max_tokens: int | None) -> ThinkingBudget | None:
        """The generation path's thinking budget for ``max_tokens`` tokens after <think> (None: no budget)."""
        return None if max_tokens is None else ThinkingBudget(self.think, self.end_think, max_tokens,
                                                              list(self.stop_thinking))


def render(tokenizer, messages, think: bool, tools=None) -> list:
    """Prompt ids of ``messages`` with the assistant turn opened, in thinking or non-thinking mode."""
    return tokenizer.encode(tokenizer.apply_chat_template(messages, tools, tokenize=False,
                                                          add_generation_prompt=True, enable_thinking=think))


# ---------------------------------------------------------------------------------------------- text
class TextStream:
    """Token ids to text one id at a time, never half a UTF-8 character. Ids without text (the embedding's
    padding rows past the tokenizer's vocabulary, which a barely trained model may sample) show as U+FFFD
    instead of failing, after whatever incomplete character was pending (as ``decode`` would show it)."""

    def __init__(self, tokenizer):
        self.decoder = tokenizer.incremental_decoder()

    def feed(self, token: int) -> str:
        try:
            return self.decoder.feed(token)
        except ValueError:
            return self.decoder.flush() + "\ufffd"

    def flush(self) -> str:
        return self.decoder.flush()


def decode_text(tokenizer, ids) -> str:
    """``tokenizer.decode`` that shows ids without text as U+FFFD (``TextStream``)."""
    stream = TextStream(tokenizer)
    return "".join(stream.feed(token) for token in ids) + stream.flush()


@dataclass
class CompletionParts:
    """A completion split in the reply format's parts. The format's newlines are stripped as Qwen3's chat
    template strips them when it reads a reply back (thinking: around it; answer: before it); ``answer`` excludes
    the tool calls and the end-of-turn token. tool_calls: {"name", "arguments"} per well-formed ``<tool_call>``
    block (the form the template takes back in an assistant message's "tool_calls"); malformed_tool_calls: the
    text inside the others."""
    thinking: str
    answer: str
    tool_calls: list = field(default_factory=list)
    malformed_tool_calls: list = field(default_factory=list)


def split_completion(completion, tokenizer=None) -> CompletionParts:
    """Split a completion (the text after the prompt, or its ids with ``tokenizer``) into thinking, answer
    and tool calls. The thinking ends at </think> or at the budget's stop text (which belongs to neither part);
    text after an end-of-turn token is ignored."""
    text = completion if isinstance(completion, str) else decode_text(tokenizer, completion)
    for end_of_turn in ("<|im_end|>", "<|endoftext|>"):
        text = text.split(end_of_turn)[0]
    thinking = ""
    if text.startswith("<think>"):
        end, length = text.find(STOP_THINKING), len(STOP_THINKING)
        if end < 0:
            end, length = text.find("</think>"), len("</think>")
        end = len(text) if end < 0 else end
        thinking, text = text[len("<think>"):end], text[end + length:]
    calls, malformed = [], []
    for block in TOOL_CALL.findall(text):
        try:
            call = json.loads(block)
            if not (isinstance(call, dict) and isinstance(call.get("name"), str)
                    and isinstance(call.get("arguments"), dict)):
                raise ValueError("not {name, arguments}")
            calls.append({"name": call["name"], "arguments": call["arguments"]})
        except ValueError:
            malformed.append(block)
    answer = text.split("<tool_call>")[0]
    if answer != text:
        answer = answer.removesuffix("\n")          # the template joins content and tool calls with a newline
    return CompletionParts(thinking.strip("\n"), answer.lstrip("\n"), calls, malformed)


# ---------------------------------------------------------------------------------------------- the phase
class ThinkingTracker:
    """Follows one reply token by token: inside the think block or in the answer, and when the budget is hit.
    The budget counts the tokens generated after ``<think>``; tokens appended by us (the stop text) are not."""

    def __init__(self, think_id, end_think_id, budget=None, phase="start"):
        self.think_id, self.end_think_id, self.budget = think_id, end_think_id, budget
        self.phase = phase                # "start" (the model picks), THINK or ANSWER; see prompt_phase
        self.thinking_tokens = self.answer_tokens = 0
        self.budget_hit = False

    def observe(self, token: int) -> str:
        """Account for one generated token; return the part it belongs to (THINK or ANSWER)."""
        if self.phase == "start":
            self.phase = THINK if token == self.think_id else ANSWER
            if self.phase == THINK:
                return THINK
        elif self.phase == THINK:
            if token == self.end_think_id:
                self.phase = ANSWER
            else:
                self.thinking_tokens += 1
            return THINK
        self.answer_tokens += 1
        return ANSWER

    @property
    def over_budget(self) -> bool:
        """True when the model is still thinking and has used its whole budget: time to insert the stop text."""
        return self.phase == THINK and self.budget is not None and self.thinking_tokens >= self.budget

    def stop_thinking(self):
        self.phase, self.budget_hit = ANSWER, True


def prompt_phase(prompt_ids, turn_start_id, think_id, end_think_id) -> str:
    """Where the prompt leaves the assistant turn: after an empty think block (non-thinking: ANSWER), inside an
    open one (templates that prefill "<think>\\n": THINK), or at its start, where the model picks ("start")."""
    turn = prompt_ids
    if turn_start_id in prompt_ids:
        turn = prompt_ids[len(prompt_ids) - prompt_ids[::-1].index(turn_start_id):]
    if end_think_id in turn:
        return ANSWER
    return THINK if think_id in turn else "start"


# ---------------------------------------------------------------------------------------------- loading
@dataclass
class ModelInfo:
    """What the checkpoint says about generating with it. post_trained: its generation_config.json ends
    generation on <|im_end|>, as Qwen's post-trained releases do (the -Base ones stop on <|endoftext|> only, or
    ship no such file): a model that never learnt to end a turn is a base model."""
    post_trained: bool
    max_new_tokens: int | None          # generation_config.json's, if it names one

    def reply_limit(self, post_trained_default: int = POST_TRAINED_MAX_NEW_TOKENS) -> int:
        return self.max_new_tokens or (post_trained_default if self.post_trained else BASE_MAX_NEW_TOKENS)


def load(model: str, device=None, dtype=None, quantize=None):
    """(model, tokenizer, ModelInfo) from a directory or hub repo id. device defaults to cuda when present,
    dtype to bfloat16 on a GPU and float32 on the CPU; quantize: ``load_model``'s (``"int8"``: int8 weights).
    Every failure is a ChatError of one line."""
    try:
        path = resolve_checkpoint(model)
        generation_config = read_generation_config(path)
    except (OSError, ValueError) as error:
        raise ChatError(str(error)) from None
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    dtype = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}.get(dtype, dtype)
    dtype = dtype or ("float32" if device == "cpu" else "bfloat16")
    try:
        tokenizer = load_tokenizer(path)
    except Exception as error:  # one clear line, whatever went wrong
        raise ChatError(f"{path}: could not load the tokenizer: {error}") from None
    try:
        net = load_model(path, device=device, dtype=getattr(torch, dtype), quantize=quantize)
    except Exception as error:
        raise ChatError(f"{path}: could not load the model on {device} as {dtype}: {error}") from None
    eos, limit = generation_config.get("eos_token_id"), generation_config.get("max_new_tokens")
    if limit is not None and not (isinstance(limit, int) and limit >= 1):
        raise ChatError(f"{path}: generation_config.json's max_new_tokens must be a whole number >= 1, got {limit!r}")
    post_trained = tokenizer.token_to_id.get("<|im_end|>", -1) in (eos if isinstance(eos, list) else [eos])
    return net.eval(), tokenizer, ModelInfo(post_trained, limit)


# ---------------------------------------------------------------------------------------------- batches
@dataclass
class ChatCompletion:
    """One generated reply: the generation path's Completion (tokens, generated_tokens, finish_reason,
    forced_at), its text (U+FFFD for ids without text) and that text split into parts."""
    completion: Completion
    text: str
    parts: CompletionParts


def generate_replies(model, tokenizer, prompt_id_lists, max_new_tokens, sampling,
                     thinking_budget: int | None = None) -> list:
    """Complete each rendered prompt (``render``) in one batch; stops at the end of the assistant turn.

    sampling: a dict of ``sampling_settings`` (plus an optional "seed") or a SamplingParams. With
    ``thinking_budget`` N, a row still thinking N tokens after <think> gets the stop text (paper §4.3) and
    goes on to answer; the stop text counts neither toward the budget nor toward ``max_new_tokens``."""
    tokens = ChatTokens.of(tokenizer, model.config.eos_token_ids)
    params = sampling if isinstance(sampling, SamplingParams) else SamplingParams(**sampling)
    completions = generate_completions(model, prompt_id_lists, max_new_tokens, params, tokens.stops,
                                       tokens.budget(thinking_budget))
    texts = [decode_text(tokenizer, completion.tokens) for completion in completions]
    return [ChatCompletion(completion, text, split_completion(text)) for completion, text in zip(completions, texts)]


# ---------------------------------------------------------------------------------------------- a conversation
DEFAULT_MAX_CONTEXT = 16384         # the session's KV cache length unless the model's context is shorter


@dataclass
class Reply:
    """One streamed reply of a ChatSession."""
    finish: str                       # "stop", "length" (max_new_tokens), "context" (full), "interrupted"
    thinking_tokens: int = 0
    answer_tokens: int = 0
    budget_hit: bool = False
    seconds: float = 0.0
    generated: list = field(default_factory=list)   # generated ids (the stop text not included)
    answer: str = ""
    dropped_turns: int = 0            # oldest turns dropped so that the prompt fits the context


class TooLong(ChatError):
    """The message alone does not fit the context; args[0] is the prompt's length in tokens."""


class ChatSession:
    """A conversation with one model: history, KV cache prefix reuse, and replies with a thinking budget.

    Every turn renders the whole conversation. The template drops the thinking of earlier turns, so the
    prompt is not simply "cache + new message": the longest prefix of the KV cache that still matches is kept
    and only the rest is prefilled. ``log(event, **fields)`` sees every prompt, prefill and token."""

    def __init__(self, model, tokenizer, system=None, max_context=None, log=None, tools=None):
        self.ids = ChatTokens.of(tokenizer, model.config.eos_token_ids)
        self.model, self.tok, self.log = model, tokenizer, log or (lambda event, **fields: None)
        self.system, self.tools = ([{"role": "system", "content": system}] if system else []), tools  # tools: schemas
        self.history = []                                 # user/assistant messages of finished turns
        self.context = min(model.config.max_position_embeddings, max_context or DEFAULT_MAX_CONTEXT)
        try:
            self.gen = Generator(model, max_seq_len=self.context, batch_size=1)
        except (RuntimeError, MemoryError) as error:
            raise ChatError(f"no memory for a {self.context}-token KV cache ({error}); "
                            "set QWEN3MINI_MAX_CONTEXT to a smaller context") from None

    def reset(self):
        self.history = []

    def fit(self, new: list, think: bool, reserve: int):
        """(prompt ids, history, dropped turns) for the history plus the ``new`` messages, the oldest turns dropped
        until ``reserve`` tokens are left for the reply; TooLong if even no (earlier) history leaves them."""
        history, dropped = list(self.history), 0
        while True:
            ids = render(self.tok, self.system + history + new, think, self.tools)
            if len(ids) + reserve <= self.context:
                return ids, history, dropped
            # A turn is a user message and the assistant (and tool) messages after it.
            cut = next((i for i in range(1, len(history)) if history[i]["role"] == "user"), len(history))
            if not history or (not new and cut == len(history)):
                raise TooLong(len(ids))
            history, dropped = history[cut:], dropped + 1

    def prefill(self, ids):
        """Make the KV cache hold exactly ``ids``, keeping its longest matching prefix; returns the logits
        of the next token."""
        keep = 0
        for cached, new in zip(self.gen.tokens[0], ids):
            if cached != new:
                break
            keep += 1
        keep = min(keep, len(ids) - 1)   # re-feed at least one token: its logits start the reply
        self.gen.truncate(keep)
        logits = self.gen.append(ids[keep:])
        self.log("prefill", reused=keep, ids=ids[keep:], text=self.tok.decode(ids[keep:]))
        return logits

    def reply(self, user_text: str, think: bool, sampling: dict, budget=None,
              max_new_tokens=POST_TRAINED_MAX_NEW_TOKENS, on_text=None, interrupted=lambda: False) -> Reply:
        """Answer ``user_text`` (None: go on after tool results), calling ``on_text(text, part)`` as the reply
        streams; keep the turn in the history unless ``interrupted()`` turned true. TooLong if it cannot fit."""
        on_text = on_text or (lambda text, part: None)
        new = [] if user_text is None else [{"role": "user", "content": user_text}]
        stop_text = self.ids.stop_thinking
        reserve = min(max_new_tokens, self.context // 2) + (len(stop_text) if budget is not None else 0)
        ids, history, dropped = self.fit(new, think, reserve)
        if dropped:
            self.history = history
            self.log("drop", turns=dropped)
        self.log("prompt", ids=ids, text=self.tok.decode(ids), think=think, budget=budget, sampling=sampling)

        params = SamplingParams(**sampling)   # no seed: the caller seeds torch once for the whole session
        phase = prompt_phase(ids, self.ids.turn_start, self.ids.think, self.ids.end_think)
        tracker = ThinkingTracker(self.ids.think, self.ids.end_think, budget, phase)
        stream = TextStream(self.tok)
        reply = Reply(finish="length", dropped_turns=dropped)

        def show(text, part):
            on_text(text, part)
            if part == ANSWER:
                reply.answer += text

        self.prefill(ids)
        start = time.perf_counter()
        while True:
            limit = min(max_new_tokens - len(reply.generated), self.context - self.gen.length)
            if limit <= 0:
                reply.finish = "length" if len(reply.generated) >= max_new_tokens else "context"
                break
            why = self._stream(limit, params, tracker, stream, reply, show, interrupted)
            if why == "length":      # the next pass finds out which limit it was
                continue
            if why != "budget":
                reply.finish = why
                break
            if self.gen.length + len(stop_text) >= self.context:
                reply.finish = "context"
                break
            # Paper §4.3: stop the thinking, append the stop text; the model answers after it.
            self.gen.append(stop_text)
            tracker.stop_thinking()
            self.log("stop_thinking", after=tracker.thinking_tokens, ids=stop_text, text=STOP_THINKING)
            for token in stop_text:
                on_text(stream.feed(token), THINK)
        show(stream.flush(), tracker.phase if tracker.phase != "start" else ANSWER)
        reply.seconds = time.perf_counter() - start
        reply.thinking_tokens, reply.answer_tokens = tracker.thinking_tokens, tracker.answer_tokens
        reply.budget_hit = tracker.budget_hit
        self.log("end", finish=reply.finish, thinking_tokens=reply.thinking_tokens,
                 answer_tokens=reply.answer_tokens, generated=reply.generated)
        if reply.finish != "interrupted":
            # Earlier turns lose their thinking in the template: the answer is all the history needs (no stop text).
            self.history = history + new + [{"role": "assistant", "content": reply.answer.lstrip("\n")}]
        return reply

    def _stream(self, limit, params, tracker, stream, reply, show, interrupted) -> str:
        """Sample up to ``limit`` tokens; return why it stopped ("stop", "budget", "interrupted", "length")."""
        if tracker.over_budget:          # a budget of 0 stops right after <think>
            return "budget"
        for token in self.gen.stream(limit, params, self.ids.stops):
            if token in self.ids.stops:
                return "stop"
            reply.generated.append(token)
            part = tracker.observe(token)
            text = stream.feed(token)
            self.log("token", id=token, part=part, text=text)
            show(text, part)
            if interrupted():
                return "interrupted"
            if tracker.over_budget:
                return "budget"
        return "length"
