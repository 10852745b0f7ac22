"""Instruction following (issue 19): the solver's constrained replies pass the strict check for every family and
difficulty, and each kind of slip fails it; the constraint sentences round-trip through ``constraint_of``."""
import json
import random

import pytest
from hypothesis import given, settings, strategies as st

from qwen3mini.tasks import FAMILIES, parse_question
from qwen3mini.tasks.instructions import (CONSTRAINTS, answer_right, constrained, constraint_of, extract_answer,
                                          follows, reply_following, strict)

CASES = [(name, difficulty) for name, family in FAMILIES.items() for difficulty in family.difficulties]


@st.composite
def problems(draw):
    name, difficulty = draw(st.sampled_from(CASES))
    return FAMILIES[name].generate(random.Random(draw(st.integers(0, 2**32))), difficulty)


def wrong_answer(problem):
    """A wrong answer of the problem's own kind (sort: two items swapped or one changed)."""
    if problem.family == "sort":
        items = sorted(problem.data)
        i = next((i for i in range(len(items) - 1) if items[i] != items[i + 1]), None)
        if i is None:
            items[0] += 1
        else:
            items[i], items[i + 1] = items[i + 1], items[i]
        return ", ".join(map(str, items))
    if problem.family == "countdown":
        return f"{problem.answer} + 1"
    return str(int(problem.answer) + 1)


def test_the_suffixes_are_the_contract():
    assert CONSTRAINTS == {"number": " Answer with only the final number.",
                           "json": ' Reply in JSON with the key "answer".',
                           "done": " End your reply with the word DONE.",
                           "words": " Answer in at most 12 words.",
                           "capitals": " Answer in capital letters."}


@pytest.mark.parametrize("name", CONSTRAINTS)
def test_constraint_of_round_trips(name):
    question = "What is 347 * 86?"
    assert constraint_of(constrained(question, name)) == name
    assert constraint_of(constrained(question, name) + " /no_think") == name   # a soft switch after it
    assert constraint_of(constrained(question, name) + " /think \n") == name
    assert constraint_of(question + CONSTRAINTS[name].lstrip() + "x") is None
    assert parse_question(question).question == question  # the question itself stays a task question
    assert constraint_of(question) is None and constraint_of("") is None


@settings(max_examples=400, deadline=None)
@given(problems(), st.sampled_from(sorted(CONSTRAINTS)))
def test_the_solver_reply_is_strictly_right_and_a_wrong_one_is_not(problem, name):
    reply = reply_following(problem, name)
    assert follows(name, reply), reply
    assert answer_right(problem, name, reply), reply
    assert strict(problem, name, reply)
    wrong = reply_following(problem, name, wrong_answer(problem))
    assert follows(name, wrong) and not answer_right(problem, name, wrong) and not strict(problem, name, wrong)


@settings(max_examples=200, deadline=None)
@given(problems())
def test_each_kind_of_slip_fails(problem):
    right = reply_following
    capitals = right(problem, "capitals")
    lowered = next(i for i, c in enumerate(capitals) if c.isupper())
    assert not strict(problem, "capitals", capitals[:lowered] + capitals[lowered].lower() + capitals[lowered + 1:])
    words = right(problem, "words")
    assert not strict(problem, "words", "So, after some careful thought, I can say that " + words)  # > 12 words
    assert not strict(problem, "words", "")
    done = right(problem, "done")
    assert not strict(problem, "done", done.removesuffix(" DONE"))
    assert not strict(problem, "done", done.removesuffix("DONE") + "done")
    assert not strict(problem, "done", done + " Thanks.")
    text = right(problem, "json")
    assert not strict(problem, "json", text[:-1])                       # bad JSON
    assert not strict(problem, "json", text.replace('"answer"', '"result"'))
    assert not strict(problem, "json", f"Here it is: {text}")
    number = right(problem, "number")
    for extra in (f"The answer is {number}", f"{number}.", f"\\boxed{{{number}}}", f"{number} DONE"):
        assert not strict(problem, "number", extra)


def test_replies_for_the_issue_examples():
    problem = parse_question("What is 347 * 86?")
    assert [reply_following(problem, n) for n in CONSTRAINTS] == [
        "29842", '{"answer": 29842}', "347 * 86 = 29842.\n\n\\boxed{29842} DONE", "The answer is \\boxed{29842}.",
        "THE ANSWER IS 29842."]
    sort = parse_question("Sort in ascending order: 42, 7, 19, 88, 3.")
    assert reply_following(sort, "number") == "3, 7, 19, 42, 88"
    assert json.loads(reply_following(sort, "json")) == {"answer": "3, 7, 19, 42, 88"}
    assert reply_following(sort, "words") == "The answer is \\boxed{3,7,19,42,88}."
    assert strict(sort, "json", '{"answer": [3, 7, 19, 42, 88]}')       # a list of integers is read too


@pytest.mark.parametrize("name, reply, expected", [
    ("number", " -3809\n", "-3809"),
    ("json", '```json\n{"answer": "3, 7"}\n```', "3, 7"),
    ("json", '{"answer": 12.0, "why": "x"}', "12"),
    ("json", '{"answer": true}', None),
    ("done", "Ben has 36 apples. DONE", "36"),
    ("words", "So 2 + 3 = \\boxed{5}, not 6.", "5"),
    ("capitals", "IN ASCENDING ORDER: 3, 7, 19.", "3, 7, 19"),
    ("capitals", "SOLUTION: (50 - 25) * (7 - 3) = 100, USING EACH ONCE.", "(50 - 25) * (7 - 3) = 100"),
    ("capitals", "NO IDEA.", None),
])
def test_extract_answer(name, reply, expected):
    assert extract_answer(name, reply) == expected


def test_a_math_span_with_equals_is_read_both_ways():
    mul = parse_question("What is 347 * 86?")
    assert not strict(mul, "capitals", "347 * 86 = 29842.")               # no letter: not capitals
    assert answer_right(mul, "capitals", "347 * 86 = 29842.")            # the part after "="
    assert not answer_right(mul, "number", "347 * 86 = 29842")           # only-number: the whole reply
    countdown = parse_question("Make 100 from the numbers 3, 7, 25, 50. Use each number at most once, with "
                               "+ - * / and parentheses.")
    assert strict(countdown, "capitals", "(50 - 25) * (7 - 3) = 100 IS MY ANSWER.")   # the whole span
    assert not strict(countdown, "capitals", "I THINK 100.")


def test_text_references_are_checked_by_coverage():
    reference = "copy memory area"
    assert strict(reference, "capitals", "MEMCPY COPIES A MEMORY AREA.")
    assert strict(reference, "json", '{"answer": "it copies a memory area"}')
    assert strict(reference, "done", "memcpy copies memory. DONE")
    assert not strict(reference, "done", "memcpy frees memory. DONE")  # 1 of 3 content words < 0.5
    assert not answer_right(reference, "done", "it frees things DONE")
    assert not strict(reference, "number", "42")


def test_unknown_constraint_is_named():
    with pytest.raises(KeyError, match="no constraint"):
        follows("haiku", "x")
