#!/usr/bin/env python
"""Chat with a Qwen3 model in the terminal: thinking and non-thinking modes, thinking budgets.

    python infer/chat.py --no-think                              # interactive, answers without thinking
    python infer/chat.py --thinking-budget 256 --prompt "Is 221 prime?"
    printf 'Hi!\\nAnd in French? /no_think\\n' | python infer/chat.py  # piped: one user turn per line

How a turn works (docs/qwen3.md = our notes on Qwen3, paper = the Qwen3 technical report, arXiv 2505.09388):

  1. The whole conversation is rendered with the chat template (docs/qwen3.md §4) and tokenized. The template drops
     the thinking of earlier turns, so the rendered prompt is not simply "cache + new message": we keep the
     longest prefix of the KV cache that still matches and prefill only the rest.
  2. ``--think`` (default) leaves the assistant turn open and the model starts with ``<think>`` itself;
     ``--no-think`` is the template's ``enable_thinking=False``, which writes an empty think block into the
     prompt. ``/think`` and ``/no_think`` typed at the end of a message are plain text that the model was
     trained to obey, the last one winning (paper §4.3); they go to the model verbatim.
  3. Thinking budget (paper §4.3): once the model has produced N tokens after ``<think>``, we stop it, append
     the report's stop text (``STOP_THINKING``, ending in ``</think>.\\n\\n``) as tokens and let it answer.
  4. Sampling defaults follow the mode (paper §4.6, docs/qwen3.md §2.4); any flag given on the command line wins.

If the conversation no longer fits the context, the oldest turns are dropped with a notice; a single message
too long for the context is refused. Ctrl-C stops a reply (the turn is discarded), Ctrl-D / EOF exits.

Debugging: ``QWEN3MINI_CHAT_LOG=path.jsonl`` records every prompt, prefill and token fed to the model;
``QWEN3MINI_MAX_CONTEXT=N`` caps the context (KV cache) length below the model's.
"""
import argparse
import json
import os
import re
import signal
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass, field

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_MODEL = os.path.join(REPO_ROOT, "checkpoints", "qwen3mini-base")

# Paper §4.3, verbatim (the "." after </think> included).
STOP_THINKING = ("Considering the limited time by the user, I have to give the solution based on the "
                 "thinking directly now.\n</think>.\n\n")

# Paper §4.6 / docs/qwen3.md §2.4: recommended sampling per mode.
SAMPLING_DEFAULTS = {
    "think": dict(temperature=0.6, top_p=0.95, top_k=20, presence_penalty=0.0),
    "no-think": dict(temperature=0.7, top_p=0.8, top_k=20, presence_penalty=1.5),
}
DEFAULT_MAX_NEW_TOKENS = 32768      # paper §4.6: maximum output length; the context caps it further
DEFAULT_MAX_CONTEXT = 16384         # KV cache length unless the model's context is shorter
SOFT_SWITCH = re.compile(r"/(think|no_think)\b")
CHAT_TOKENS = ("<|im_start|>", "<|im_end|>", "<|endoftext|>", "<think>", "</think>")

HELP = """commands (a ':' prefix, so they never collide with the /think and /no_think switches):
  :help             this text
  :reset            forget the conversation (the system prompt stays)
  :think            thinking mode for the next turns (template default)
  :no-think         non-thinking mode for the next turns (empty think block in the prompt)
  :budget N | off   thinking budget in tokens
  :quit             exit (so does Ctrl-D); Ctrl-C stops a reply in progress
end a message with /think or /no_think to switch mode for that message (the model follows the last one)"""


