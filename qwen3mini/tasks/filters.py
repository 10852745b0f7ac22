"""Response filters (paper §4.1), used on the cold start's own traces and later on model samples (rejection
sampling, RL). Each takes the parts of one sample and returns a reason to drop it, or None to keep it.

A sample is ``thinking`` (the text between ``<think>`` and ``</think>``, None when the block never closed or,
for a non-thinking reply, ``""``), ``answer`` (the text after ``</think>``) and the generation's
``finish_reason`` (``"stop"`` or ``"length"``).
"""
from .answers import last_boxed
from .family import Problem
from .verify import family_of

LOOP_PERIODS = range(1, 31)  # a loop: a unit of 1 to 30 words written again and again, back to back
LOOP_WORDS = 24              # ...over at least this many words (and at least 3 copies of the unit)
DUPLICATE_LINE_SHARE = 0.25  # or this share of the lines are copies of an earlier line


def truncated(thinking: str | None, answer: str, finish_reason: str = "stop") -> str | None:
    if finish_reason == "length":
        return "truncated: the length limit ended it"
    if thinking is None:
        return "truncated: the thinking never ends"
    if last_boxed(answer) is None:
        return "truncated: no \\boxed{} answer"
    return None


def wrong_answer(problem: Problem, answer: str) -> str | None:
    boxed = last_boxed(answer)
    if boxed is None or not family_of(problem).is_correct(problem, boxed):
        return f"wrong final answer: {boxed!r}, expected {problem.answer!r}"
    return None


def repetition(text: str) -> str | None:
    """Heavy repetition: a back-to-back loop (see LOOP_*), or many lines that copy earlier ones. The traces'
    restated state (a list losing one item a line) repeats words, but never back to back or line for line."""
    words = text.split()
    for period in LOOP_PERIODS:
        needed, run = max(2 * period, LOOP_WORDS - period), 0  # words equal to the one `period` before
        for i in range(len(words) - period):
            run = run + 1 if words[i] == words[i + period] else 0
            if run >= needed:
                return f"heavy repetition: a {period}-word unit written {needed // period + 1}+ times in a row"
    lines = [line.strip() for line in text.split("\n") if line.strip()]
    copies = len(lines) - len(set(lines))
    if len(lines) >= 4 and copies / len(lines) > DUPLICATE_LINE_SHARE:
        return f"heavy repetition: {copies} of {len(lines)} lines copy an earlier line"
    return None


def inconsistent(problem: Problem, thinking: str, answer: str) -> str | None:
    """The thinking's last stated result and the boxed answer disagree."""
    family = family_of(problem)
    stated, boxed = family.stated_answer(thinking), last_boxed(answer)
    if stated is None:
        return "thinking and summary disagree: the thinking states no result"
    if boxed is None or not family.same_answer(problem, stated, boxed):
        return f"thinking and summary disagree: thinking says {stated!r}, the answer {boxed!r}"
    return None


def guessing(problem: Problem, thinking: str) -> str | None:
    """Too few lines of thinking for the problem's size to be reasoning (the family's ``min_steps``)."""
    lines = sum(1 for line in thinking.split("\n") if line.strip())
    needed = family_of(problem).min_steps(problem)
    if lines < needed:
        return f"guessing without reasoning: {lines} lines of thinking, this problem needs {needed}"
    return None


def reject_reason(problem: Problem, thinking: str | None, answer: str, finish_reason: str = "stop") -> str | None:
    """The first filter that rejects the sample, None if it passes all. A non-thinking reply (``thinking ==
    ""``) skips the two filters about the thinking."""
    reason = truncated(thinking, answer, finish_reason) or wrong_answer(problem, answer) or \
        repetition(f"{thinking}\n{answer}")
    if reason or not thinking:
        return reason
    return inconsistent(problem, thinking, answer) or guessing(problem, thinking)
