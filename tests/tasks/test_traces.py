"""The solvers' traces: their result verifies (with or without a planted slip), they pass the response
filters, and they restate the state as they go."""
import random

import pytest

from qwen3mini.tasks import FAMILIES, verify
from qwen3mini.tasks.filters import reject_reason
from qwen3mini.tasks.traces import answer, thinking

CASES = [(name, difficulty) for name, family in FAMILIES.items() for difficulty in family.difficulties]


@pytest.mark.parametrize("name, difficulty", CASES)
def test_traces_verify_and_pass_the_filters(name, difficulty):
    family, rng = FAMILIES[name], random.Random(difficulty)
    for slip_share in (0.0, 1.0):
        for _ in range(4):
            problem = family.generate(rng, difficulty)
            think, reply = thinking(problem, rng, slip_share), answer(problem)
            assert verify(problem, reply) and verify(problem, f"<think>\n{think}\n</think>\n\n{reply}")
            assert family.is_correct(problem, family.stated_answer(think))
            assert reject_reason(problem, think, reply) is None, think
            assert reject_reason(problem, "", reply) is None  # the non-thinking reply
            assert reply.count("\n") <= 3 and reply.endswith(f"\\boxed{{{problem.answer}}}")


def test_a_slip_is_noticed_and_corrected():
    problem = FAMILIES["add"].parse("What is 48213 + 9377?")
    clean = thinking(problem)
    slipped = thinking(problem, random.Random(0), slip_share=1.0)
    assert "Wait" not in clean and "Wait, " in slipped
    wait = slipped.split("\n").index(next(line for line in slipped.split("\n") if line.startswith("Wait, ")))
    assert set(clean.split("\n")) <= set(slipped.split("\n"))  # the slip adds lines; every right one stays
    assert len(slipped.split("\n")) == len(clean.split("\n")) + 2 and wait > 0
    assert thinking(problem, random.Random(0), slip_share=0.0) == clean


def test_slip_share_is_a_share():
    rng, problem = random.Random(0), FAMILIES["sort"].parse("Sort in ascending order: 42, 7, 19, 88, 3.")
    slipped = sum("Wait, " in thinking(problem, rng, slip_share=0.25) for _ in range(400))
    assert 60 < slipped < 140


def test_traces_restate_the_state():
    add = thinking(FAMILIES["add"].parse("What is 48213 + 9377?")).split("\n")
    assert add[1] == "48213 + 9377, carry 0: 3 + 7 + 0 = 10, write 0, carry 1, so far 0"
    assert add[2] == "4821 + 937, carry 1: 1 + 7 + 1 = 9, write 9, carry 0, so far 90"
    sort = thinking(FAMILIES["sort"].parse("Sort in ascending order: 42, 7, 19, 88, 3.")).split("\n")
    assert sort[2] == "Left 42, 7, 19, 88: smallest = 7, sorted so far 3, 7"
    mul = thinking(FAMILIES["mul"].parse("What is 347 * 86?"))
    assert "347 * 80 = 27760" in mul and "Sum so far: 2082 + 27760 = 29842" in mul
    countdown = thinking(FAMILIES["countdown"].parse(
        "Make 100 from the numbers 3, 7, 25, 50. Use each number at most once, with + - * / and parentheses."))
    assert "Back to 3, 7, 25." in countdown and countdown.endswith("= 100")
    linear = thinking(FAMILIES["linear"].parse("Solve for x: -3x + 5 = 7x - 25.")).split("\n")
    assert linear[1:4] == ["Subtract 7x from both sides: -3 - 7 = -10, so -10x + 5 = -25",
                           "Subtract 5 from both sides: -10x = -25 - 5 = -30",
                           "Divide both sides by -10: x = -30 / (-10) = 3"]