# --------------------------------------------------------------------------------------------- command line
def parse_args(argv=None):
    p = argparse.ArgumentParser(
        description="Chat with a Qwen3 model (thinking / non-thinking modes, thinking budgets).",
        epilog="Sampling flags left out take the paper's per-mode defaults (thinking: T 0.6, top-p 0.95, "
               "top-k 20; non-thinking: T 0.7, top-p 0.8, top-k 20, presence penalty 1.5). Environment: "
               "QWEN3MINI_MAX_CONTEXT caps the context length, QWEN3MINI_CHAT_LOG=path logs model inputs.")
    p.add_argument("--model", default=DEFAULT_MODEL,
                   help="HF-layout model directory or hub repo id (default: the shipped checkpoints/qwen3mini-base)")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--think", dest="think", action="store_true", default=True,
                      help="thinking mode (default): the model reasons inside <think>...</think> first")
    mode.add_argument("--no-think", dest="think", action="store_false",
                      help="non-thinking mode: the template's empty think block (enable_thinking=False)")
    p.add_argument("--thinking-budget", type=_non_negative_int, default=None, metavar="N",
                   help="stop thinking after N tokens and make the model answer (paper §4.3)")
    p.add_argument("--prompt", default=None, metavar="TEXT", help="answer this one message and exit")
    p.add_argument("--system", default=None, metavar="TEXT", help="system prompt")
    p.add_argument("--max-new-tokens", type=_positive_int, default=DEFAULT_MAX_NEW_TOKENS, metavar="N",
                   help=f"most tokens generated per reply (default {DEFAULT_MAX_NEW_TOKENS}, capped by the context)")
    p.add_argument("--temperature", type=_non_negative_float, default=None, metavar="T", help="0 = greedy")
    p.add_argument("--top-p", type=_probability, default=None, metavar="P")
    p.add_argument("--top-k", type=_non_negative_int, default=None, metavar="K", help="0 = no top-k cut")
    p.add_argument("--presence-penalty", type=float, default=None, metavar="X")
    p.add_argument("--seed", type=int, default=None, metavar="S", help="sampling seed (default: random)")
    p.add_argument("--device", default=None, metavar="D", help="cpu, cuda, cuda:1, ... (default: cuda if present)")
    p.add_argument("--dtype", default=None, choices=["float32", "bfloat16", "float16", "fp32", "bf16", "fp16"],
                   help="model dtype (default: bfloat16 on GPU, float32 on CPU)")
    return p.parse_args(argv)


def _non_negative_int(text):
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {text}")
    return value


def _positive_int(text):
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {text}")
    return value


def _non_negative_float(text):
    value = float(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {text}")
    return value


def _probability(text):
    value = float(text)
    if not 0 < value <= 1:
        raise argparse.ArgumentTypeError(f"must be in (0, 1], got {text}")
    return value


def sampling_settings(mode: str, args) -> dict:
    """The paper's defaults for ``mode`` ("think" / "no-think"), overridden by flags given explicitly."""
    settings = dict(SAMPLING_DEFAULTS[mode])
    for name in settings:
        if getattr(args, name) is not None:
            settings[name] = getattr(args, name)
    return settings


def effective_mode(messages, think: bool) -> str:
    """Which mode the model is in for the next reply: --no-think forces the empty think block; otherwise the
    last /think or /no_think switch in the conversation wins (paper §4.3), thinking being the default."""
    if not think:
        return "no-think"
    for message in reversed(messages):
        if message["role"] in ("user", "system"):
            switches = SOFT_SWITCH.findall(message["content"])
            if switches:
                return "think" if switches[-1] == "think" else "no-think"
    return "think"


# ------------------------------------------------------------------------------------------ model loading
class ChatError(Exception):
    """A problem worth one clear line to the user (bad model path, ...), not a traceback."""


def resolve_model(model: str) -> str:
    """A local directory for ``model``: the directory itself, or a hub snapshot for an ``owner/name`` id."""
    if os.path.isdir(model):
        return model
    if os.path.abspath(model) == DEFAULT_MODEL:
        raise ChatError(f"no model at {DEFAULT_MODEL}: the shipped model is written there by the training "
                        "scripts (train/). Point --model at a Hugging Face-layout directory (config.json, "
                        "*.safetensors, tokenizer.json), or give a hub id such as --model Qwen/Qwen3-0.6B.")
    if re.fullmatch(r"[\w.-]+/[\w.-]+", model) and not os.path.exists(model):
        try:
            from huggingface_hub import snapshot_download
        except ImportError:
            raise ChatError(f"--model {model}: not a local directory; downloading a hub repo needs "
                            "`pip install huggingface_hub`") from None
        try:
            return snapshot_download(model, allow_patterns=["*.json", "*.safetensors", "*.txt"])
        except Exception as error:  # network, unknown repo, ...: one line, not a traceback
            raise ChatError(f"--model {model}: could not download from the hub: {error}") from None
    raise ChatError(f"--model {model}: no such directory (and not a hub repo id like Qwen/Qwen3-0.6B)")


def load(model: str, device=None, dtype=None):
    """(model, tokenizer) from a directory or hub id; device/dtype default to the best available."""
    path = resolve_model(model)
    if not os.path.exists(os.path.join(path, "config.json")):
        raise ChatError(f"--model {path}: no config.json (expected a Hugging Face-layout model directory)")
    import torch  # imported here so that a bad --model is reported at once
    import qwen3mini

    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    names = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}
    dtype = names.get(dtype, dtype) or ("float32" if device == "cpu" else "bfloat16")
    try:
        tokenizer = qwen3mini.load_tokenizer(path)
    except Exception as error:  # one clear line, whatever went wrong
        raise ChatError(f"--model {path}: could not load the tokenizer: {error}") from None
    try:
        net = qwen3mini.load_model(path, device=device, dtype=getattr(torch, dtype))
    except Exception as error:
        raise ChatError(f"--model {path}: could not load the model on {device} as {dtype}: {error}") from None
    net.eval()
    return net, tokenizer


