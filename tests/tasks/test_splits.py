"""Held-out test sets: fixed, and never reached by the training streams, in any order of the same items."""
import itertools
import random

import pytest

from qwen3mini.tasks import FAMILIES, problem_hash
from qwen3mini.tasks.splits import held_out, evaluation_set, evaluation_sets, training_problems


def test_test_sets_are_fixed_and_distinct():
    first, second = evaluation_set("mul", 3), evaluation_set("mul", 3)
    assert first == second and len(first) > 40
    assert len({problem_hash(FAMILIES["mul"], p) for p in first}) == len(first)
    assert evaluation_set("mul", 3) != evaluation_set("mul", 4)


def test_training_streams_never_yield_a_test_item():
    sets = evaluation_sets(size=20)
    exclude = held_out(sets.values())
    rng = random.Random(0)
    for name, difficulty in sets:
        for problem in itertools.islice(training_problems(name, difficulty, rng, exclude), 30):
            assert problem_hash(FAMILIES[name], problem) not in exclude
    # the small spaces are where a collision is certain to be tried: all of 1-digit addition
    small = set(problem_hash(FAMILIES["add"], p) for p in sets[("add", 1)])
    stream = training_problems("add", 1, random.Random(1), exclude)
    assert not small & {problem_hash(FAMILIES["add"], next(stream)) for _ in range(500)}


def test_the_same_item_reordered_is_held_out_too():
    add, sort, countdown = FAMILIES["add"], FAMILIES["sort"], FAMILIES["countdown"]
    assert problem_hash(add, add.parse("What is 3 + 5?")) == problem_hash(add, add.parse("What is 5 + 3?"))
    assert problem_hash(add, add.parse("What is 3 - 5?")) != problem_hash(add, add.parse("What is 5 - 3?"))
    assert problem_hash(sort, sort.parse("Sort in ascending order: 3, 1, 2.")) == \
        problem_hash(sort, sort.parse("Sort in ascending order: 2, 3, 1."))
    tail = ". Use each number at most once, with + - * / and parentheses."
    assert problem_hash(countdown, countdown.parse("Make 100 from the numbers 3, 7, 25, 50" + tail)) == \
        problem_hash(countdown, countdown.parse("Make 100 from the numbers 50, 25, 7, 3" + tail))


def test_an_exhausted_space_is_an_error_not_a_hang():
    everything = held_out([[FAMILIES["mul"].parse(f"What is {a} * {b}?") for a in range(1, 10) for b in range(1, 10)]])
    with pytest.raises(ValueError, match="no problems left"):
        next(training_problems("mul", 1, random.Random(0), everything))


def test_mul_training_adds_one_digit_multipliers_that_the_test_sets_lack():
    """A 1x1 item's procedure (a single partial product) reaches training through N x 1 problems."""
    from qwen3mini.tasks import verify
    from qwen3mini.tasks.traces import answer, thinking
    stream = training_problems("mul", 3, random.Random(0), held_out([evaluation_set("mul", 3)]))
    problems = list(itertools.islice(stream, 300))
    short = [p for p in problems if p.data[1] < 10]
    assert 30 < len(short) < 90 and all(len(str(p.data[1])) == 3 for p in problems if p not in short)
    assert all(p.data[1] >= 100 for p in evaluation_set("mul", 3))
    for problem in short[:5]:
        reparsed = FAMILIES["mul"].parse(problem.question)
        think = thinking(problem)
        assert reparsed == problem and problem.difficulty == 3 and "Sum so far" not in think
        assert verify(problem, f"<think>\n{think}\n</think>\n\n{answer(problem)}")
