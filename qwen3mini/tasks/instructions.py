"""Instruction following with rule-based checks (paper §4.4, general RL: "instruction following" rewarded by
rules). A constraint is one sentence appended to a user's question; the reply's *answer part* (the text
after the think block, ``qwen3mini.chat.split_completion(text).answer``) is checked twice:

* ``follows(name, reply)``: the form the constraint asks for, whatever the answer says;
* ``answer_right(problem_or_reference, name, reply)``: the answer, read out of the reply the way the
  constraint makes it appear, is right. ``strict`` is both.

The constraints (``CONSTRAINTS``: name -> the exact suffix, leading space included) and what ``follows`` asks:

    number    " Answer with only the final number."      the reply, stripped, is nothing but the answer written
                                                          in digits and arithmetic: digits, spaces, ``, + - * /
                                                          ( ) =`` (and the unicode minus/times/divide), at least
                                                          one digit; no words, no LaTeX, no final period. So a
                                                          sort answer ``3, 7, 19`` and a countdown expression
                                                          follow it, ``The answer is 7`` and ``\\boxed{7}`` do not.
    json      ' Reply in JSON with the key "answer".'     the reply, stripped (one surrounding Markdown code fence
                                                          ``` or ```json tolerated), is a JSON object with the key
                                                          "answer" (other keys allowed) whose value is a string, an
                                                          integer (not a bool) or a list of integers.
    done      " End your reply with the word DONE."       the reply, stripped, ends with ``DONE`` (upper case, not
                                                          glued to a letter before it), then at most one ``.``/``!``.
    words     " Answer in at most 12 words."              1 to 12 words, a word being a run of non-space characters
                                                          (``\\boxed{3,7,19}`` is one word, ``3, 7, 19`` three).
    capitals  " Answer in capital letters."               at least one letter and no lower-case letter (so no
                                                          ``\\boxed{}``: its name is lower case).

Reading the answer (``extract_answer``), for a task problem (``qwen3mini.tasks.Problem``):

    number    the whole reply, stripped;
    json      the "answer" value as text: a string as is, an integer in decimal, a list of integers joined by
              ", " (an integral float counts as an integer);
    others    the content of the reply's last ``\\boxed{}`` when there is one; otherwise the last *math span*,
              a maximal run of digits, spaces and ``, + - * / ( ) =`` (unicode minus/times/divide too) holding a
              digit, trimmed of surrounding spaces, commas and dangling signs (``THE ANSWER IS 3, 7, 19.`` gives
              ``3, 7, 19``; ``Ben has 36 apples`` gives ``36``).

The answer is right when the family's ``is_correct`` accepts it; for a math span that holds ``=``, when it
accepts the whole span (countdown's ``expression = target``) or the part after the last ``=`` (``347 * 86 =
29842`` answers a ``mul`` problem). A *reference* (a text answer, e.g. a knowledge question's) is right when
``knowledge.covers(reference, text)`` holds, ``text`` being the reply (json: the "answer" value; done: the
reply without its final DONE).

Every constraint is satisfiable for every family (no family's answer holds a letter: integers, sort's lists,
countdown's expressions): ``reply_following`` writes the solver's reply for SFT, e.g. for ``What is 347 *
86?``: ``29842`` / ``{"answer": 29842}`` / ``347 * 86 = 29842.\\n\\n\\boxed{29842} DONE`` / ``The answer is
\\boxed{29842}.`` / ``THE ANSWER IS 29842.``.
"""
import json
import re

from .answers import last_boxed
from .family import Problem
from .knowledge import covers
from .verify import family_of

CONSTRAINTS: dict[str, str] = {
    "number": " Answer with only the final number.",
    "json": ' Reply in JSON with the key "answer".',
    "done": " End your reply with the word DONE.",
    "words": " Answer in at most 12 words.",
    "capitals": " Answer in capital letters.",
}
MAX_WORDS = 12
_MATH_CHARS = r"\d\s,+\-*/()=\u2212\u00d7\u00f7\u00b7"
_ONLY_MATH = re.compile(rf"[{_MATH_CHARS}]*\d[{_MATH_CHARS}]*")
_MATH_SPAN = re.compile(rf"[{_MATH_CHARS}]+")
_DONE = re.compile(r"(?<![A-Za-z])DONE[.!]?\Z")
_FENCE = re.compile(r"```(?:json)?\s*(.*?)\s*```", re.DOTALL)
_SOFT_SWITCHES = re.compile(r"(?:\s*/(?:think|no_think))+\s*\Z")


def constrained(question: str, name: str) -> str:
    """The user's turn: the question with the constraint's sentence appended."""
    return question + CONSTRAINTS[name]