# ----------------------------------------------------------------------------------------- debugging log
class EventLog:
    """JSON lines of what the model was fed and produced (``QWEN3MINI_CHAT_LOG``); a no-op when unset."""

    def __init__(self, path):
        self.file = open(path, "a", encoding="utf-8") if path else None

    def __call__(self, event: str, **fields):
        if self.file:
            self.file.write(json.dumps({"event": event, **fields}, ensure_ascii=False) + "\n")
            self.file.flush()


# ------------------------------------------------------------------------------------- thinking tracking
THINK, ANSWER = "think", "answer"


class ThinkingTracker:
    """Follows one reply token by token: inside the think block or in the answer, and when the budget is hit.

    The reply format is ``<think>\\n{thinking}\\n</think>\\n\\n{answer}`` (paper §4.3, Table 9). The budget
    counts the tokens generated after ``<think>``; tokens appended by us (the stop text) are not generated.
    """

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
    """Where the prompt leaves the assistant turn: after an empty think block (--no-think: ANSWER), inside an
    open one (templates that prefill "<think>\\n": THINK), or at its start, where the model picks ("start")."""
    turn = prompt_ids
    if turn_start_id in prompt_ids:
        turn = prompt_ids[len(prompt_ids) - prompt_ids[::-1].index(turn_start_id):]
    if end_think_id in turn:
        return ANSWER
    return THINK if think_id in turn else "start"


# ---------------------------------------------------------------------------------------------- display
class Display:
    """Streams the reply to ``out``: thinking dim on a terminal; elsewhere the <think>...</think> tags that the
    model writes (and the stop text, which ends in </think>) delimit it. Notices go to ``err``."""

    DIM, RESET = "\x1b[2m", "\x1b[0m"

    def __init__(self, out=sys.stdout, err=sys.stderr):
        self.out, self.err = out, err
        self.tty = out.isatty()
        self.part = ANSWER

    def write(self, text: str, part: str):
        if not text:
            return
        if self.tty and part != self.part:
            self.out.write(self.DIM if part == THINK else self.RESET)
        self.part = part
        self.out.write(text)
        self.out.flush()

    def end_reply(self):
        if self.tty and self.part == THINK:
            self.out.write(self.RESET)
        self.part = ANSWER
        self.out.write("\n")
        self.out.flush()

    def notice(self, text: str, brackets: bool = True):
        self.out.flush()
        self.err.write(f"[{text}]\n" if brackets else text + "\n")
        self.err.flush()


