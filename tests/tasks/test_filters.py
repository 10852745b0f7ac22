"""The response filters catch planted bad samples and pass good ones."""
import random

from qwen3mini.tasks import FAMILIES
from qwen3mini.tasks.filters import guessing, inconsistent, reject_reason, repetition, truncated, wrong_answer
from qwen3mini.tasks.traces import answer, thinking

ADD = FAMILIES["add"].parse("What is 4821377 + 9377?")
GOOD_THINKING, GOOD_ANSWER = thinking(ADD), answer(ADD)


def test_good_sample_passes():
    assert reject_reason(ADD, GOOD_THINKING, GOOD_ANSWER) is None


def test_wrong_final_answer():
    bad = GOOD_ANSWER.replace("\\boxed{4830754}", "\\boxed{4830755}")
    assert wrong_answer(ADD, bad).startswith("wrong final answer")
    assert reject_reason(ADD, GOOD_THINKING, bad).startswith("wrong final answer")


def test_truncation():
    assert truncated(GOOD_THINKING, GOOD_ANSWER, "length").startswith("truncated")
    assert truncated(None, "", "stop").startswith("truncated")
    assert truncated(GOOD_THINKING, "The sum is 4830754.", "stop").startswith("truncated")
    assert truncated(GOOD_THINKING, "So \\boxed{48307", "stop").startswith("truncated")
    assert truncated(GOOD_THINKING, GOOD_ANSWER) is None


def test_repetition():
    lines = GOOD_THINKING.split("\n")
    looped = "\n".join(lines[:4] + [lines[4]] * 6 + lines[4:])
    assert repetition(looped).startswith("heavy repetition")
    assert repetition(GOOD_THINKING + " and so on" * 12).startswith("heavy repetition")
    assert reject_reason(ADD, looped, GOOD_ANSWER).startswith("heavy repetition")
    assert repetition(GOOD_THINKING) is None


def test_thinking_and_summary_disagreeing():
    drifted = GOOD_THINKING.rsplit("=", 1)[0] + "= 4830764"
    assert inconsistent(ADD, drifted, GOOD_ANSWER).startswith("thinking and summary disagree")
    assert inconsistent(ADD, "I just know it.", GOOD_ANSWER).startswith("thinking and summary disagree")
    assert reject_reason(ADD, drifted, GOOD_ANSWER).startswith("thinking and summary disagree")
    sort = FAMILIES["sort"].parse("Sort in ascending order: 42, 7, 19, 88, 3.")
    assert inconsistent(sort, "Sorted: 3, 7, 42, 19, 88", answer(sort))
    assert inconsistent(sort, thinking(sort), answer(sort)) is None


def test_guessing_without_reasoning():
    quick = "4821377 + 9377 = 4830754"
    assert guessing(ADD, quick).startswith("guessing")
    assert reject_reason(ADD, quick, GOOD_ANSWER).startswith("guessing")
    assert guessing(ADD, GOOD_THINKING) is None
    small = FAMILIES["add"].parse("What is 3 + 4?")
    assert guessing(small, "3 + 4 = 7") is None  # one line is reasoning enough for one column


def test_filters_pass_every_family_and_catch_every_family_planted():
    rng = random.Random(5)
    for name, family in FAMILIES.items():
        problem = family.generate(rng, family.difficulties[-1])
        while family.gives_up(problem):     # (a trace that stops has no answer for the filters to pass)
            problem = family.generate(rng, family.difficulties[-1])
        good_thinking, good_answer = thinking(problem, rng, 0.5), answer(problem, after_trace=True)
        assert reject_reason(problem, good_thinking, good_answer) is None
        last_line = good_thinking.split("\n")[-1]
        assert reject_reason(problem, good_thinking + ("\n" + last_line) * 40, good_answer)
        assert reject_reason(problem, good_thinking, "\\boxed{}")
        assert reject_reason(problem, good_thinking.split("\n")[-1], good_answer)  # one line: a guess
