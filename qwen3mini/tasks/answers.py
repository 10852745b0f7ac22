"""Reading the final answer out of a reply: the last ``\\boxed{...}`` (Qwen's math convention), then the
family's answer form (an integer, a list of integers, an expression).

Tolerance, decided once for every family: spaces around the answer and after its sign (never between
digits), ``$`` signs, a trailing period, a unicode minus, and thousands separators as commas or LaTeX thin
spaces (``\\,``) *in correct groups of three* (``57,590`` is 57590; ``5,75,90`` is not an integer).
Lists (sort) take commas and/or spaces between items, so a list never has thousands separators.
"""
import re

_BOXED = "\\boxed{"


def last_boxed(text: str) -> str | None:
    """Content of the last ``\\boxed{...}`` in ``text`` (nested braces kept), None if there is none or it is
    never closed (a truncated reply)."""
    start = text.rfind(_BOXED)
    while start != -1:
        depth, i = 1, start + len(_BOXED)
        while i < len(text) and depth:
            depth += {"{": 1, "}": -1}.get(text[i], 0)
            i += 1
        if depth == 0:
            return text[start + len(_BOXED):i - 1]
        start = text.rfind(_BOXED, 0, start)  # an unclosed last box: an earlier closed one may still count
    return None


def clean(answer: str) -> str:
    """The answer without the decoration every family tolerates (see the module docstring)."""
    answer = answer.replace("\\,", ",")  # LaTeX's thin space, as a thousands separator: 57\,590
    for latex in ("\\!", "\\;", "\\ ", "$"):
        answer = answer.replace(latex, " ")
    answer = answer.replace("\u2212", "-").strip()
    return answer[:-1].strip() if answer.endswith(".") else answer


_INTEGER = re.compile(r"([+-]?)\s*(\d{1,3}(?:,\d{3})+|\d+)")


def parse_integer(answer: str) -> int | None:
    """An integer answer (``-3809``, ``57,590``, ``+ 12.``), None if the text is not exactly one integer."""
    found = _INTEGER.fullmatch(clean(answer))
    if not found:
        return None
    sign, digits = found.groups()
    return int(sign + digits.replace(",", ""))


def parse_integer_list(answer: str) -> list[int] | None:
    """A list of integers separated by commas and/or spaces (``3, 7, 19``, ``3,7,19``, ``3 7 19``)."""
    text = clean(answer)
    items = [t for t in re.split(r"[\s,]+", text) if t]
    if not items or not all(re.fullmatch(r"[+-]?\d+", t) for t in items):
        return None
    return [int(t) for t in items]
