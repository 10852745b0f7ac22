"""ThinkFollow (paper §4.3): does the model obey /think and /no_think across a conversation?

A dialogue has 2 to 4 user turns, each ending in ``/think``, ``/no_think`` or no flag (drawn at random); the
earlier assistant turns hold correct replies in the mode asked for at that point (the solver's thinking and
answer, or an empty think block and the answer). The last reply is scored on its mode only: it must think
(a non-empty think block) if the last flag anywhere in the conversation is ``/think`` or if there is no flag
at all, and must leave the think block empty if that flag is ``/no_think`` (the last flag wins, paper §4.3).
The prompt is rendered in thinking mode, where the flags are what decides.
"""
import random
from dataclasses import dataclass

from ..chat import split_completion
from ..tasks import Problem, traces
from ..tasks.metrics import wilson_interval

FLAGS = {"think": "/think", "no-think": "/no_think"}
TURNS = (2, 3, 4)
REPLY_TOKENS = 32   # enough to see an empty think block close, or thinking begin


@dataclass
class Dialogue:
    messages: list[dict]        # user and assistant turns, ending with a user turn
    flags: list[str | None]     # the mode each user turn asks for ("think", "no-think"), None: no flag
    expected: str               # the mode the last reply must have


def reply_in_mode(problem: Problem, mode: str) -> str:
    """The solver's assistant reply to ``problem`` in ``mode``, in the reply format (paper §4.3)."""
    thinking = f"\n{traces.thinking(problem)}\n" if mode == "think" else "\n\n"
    return f"<think>{thinking}</think>\n\n{traces.answer(problem, after_trace=mode == 'think')}"


def make_dialogue(rng: random.Random, problems: list[Problem]) -> Dialogue:
    """A dialogue of random length and flags over questions drawn from ``problems``."""
    flags = [rng.choice(("think", "no-think", None)) for _ in range(rng.choice(TURNS))]
    messages, mode = [], "think"                  # no flag yet: thinking
    for turn, flag in enumerate(flags):
        problem = rng.choice(problems)
        mode = flag or mode
        messages.append({"role": "user", "content": problem.question + (f" {FLAGS[flag]}" if flag else "")})
        if turn < len(flags) - 1:
            messages.append({"role": "assistant", "content": reply_in_mode(problem, mode)})
    return Dialogue(messages, flags, mode)


def make_dialogues(count: int, problems: list[Problem]) -> list[Dialogue]:
    """``count`` dialogues; dialogue i is drawn from its own seed, so it is the same whatever ``count``."""
    return [make_dialogue(random.Random(f"thinkfollow|{i}"), problems) for i in range(count)]


def reply_mode(text: str) -> str | None:
    """The mode of a reply written after a thinking-mode prompt: "think" when its think block has content,
    "no-think" when the block is closed and empty, None when it has no think block or an open, empty one."""
    if not text.startswith("<think>"):
        return None
    if split_completion(text).thinking.strip():
        return "think"
    return "no-think" if "</think>" in text else None


def score(dialogues: list[Dialogue], reply_texts: list[str]) -> dict:
    """Share of dialogues whose last reply has the expected mode, overall (with its Wilson interval) and by
    the kind of dialogue: expected mode, flag in the last turn, flag only in an earlier turn, no flag."""
    groups = {"expected think": [], "expected no-think": [], "flag in the last turn": [],
              "flag only in an earlier turn": [], "no flag": []}
    replied = {"think": 0, "no-think": 0, "neither": 0}
    hits = []
    for dialogue, text in zip(dialogues, reply_texts, strict=True):
        mode = reply_mode(text)
        replied[mode or "neither"] += 1
        hit = mode == dialogue.expected
        hits.append(hit)
        groups[f"expected {dialogue.expected}"].append(hit)
        kind = ("flag in the last turn" if dialogue.flags[-1] else
                "flag only in an earlier turn" if any(dialogue.flags) else "no flag")
        groups[kind].append(hit)
    n, correct = len(hits), sum(hits)
    return {"n": n, "correct": correct, "accuracy": correct / n, "wilson95": list(wilson_interval(correct, n)),
            "by_kind": {name: {"n": len(group), "correct": sum(group)} for name, group in groups.items()},
            "replied_modes": replied}
