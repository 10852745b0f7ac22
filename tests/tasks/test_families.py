"""Every family: the issue's example questions, a correct answer always verifies and a perturbed one never,
questions round-trip through the parser, generators respect the difficulty knob."""
import random

import pytest
from hypothesis import given, settings, strategies as st

from qwen3mini.tasks import FAMILIES, parse_question, problem_hash, verify
from qwen3mini.tasks import expressions

CASES = [(name, difficulty) for name, family in FAMILIES.items() for difficulty in family.difficulties]


@pytest.mark.parametrize("question, family, answer", [
    ("What is 48213 + 9377?", "add", "57590"),
    ("What is 5021 - 8830?", "add", "-3809"),
    ("What is 347 * 86?", "mul", "29842"),
    ("Compute (17 + 25) * 3 - 8.", "expr", "118"),
    ("Solve for x: 7x - 12 = 30.", "linear", "6"),
    ("Solve for x: -3x + 5 = 7x - 25.", "linear", "3"),
    ("Sort in ascending order: 42, 7, 19, 88, 3.", "sort", "3, 7, 19, 42, 88"),
    ("Anna has 12 apples. Ben has 3 times as many apples as Anna. How many apples does Ben have?", "chain", "36"),
])
def test_issue_questions_parse_and_verify(question, family, answer):
    problem = parse_question(question)
    assert (problem.family, problem.answer, problem.question) == (family, answer, question)
    assert verify(problem, f"Done.\n\n\\boxed{{{answer}}}")


def test_countdown_issue_question():
    question = ("Make 100 from the numbers 3, 7, 25, 50. Use each number at most once, with + - * / and "
                "parentheses.")
    problem = parse_question(question)
    assert problem.family == "countdown" and problem.question == question
    assert verify(problem, "\\boxed{(50 - 25) * (7 - 3)}")
    assert verify(problem, "\\boxed{(7 - 3) * 25}")  # any valid expression, not only the solver's
    assert not verify(problem, "\\boxed{50 * (7 - 3 - 25 / 25)}")  # 150
    assert verify(problem, "\\boxed{(25 - 3 * 7) * 50 / 2}") is False  # 2 is not given


def test_other_questions_are_refused_with_one_line():
    with pytest.raises(ValueError, match="not a question of any family"):
        parse_question("What is the capital of France?")
    with pytest.raises(ValueError, match="linear"):
        FAMILIES["linear"].parse("Solve for x: 2x = 2x + 1.")


@st.composite
def generated(draw):
    name, difficulty = draw(st.sampled_from(CASES))
    return FAMILIES[name].generate(random.Random(draw(st.integers(0, 2**32))), difficulty), difficulty


def perturbed(problem, rng):
    """A wrong answer of the problem's own kind."""
    if problem.family == "sort":
        items = sorted(problem.data)
        if len(set(items)) > 1:
            i = next(i for i in range(len(items) - 1) if items[i] != items[i + 1])
            items[i], items[i + 1] = items[i + 1], items[i]
        else:
            items[0] += 1
        return ", ".join(map(str, items))
    if problem.family == "countdown":
        return f"{problem.answer} + 1"
    return str(int(problem.answer) + rng.choice([-1, 1, 2, 10, -100]))


@settings(max_examples=300, deadline=None)
@given(generated(), st.integers(0, 1000))
def test_correct_verifies_perturbed_never(item, seed):
    problem, _ = item
    assert verify(problem, f"The answer is \\boxed{{{problem.answer}}}.")
    assert not verify(problem, f"The answer is \\boxed{{{perturbed(problem, random.Random(seed))}}}.")
    assert not verify(problem, "I do not know.")


@settings(max_examples=300, deadline=None)
@given(generated())
def test_question_round_trips_through_the_parser(item):
    problem, difficulty = item
    parsed = parse_question(problem.question)
    assert parsed == problem
    assert problem_hash(FAMILIES[parsed.family], parsed) == problem_hash(FAMILIES[problem.family], problem)


def _size(problem):
    """The knob, measured independently of the family's own bookkeeping."""
    if problem.family == "add":
        a, _, b = problem.data
        return max(len(str(a)), len(str(b)))
    if problem.family == "mul":
        assert len(str(problem.data[0])) == len(str(problem.data[1]))
        return len(str(problem.data[0]))
    if problem.family == "expr":
        return sum(problem.question.count(op) for op in " + - * ".split())
    if problem.family == "linear":
        a, b, c, d, both_sides = problem.data
        return 2 * len(str(max(abs(a), abs(c)))) - (0 if both_sides else 1)
    if problem.family == "sort":
        return problem.question.count(",") + 1
    if problem.family == "countdown":
        return problem.question.split("numbers ")[1].split(".")[0].count(",") + 1
    return problem.question.count(".") - 1  # chain: sentences after the first, one per step


@settings(max_examples=300, deadline=None)
@given(generated())
def test_generators_respect_the_knob(item):
    problem, difficulty = item
    assert problem.difficulty == difficulty == _size(problem)


def test_countdown_targets_need_all_but_one_number():
    from qwen3mini.tasks.countdown import solvable
    rng = random.Random(0)
    for _ in range(20):
        problem = FAMILIES["countdown"].generate(rng, 5)
        target, numbers = problem.data
        assert not any(solvable(tuple(sorted(numbers[:i] + numbers[i + 1:j] + numbers[j + 1:])), target)
                       for i in range(5) for j in range(i + 1, 5))


def test_expression_text_round_trips():
    rng = random.Random(1)
    for _ in range(100):
        tree = FAMILIES["expr"].generate(rng, rng.randint(1, 8)).data[0]
        assert expressions.parse(expressions.text(tree)) == tree


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.text(max_size=80), st.sampled_from(["What is ", "Compute ", "Solve for x: ", "Make 10 from the numbers ",
                                                        "Sort in ascending order: ", "Anna has 3 apples. "]).flatmap(
    lambda prefix: st.text(alphabet="0123456789+-*/()x=,. ?", max_size=30).map(lambda rest: prefix + rest))))
def test_any_text_parses_or_raises_one_value_error(text):
    try:
        problem = parse_question(text)
    except ValueError:
        return
    assert verify(problem, f"\\boxed{{{problem.answer}}}")


def test_countdown_target_among_the_numbers():
    problem = parse_question("Make 25 from the numbers 3, 7, 25. Use each number at most once, with + - * / and "
                             "parentheses.")
    assert problem.answer == "25" and verify(problem, "\\boxed{25}")
