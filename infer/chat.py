#!/usr/bin/env python
"""Chat with a Qwen3 model in the terminal: thinking and non-thinking modes, thinking budgets, tools.

    python infer/chat.py --no-think                              # interactive, answers without thinking
    python infer/chat.py --thinking-budget 256 --prompt "Is 221 prime?"
    printf 'Hi!\\nAnd in French? /no_think\\n' | python infer/chat.py  # piped: one user turn per line
    python infer/chat.py --tools calculator --prompt "What is 347 * 86?"   # tool calls (qwen3mini.tools)

The protocol (rendering, modes and /think /no_think switches, the thinking budget, KV-prefix reuse, sampling
defaults per mode) is ``qwen3mini.chat``; this script holds the arguments, the display and the REPL.

If the conversation no longer fits the context, the oldest turns are dropped with a notice; a single message
too long for the context is refused. Ctrl-C stops a reply (the turn is discarded), Ctrl-D / EOF exits.

Debugging: ``QWEN3MINI_CHAT_LOG=path.jsonl`` records every prompt, prefill and token fed to the model;
``QWEN3MINI_MAX_CONTEXT=N`` caps the context (KV cache) length below the model's.
"""
import argparse
import json
import os
import signal
import sys
from contextlib import contextmanager

from qwen3mini.chat import (ANSWER, THINK, ChatError, ChatSession, Reply, TooLong, effective_mode, load,
                            sampling_settings)
from qwen3mini.checkpoint import SHIPPED_CHECKPOINT
from qwen3mini.quantize import QUANTIZE_CHOICES
from qwen3mini.tools import TOOLS, ToolSession

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
        prog="chat.py", description="Chat with a Qwen3 model (thinking / non-thinking modes, thinking budgets).",
        epilog="Sampling flags left out take the paper's per-mode defaults (thinking: T 0.6, top-p 0.95, "
               "top-k 20; non-thinking: T 0.7, top-p 0.8, top-k 20, presence penalty 1.5). Environment: "
               "QWEN3MINI_MAX_CONTEXT caps the context length, QWEN3MINI_CHAT_LOG=path logs model inputs.")
    p.add_argument("--model", default=SHIPPED_CHECKPOINT,
                   help="HF-layout model directory or hub repo id (default: the shipped checkpoints/qwen3mini-chat)")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--think", dest="think", action="store_true", default=True,
                      help="thinking mode (default): the model reasons inside <think>...</think> first")
    mode.add_argument("--no-think", dest="think", action="store_false",
                      help="non-thinking mode: the template's empty think block (enable_thinking=False)")
    p.add_argument("--thinking-budget", type=_non_negative_int, default=None, metavar="N",
                   help="stop thinking after N tokens and make the model answer (paper §4.3)")
    p.add_argument("--prompt", default=None, metavar="TEXT", help="answer this one message and exit")
    p.add_argument("--system", default=None, metavar="TEXT", help="system prompt")
    p.add_argument("--tools", action="append", choices=sorted(TOOLS), default=None, metavar="NAME",
                   help="offer this tool to the model (repeatable; the model's calls run and their results go back "
                        f"to it): {', '.join(sorted(TOOLS))}")
    p.add_argument("--max-new-tokens", type=_positive_int, default=None, metavar="N",
                   help="most tokens generated per reply, capped by the context (default: the checkpoint's "
                        "generation_config.json, else 32768 for a post-trained model, 256 for a base model)")
    p.add_argument("--temperature", type=float, default=None, metavar="T", help="0 = greedy")
    p.add_argument("--top-p", type=float, default=None, metavar="P")
    p.add_argument("--top-k", type=int, default=None, metavar="K", help="0 = no top-k cut")
    p.add_argument("--presence-penalty", type=float, default=None, metavar="X")
    p.add_argument("--seed", type=int, default=None, metavar="S", help="sampling seed (default: random)")
    p.add_argument("--device", default=None, metavar="D", help="cpu, cuda, cuda:1, ... (default: cuda if present)")
    p.add_argument("--dtype", default=None, choices=["float32", "bfloat16", "float16", "fp32", "bf16", "fp16"],
                   help="model dtype (default: bfloat16 on GPU, float32 on CPU)")
    p.add_argument("--quantize", default=None, choices=QUANTIZE_CHOICES, help="int8: int8 weights (CPU decode)")
    args = p.parse_args(argv)
    try:                             # out-of-range sampling values (NaN too), before anything is loaded
        sampling_settings("think", vars(args))
    except ChatError as error:
        p.error(f"argument --{str(error).replace('_', '-')}")
    for name in ("prompt", "system"):
        if getattr(args, name) is not None and not _is_utf8(getattr(args, name)):
            p.error(f"argument --{name}: not valid UTF-8")
    return args


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


def _is_utf8(text: str) -> bool:
    """False for text that came from bytes that are not UTF-8 (Python keeps them as lone surrogates)."""
    try:
        text.encode("utf-8")
        return True
    except UnicodeEncodeError:
        return False


def max_context_from_env(environ=os.environ):
    """QWEN3MINI_MAX_CONTEXT as a positive int, or None when unset; ChatError naming the variable otherwise."""
    text = environ.get("QWEN3MINI_MAX_CONTEXT")
    if text is None or text == "":
        return None
    try:
        value = int(text)
    except ValueError:
        raise ChatError(f"QWEN3MINI_MAX_CONTEXT={text!r}: not a whole number of tokens") from None
    if value < 1:
        raise ChatError(f"QWEN3MINI_MAX_CONTEXT={text}: the context must be >= 1 token")
    return value