# ----------------------------------------------------------------------------------------- conversation
@dataclass
class Reply:
    finish: str                       # "stop", "length" (--max-new-tokens), "context" (full), "interrupted"
    thinking_tokens: int = 0
    answer_tokens: int = 0
    budget_hit: bool = False
    seconds: float = 0.0
    generated: list = field(default_factory=list)   # generated ids (the stop text not included)
    answer: str = ""

    def summary(self) -> str:
        speed = len(self.generated) / self.seconds if self.seconds > 0 else 0.0
        budget = " (budget reached)" if self.budget_hit else ""
        end = {"stop": "", "length": " · cut at --max-new-tokens", "context": " · cut: context full",
               "interrupted": " · interrupted"}[self.finish]
        return (f"thinking {self.thinking_tokens} tokens{budget} · answer {self.answer_tokens} tokens · "
                f"{speed:.1f} tokens/s{end}")


class TooLong(Exception):
    """The current message alone does not fit the context."""


class ChatSession:
    """A conversation with one model: history, KV cache reuse, and replies with an optional thinking budget."""

    def __init__(self, model, tokenizer, system=None, max_context=None, log=None):
        from qwen3mini.generation import Generator

        special = tokenizer.token_to_id
        missing = [t for t in CHAT_TOKENS if t not in special]
        if missing:
            raise ChatError(f"the tokenizer lacks Qwen3's chat tokens {missing} (docs/qwen3.md §3): not a Qwen3 tokenizer")
        self.turn_start_id = special["<|im_start|>"]
        self.think_id, self.end_think_id = special["<think>"], special["</think>"]
        self.stop_ids = set(model.config.eos_token_ids) | {special["<|im_end|>"], special["<|endoftext|>"]}
        self.stop_thinking_ids = tokenizer.encode(STOP_THINKING)

        self.model, self.tok, self.log = model, tokenizer, log or EventLog(None)
        self.system = [{"role": "system", "content": system}] if system else []
        self.history = []                                 # user/assistant messages of finished turns
        self.context = min(model.config.max_position_embeddings, max_context or DEFAULT_MAX_CONTEXT)
        try:
            self.gen = Generator(model, max_seq_len=self.context, batch_size=1)
        except (RuntimeError, MemoryError) as error:
            raise ChatError(f"no memory for a {self.context}-token KV cache ({error}); "
                            "set QWEN3MINI_MAX_CONTEXT to a smaller context") from None

    def reset(self):
        self.history = []

    # -- the prompt -----------------------------------------------------------------------------------------
    def render(self, messages, think: bool) -> list:
        text = self.tok.apply_chat_template(messages, add_generation_prompt=True, enable_thinking=think)
        return self.tok.encode(text)

    def fit(self, user_text: str, think: bool, reserve: int):
        """Prompt ids for the history plus ``user_text``, dropping the oldest turns until ``reserve`` tokens
        are left for the reply. Returns (ids, dropped_turns); raises TooLong if even no history is too long."""
        history, dropped = list(self.history), 0
        while True:
            ids = self.render(self.system + history + [{"role": "user", "content": user_text}], think)
            if len(ids) + reserve <= self.context:
                return ids, history, dropped
            if not history:
                raise TooLong(len(ids))
            # A turn is a user message and the assistant messages after it.
            cut = next((i for i in range(1, len(history)) if history[i]["role"] == "user"), len(history))
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

    # -- one reply ------------------------------------------------------------------------------------------
    def reply(self, user_text: str, think: bool, sampling: dict, budget=None,
              max_new_tokens=DEFAULT_MAX_NEW_TOKENS, display=None, interrupted=lambda: False):
        """Answer ``user_text``; stream it to ``display``; keep the turn in the history unless interrupted.
        Raises TooLong when the message cannot fit the context."""
        from qwen3mini.generation import SamplingParams

        display = display or Display()
        reserve = min(max_new_tokens, self.context // 2) + (len(self.stop_thinking_ids) if budget is not None else 0)
        ids, history, dropped = self.fit(user_text, think, reserve)
        if dropped:
            self.history = history
            display.notice(f"dropped the {dropped} oldest turn(s) to fit the {self.context}-token context")
            self.log("drop", turns=dropped)
        self.log("prompt", ids=ids, text=self.tok.decode(ids), think=think, budget=budget, sampling=sampling)

        params = SamplingParams(**sampling)   # seed: main() seeds torch once for the whole session
        phase = prompt_phase(ids, self.turn_start_id, self.think_id, self.end_think_id)
        tracker = ThinkingTracker(self.think_id, self.end_think_id, budget, phase)
        decoder = self.tok.incremental_decoder()
        reply = Reply(finish="length")
        self.prefill(ids)
        start = time.perf_counter()
        while True:
            limit = min(max_new_tokens - len(reply.generated), self.context - self.gen.length)
            if limit <= 0:
                reply.finish = "length" if len(reply.generated) >= max_new_tokens else "context"
                break
            why = self._stream(limit, params, tracker, decoder, reply, display, interrupted)
            if why == "length":      # the next pass finds out which limit it was
                continue
            if why != "budget":
                reply.finish = why
                break
            if self.gen.length + len(self.stop_thinking_ids) >= self.context:
                reply.finish = "context"
                break
            # Paper §4.3: stop the thinking, append the stop text; the model answers after it.
            self.gen.append(self.stop_thinking_ids)
            tracker.stop_thinking()
            self.log("stop_thinking", after=tracker.thinking_tokens, ids=self.stop_thinking_ids, text=STOP_THINKING)
            for token in self.stop_thinking_ids:
                display.write(decoder.feed(token), THINK)
        self._show(decoder.flush(), tracker.phase if tracker.phase != "start" else ANSWER, reply, display)
        reply.seconds = time.perf_counter() - start
        reply.thinking_tokens, reply.answer_tokens = tracker.thinking_tokens, tracker.answer_tokens
        reply.budget_hit = tracker.budget_hit
        self.log("end", finish=reply.finish, thinking_tokens=reply.thinking_tokens,
                 answer_tokens=reply.answer_tokens, generated=reply.generated)
        if reply.finish != "interrupted":
            # The template drops thinking from earlier turns, so the answer is all the history needs (keeping
            # the raw text would also keep the "." that the budget's stop text puts after </think>).
            self.history = history + [{"role": "user", "content": user_text},
                                      {"role": "assistant", "content": reply.answer.lstrip("\n")}]
        return reply

    def _stream(self, limit, params, tracker, decoder, reply, display, interrupted) -> str:
        """Sample up to ``limit`` tokens; return why it stopped ("stop", "budget", "interrupted", "length")."""
        if tracker.over_budget:          # a budget of 0 stops right after <think>
            return "budget"
        for token in self.gen.stream(limit, params, self.stop_ids):
            if token in self.stop_ids:
                return "stop"
            reply.generated.append(token)
            part = tracker.observe(token)
            text = self._feed(decoder, token)
            self.log("token", id=token, part=part, text=text)
            self._show(text, part, reply, display)
            if interrupted():
                return "interrupted"
            if tracker.over_budget:
                return "budget"
        return "length"

    @staticmethod
    def _feed(decoder, token) -> str:
        """The text ``token`` completes. A random or barely trained model can sample the embedding's padding
        rows (ids 151,669 to 151,935 have no text): shown as U+FFFD rather than failing."""
        try:
            return decoder.feed(token)
        except ValueError:
            return "\ufffd"

    @staticmethod
    def _show(text, part, reply, display):
        display.write(text, part)
        if part == ANSWER:
            reply.answer += text


# -------------------------------------------------------------------------------------------------- REPL
@contextmanager
def catch_sigint():
    """While a reply streams, Ctrl-C only raises a flag that the token loop checks: the KV cache and the
    history are never left half-updated by an exception in the middle of a model step."""
    flag = {"hit": False}

    def handler(signum, frame):
        flag["hit"] = True

    previous = signal.signal(signal.SIGINT, handler)
    try:
        yield lambda: flag["hit"]
    finally:
        signal.signal(signal.SIGINT, previous)


class Chat:
    """The command-line front end: settings that REPL commands change, one method per user line."""

    def __init__(self, session: ChatSession, args, display: Display):
        self.session, self.args, self.display = session, args, display
        self.think, self.budget = args.think, args.thinking_budget

    def turn(self, text: str) -> Reply | None:
        """One user message: reply, print the summary line. None when the message was refused."""
        history = self.session.system + self.session.history + [{"role": "user", "content": text}]
        mode = effective_mode(history, self.think)
        with catch_sigint() as interrupted:
            try:
                reply = self.session.reply(text, self.think, sampling_settings(mode, self.args), self.budget,
                                           self.args.max_new_tokens, self.display, interrupted)
            except TooLong as error:
                self.display.notice(f"message not sent: the prompt would be {error.args[0]} tokens and the "
                                    f"context holds {self.session.context}, with room kept for the reply")
                return None
            except Exception as error:  # e.g. out of memory: report it, keep the conversation going
                self.session.gen.reset()
                self.display.end_reply()
                self.display.notice(f"reply failed ({type(error).__name__}: {error}); this turn was discarded")
                return None
        self.display.end_reply()
        if reply.finish == "interrupted":
            self.display.notice("interrupted; this turn was discarded")
        self.display.notice(reply.summary())
        return reply

    def command(self, line: str) -> bool:
        """Run a ':' command; return False to quit."""
        name, _, arg = line[1:].strip().partition(" ")
        if name in ("quit", "exit", "q"):
            return False
        if name == "help":
            self.display.notice(HELP, brackets=False)
        elif name == "reset":
            self.session.reset()
            self.display.notice("conversation cleared")
        elif name in ("think", "no-think"):
            self.think = name == "think"
            self.display.notice(f"{name} mode")
        elif name == "budget" and (arg.strip().isdigit() or arg.strip() == "off"):
            self.budget = None if arg.strip() == "off" else int(arg)
            self.display.notice(f"thinking budget: {self.budget if self.budget is not None else 'off'}")
        else:
            self.display.notice(f"unknown command {line.strip()!r}; :help lists the commands")
        return True

    def repl(self, stdin=sys.stdin) -> int:
        interactive = stdin.isatty()
        if interactive:
            try:
                import readline  # noqa: F401  (line editing and history for input())
            except ImportError:
                pass
            config = self.session.model.config
            self.display.notice(f"{config.describe()}; context {self.session.context} tokens")
            self.display.notice(f"{'thinking' if self.think else 'non-thinking'} mode; :help for commands, "
                                "Ctrl-D to quit")
        while True:
            try:
                line = input(">>> ") if interactive else stdin.readline()
            except KeyboardInterrupt:       # Ctrl-C at the prompt: drop the line, ask again
                print()
                continue
            except EOFError:
                print()
                return 0
            if not interactive and not line:
                return 0
            line = line.rstrip("\n")
            if not line.strip():
                continue
            if line.startswith(":"):
                if not self.command(line):
                    return 0
                continue
            self.turn(line)


def main(argv=None) -> int:
    args = parse_args(argv)
    display = Display()
    max_context = os.environ.get("QWEN3MINI_MAX_CONTEXT")
    try:
        max_context = int(max_context) if max_context else None
        model, tokenizer = load(args.model, args.device, args.dtype)
        session = ChatSession(model, tokenizer, args.system, max_context,
                              EventLog(os.environ.get("QWEN3MINI_CHAT_LOG")))
    except (ChatError, ValueError) as error:
        print(f"chat.py: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    if args.seed is not None:
        import torch
        torch.manual_seed(args.seed)
    chat = Chat(session, args, display)
    if args.prompt is not None:
        reply = chat.turn(args.prompt)
        if reply is None:
            return 1
        return 130 if reply.finish == "interrupted" else 0
    return chat.repl()


if __name__ == "__main__":
    try:
        sys.exit(main())
    except BrokenPipeError:                # `chat.py ... | head`: the reader left; no traceback
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(1)