def constraint_of(user_text: str) -> str | None:
    """The name of the constraint whose exact suffix the user's turn ends with, None if none does. Trailing
    whitespace and trailing ``/think`` / ``/no_think`` switches (paper §4.3) are looked past."""
    text = _SOFT_SWITCHES.sub("", user_text).rstrip()
    return next((name for name, suffix in CONSTRAINTS.items() if text.endswith(suffix)), None)


def follows(name: str, reply: str) -> bool:
    """Whether the reply's answer part has the form constraint ``name`` asks for (module docstring)."""
    text = reply.strip()
    if name == "number":
        return bool(_ONLY_MATH.fullmatch(text))
    if name == "json":
        return _json_answer(text) is not None
    if name == "done":
        return bool(_DONE.search(text))
    if name == "words":
        return 1 <= len(text.split()) <= MAX_WORDS
    if name == "capitals":
        return any(c.isupper() for c in text) and not any(c.islower() for c in text)
    raise KeyError(f"instructions: no constraint {name!r} (known: {', '.join(CONSTRAINTS)})")


def _json_answer(text: str) -> str | None:
    """The "answer" value of a JSON reply as text, None if the reply is not such an object."""
    fenced = _FENCE.fullmatch(text)
    try:
        value = json.loads(fenced.group(1) if fenced else text)
    except (ValueError, RecursionError):  # not JSON, or nested too deep to read
        return None
    if not isinstance(value, dict) or "answer" not in value:
        return None
    answer = value["answer"]
    if isinstance(answer, float) and answer.is_integer():
        answer = int(answer)
    if isinstance(answer, bool):
        return None
    if isinstance(answer, (str, int)):
        return str(answer)
    if isinstance(answer, list) and answer and all(isinstance(a, int) and not isinstance(a, bool) for a in answer):
        return ", ".join(map(str, answer))
    return None


def _last_math_span(text: str) -> str | None:
    spans = [s for s in _MATH_SPAN.findall(text) if any(c.isdigit() for c in s)]
    if not spans:
        return None
    return spans[-1].strip().lstrip(",+*/=)\u00d7\u00f7\u00b7 ").rstrip(",+-*/=(\u2212\u00d7\u00f7\u00b7 ")


def extract_answer(name: str, reply: str) -> str | None:
    """The answer a reply gives under constraint ``name`` (module docstring), None if it gives none."""
    text = reply.strip()
    if name == "number":
        return text or None
    if name == "json":
        return _json_answer(text)
    boxed = last_boxed(text)
    return boxed if boxed is not None else _last_math_span(text)


def answer_right(problem_or_reference, name: str, reply: str) -> bool:
    """Whether the reply's answer is right (module docstring): a ``Problem`` by its family's ``is_correct``,
    a reference text by ``knowledge.covers``."""
    if not isinstance(problem_or_reference, Problem):
        text = reply.strip()
        if name == "json":
            text = _json_answer(text) or ""
        elif name == "done":
            text = _DONE.sub("", text)
        return covers(problem_or_reference, text)
    answer = extract_answer(name, reply)
    if answer is None:
        return False
    family = family_of(problem_or_reference)
    candidates = [answer]
    if name not in ("number", "json") and last_boxed(reply) is None and "=" in answer:  # a math span
        candidates.append(answer.rsplit("=", 1)[1].strip())
    return any(family.is_correct(problem_or_reference, candidate) for candidate in candidates)


def strict(problem_or_reference, name: str, reply: str) -> bool:
    """The reward of an instruction-following check: the form holds and the answer is right."""
    return follows(name, reply) and answer_right(problem_or_reference, name, reply)


def reply_following(problem: Problem, name: str, answer: str | None = None) -> str:
    """The solver's reply (answer part) to ``constrained(problem.question, name)``: follows the constraint and
    gives ``answer`` (default: the right one; another value makes a wrong reply of the same form)."""
    right = answer is None
    answer = problem.answer if right else answer
    if name == "number":
        return answer
    if name == "json":
        value = int(answer) if re.fullmatch(r"-?\d+", answer) else answer
        return json.dumps({"answer": value})
    if name == "done":
        sentence = family_of(problem).summary(problem) if right else "The answer is:"
        return f"{sentence}\n\n\\boxed{{{answer}}} DONE"
    if name == "words":  # the answer without spaces is one word: a 20-number sort list stays within 12
        return f"The answer is \\boxed{{{''.join(answer.split())}}}."
    if name == "capitals":
        return f"THE ANSWER IS {answer.upper()}."
    raise KeyError(f"instructions: no constraint {name!r} (known: {', '.join(CONSTRAINTS)})")