# ----------------------------------------------------------------------------------------- debugging log
class EventLog:
    """JSON lines of what the model was fed and produced (``QWEN3MINI_CHAT_LOG``); a no-op when unset."""

    def __init__(self, path):
        directory = os.path.dirname(os.path.abspath(path)) if path else None
        if path and not os.path.isdir(directory):
            raise ChatError(f"QWEN3MINI_CHAT_LOG={path}: no such directory {directory}")
        try:
            self.file = open(path, "a", encoding="utf-8") if path else None
        except OSError as error:
            raise ChatError(f"QWEN3MINI_CHAT_LOG={path}: cannot write the log ({error.strerror})") from None

    def __call__(self, event: str, **fields):
        if self.file:
            self.file.write(json.dumps({"event": event, **fields}, ensure_ascii=False) + "\n")
            self.file.flush()


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


def summary(reply: Reply) -> str:
    speed = len(reply.generated) / reply.seconds if reply.seconds > 0 else 0.0
    budget = " (budget reached)" if reply.budget_hit else ""
    end = {"stop": "", "length": " · cut at --max-new-tokens", "context": " · cut: context full",
           "interrupted": " · interrupted"}[reply.finish]
    calls = f" · {len(reply.calls)} tool call(s)" if getattr(reply, "calls", None) else ""
    return (f"thinking {reply.thinking_tokens} tokens{budget} · answer {reply.answer_tokens} tokens{calls} · "
            f"{speed:.1f} tokens/s{end}")


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

    def __init__(self, session: ChatSession, args, display: Display, max_new_tokens: int, banner: list):
        self.session, self.args, self.display = session, args, display
        self.max_new_tokens, self.banner = max_new_tokens, banner
        self.think, self.budget = args.think, args.thinking_budget

    def turn(self, text: str) -> Reply | None:
        """One user message: reply, print the summary line. None when the message was refused."""
        history = self.session.system + self.session.history + [{"role": "user", "content": text}]
        sampling = sampling_settings(effective_mode(history, self.think), vars(self.args))
        with catch_sigint() as interrupted:
            try:
                reply = self.session.reply(text, self.think, sampling, self.budget, self.max_new_tokens,
                                           self.display.write, interrupted)
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
        if reply.dropped_turns:
            self.display.notice(f"dropped the {reply.dropped_turns} oldest turn(s) to fit the "
                                f"{self.session.context}-token context")
        if reply.finish == "interrupted":
            self.display.notice("interrupted; this turn was discarded")
        self.display.notice(summary(reply))
        return reply

    def command(self, line: str) -> bool:
        """Run a ':' command; return False to quit."""
        name, _, arg = line[1:].strip().partition(" ")
        arg = arg.strip()
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
        elif name == "budget":
            try:
                budget = None if arg == "off" else _non_negative_int(arg)
            except (ValueError, argparse.ArgumentTypeError):
                self.display.notice(f"the budget must be a whole number of tokens >= 0, or off; got {arg!r}")
                return True
            self.budget = budget
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
            for line in self.banner:
                self.display.notice(line)
            self.display.notice(f"{'thinking' if self.think else 'non-thinking'} mode; :help for commands, "
                                "Ctrl-D to quit")
        number = 0
        while True:
            try:
                line = input(">>> ") if interactive else stdin.readline()
            except KeyboardInterrupt:       # Ctrl-C at the prompt: drop the line, ask again
                print()
                continue
            except EOFError:
                print()
                return 0
            number += 1
            if not interactive and not line:
                return 0
            line = line.rstrip("\n")
            if not _is_utf8(line):         # main() made stdin keep bad bytes (as surrogates) instead of raising
                if interactive:
                    self.display.notice("that line is not valid UTF-8 text; type it again")
                    continue
                self.display.notice(f"stdin line {number}: the input is not UTF-8; stopping")
                return 1
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
    try:
        max_context = max_context_from_env()
        log = EventLog(os.environ.get("QWEN3MINI_CHAT_LOG"))
        try:
            model, tokenizer, info = load(args.model, args.device, args.dtype, args.quantize)
        except ChatError as error:
            raise ChatError(f"--model: {error}") from None
        session = ToolSession(model, tokenizer, args.tools, args.system, max_context, log) if args.tools else \
            ChatSession(model, tokenizer, args.system, max_context, log)
    except ChatError as error:
        print(f"chat.py: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    if args.seed is not None:
        import torch
        torch.manual_seed(args.seed)
    max_new_tokens = args.max_new_tokens or info.reply_limit()
    chat = Chat(session, args, display, max_new_tokens, banner(session, info, max_new_tokens))
    if args.prompt is not None:
        reply = chat.turn(args.prompt)
        if reply is None:
            return 1
        return 130 if reply.finish == "interrupted" else 0
    sys.stdin.reconfigure(errors="surrogateescape")   # a line that is not UTF-8 becomes a message, not a crash
    return chat.repl()


def banner(session: ChatSession, info, max_new_tokens: int) -> list:
    """The lines an interactive session starts with: the model, its real KV cache dtype, the context, and a
    warning when the model is a base model."""
    cache = session.gen.cache.k
    lines = [f"{session.model.config.describe(cache.dtype)} on {cache.device}; context {session.context} tokens"]
    if not info.post_trained:
        lines.append(f"base model (not post-trained): it continues text and rarely ends a turn, so replies stop "
                     f"after {max_new_tokens} tokens (--max-new-tokens)")
    return lines


if __name__ == "__main__":
    try:
        sys.exit(main())
    except BrokenPipeError:                # `chat.py ... | head`: the reader left; no traceback
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(1)
