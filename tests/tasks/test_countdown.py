"""Countdown's verifier: exact rational value, and the numbers used a sub-multiset of the given ones."""
import random

import pytest
from hypothesis import given, settings, strategies as st

from qwen3mini.tasks import FAMILIES, Problem, verify
from qwen3mini.tasks import expressions

COUNTDOWN = FAMILIES["countdown"]
PROBLEM = COUNTDOWN.parse("Make 100 from the numbers 3, 7, 25, 50. Use each number at most once, with + - * / "
                          "and parentheses.")


def _problem(target, numbers):
    return Problem("countdown", len(numbers), "", "", (target, tuple(numbers)))


@pytest.mark.parametrize("answer", ["(50 - 25) * (7 - 3)", "(7 - 3) * 25", "25 * (7 - 3)",
                                    "(50 - 25) \\times (7 - 3)", "(50 - 25) × (7 - 3) = 100", " (7 - 3) * 25. "])
def test_accepts_valid_expressions(answer):
    assert verify(PROBLEM, f"\\boxed{{{answer}}}")


@pytest.mark.parametrize("answer, why", [
    ("50 + 50", "50 reused"), ("25 * 4", "4 is foreign"), ("(7 - 3) * 25 * 1", "1 is foreign"),
    ("(7 - 3) * 25 = 99", "claims another target"), ("25 * (-3 + 7)", "unary minus"), ("100", "foreign"),
    ("(7 - 3) * 25.0", "a decimal"), ("7 * 3 + 50 + 25", "96"), ("", "empty"), ("(7 - 3 * 25", "unbalanced")])
def test_rejects(answer, why):
    assert not verify(PROBLEM, f"\\boxed{{{answer}}}"), why


def test_division_by_zero_and_fractions():
    problem = _problem(100, [25, 25, 50, 50])
    assert not verify(problem, "\\boxed{50 / (25 - 25) + 50}")
    assert verify(problem, "\\boxed{50 + 50}")  # given twice, used twice
    # a non-integer intermediate is fine: the value is exact
    assert verify(_problem(24, [1, 3, 4, 6]), "\\boxed{6 / (1 - 3 / 4)}")
    assert not verify(_problem(24, [1, 3, 4, 6]), "\\boxed{6 / (1 - 3 / 4) + 0}")


@st.composite
def tree_over(draw, numbers):
    """A random expression over a non-empty sub-multiset of ``numbers`` (any operators, fractions allowed)."""
    used = draw(st.permutations(numbers))[:draw(st.integers(1, len(numbers)))]
    trees = list(used)
    while len(trees) > 1:
        i = draw(st.integers(0, len(trees) - 2))
        trees[i:i + 2] = [(draw(st.sampled_from("+-*/")), trees[i], trees[i + 1])]
    return trees[0]


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_any_valid_expression_is_accepted(data):
    numbers = data.draw(st.lists(st.integers(1, 100), min_size=3, max_size=5))
    tree = data.draw(tree_over(numbers))
    try:
        value = expressions.evaluate(tree)
    except ZeroDivisionError:
        return
    problem = _problem(value, numbers)
    if value.denominator == 1:
        assert verify(problem, f"\\boxed{{{expressions.text(tree)}}}")
    # the same expression with one number swapped for one not given is always rejected
    foreign = max(numbers) + 1
    swapped = expressions.text(tree).replace(str(expressions.numbers(tree)[0]), str(foreign), 1)
    assert not verify(problem, f"\\boxed{{{swapped}}}")


def test_every_generated_problem_is_solved_by_its_solver():
    rng = random.Random(2)
    for difficulty in COUNTDOWN.difficulties:
        for _ in range(30):
            problem = COUNTDOWN.generate(rng, difficulty)
            assert verify(problem, f"\\boxed{{{problem.answer}}}")


def test_unsolvable_question_is_refused():
    with pytest.raises(ValueError, match="cannot be made"):
        COUNTDOWN.parse("Make 997 from the numbers 1, 2, 3. Use each number at most once, with + - * / and "
                        "parentheses.")


def test_trace_shows_dead_ends_honestly():
    """The search's trace: each dead end it shows leads to a state that cannot reach the target and is numbered
    1, 2, ... as it is closed, at most the budget; the moves tried from the start are exactly the first ones in
    closest-to-target order (no move passed by unseen), none of them twice (equal numbers make equal moves), each
    give-up back to the start naming them; a search that meets one more dead end than its budget stops and says
    so, with no check and no result."""
    import re
    from qwen3mini.tasks import countdown
    from qwen3mini.tasks.traces import thinking
    rng, move = random.Random(3), re.compile(r"^([\d, ]+): (\d+) ([-+*/]) (\d+)(?: \([^)]*\))? = (\d+)")
    counted = re.compile(r" \(dead end (\d+) of (\d+)\)\. Back to ")
    stopped = 0
    for difficulty in (3, 4, 5):
        for _ in range(40):
            problem = COUNTDOWN.generate(rng, difficulty)
            target, numbers = problem.data
            lines = thinking(problem).split("\n")
            pairs = [line for line in lines if re.search(rf"; no {target} \(dead end \d+ of \d+\)\. Back to "
                                                         rf"[\d, ]+\.$", line)]
            given_up = [line for line in lines if line.startswith("Give up on ")]
            for state in [line.split(", left ")[1].split(":")[0] for line in pairs] + \
                         [line[len("Give up on "):line.index(" (dead end")] for line in given_up]:
                assert not countdown.solvable(tuple(sorted(int(n) for n in state.split(", "))), target), state
            numbers_closed = [int(m.group(1)) for m in map(counted.search, lines) if m]
            assert numbers_closed == list(range(1, len(pairs) + len(given_up) + 1)) and \
                {int(m.group(2)) for m in map(counted.search, lines) if m} <= {countdown._DEAD_ENDS}
            start, from_start = countdown._listed(numbers), []
            for line in lines:   # moves from the start: none twice, and each give-up back there names them all
                m = move.match(line)
                if m and m.group(1) == start:
                    assert " ".join(m.groups()[1:4]) not in from_start, problem.question
                    from_start.append(" ".join(m.groups()[1:4]))
                if line.startswith("Give up on ") and f". Back to {start};" in line:
                    assert line.endswith(f"; tried {', '.join(from_start)}."), line
            tried = [m.groups()[1:] for m in map(move.match, lines) if m and m.group(1) == start]
            order = [(str(left), op, str(right), str(value)) for op, left, right, value, *_ in
                     countdown._moves_closest_first(target, [(n, n) for n in numbers])]
            assert tried == order[:len(tried)], problem.question
            if COUNTDOWN.gives_up(problem):
                stopped += 1
                assert len(numbers_closed) == countdown._DEAD_ENDS, problem.question
                assert lines[-1] == f"No {target} within {countdown._DEAD_ENDS} dead ends: the search stops here."
            else:
                assert len(numbers_closed) <= countdown._DEAD_ENDS and lines[-1].startswith("Solution: ")
    assert 0 < stopped < 120


def test_a_trace_that_stops_gives_up_in_its_reply():
    """After a trace that stops at its budget, the reply says so (no answer claimed; the verifier counts it
    wrong); the same problem asked without thinking is answered directly; the cold start keeps such a reply
    (its response filters have no answer to check), and a thinking-mode instruction sample on it is asked in
    non-thinking mode (a constraint's form needs an answer)."""
    from qwen3mini.tasks import traces, verify
    from qwen3mini.tasks.instructions import answer_right
    from qwen3mini.training.fusion_samples import instruction_sample
    from qwen3mini.training.task_samples import reply_message, response_rejected
    question = "Make 98 from the numbers 6, 1, 2, 75, 6. Use each number at most once, with + - * / and parentheses."
    problem = COUNTDOWN.parse(question)
    assert COUNTDOWN.gives_up(problem) and traces.gives_up(problem)
    after = traces.answer(problem, after_trace=True)
    assert after.startswith("I could not make 98 from 6, 1, 2, 75, 6") and after.endswith("\\boxed{none found}")
    assert not verify(problem, after) and verify(problem, traces.answer(problem))
    reply = reply_message(problem, "think", random.Random(0), 0.0)
    assert reply["content"] == after and "Check:" not in reply["reasoning_content"]
    assert response_rejected(problem, reply) is None
    assert response_rejected(problem, dict(reply, content=traces.answer(problem))) is None   # (not checked)
    messages, sample = instruction_sample(problem, "json", "think", random.Random(0), 0.0)
    assert "reasoning_content" not in sample and answer_right(problem, "json", sample["content"])
    solved = COUNTDOWN.parse(question.replace("98", "898").replace("6, 1, 2, 75, 6", "6, 9, 100, 4"))
    assert not COUNTDOWN.gives_up(solved) and traces.answer(solved, after_trace=True) == traces.answer(solved)


def test_pair_results_worked_out_or_evidently_over():
    """A pair's product is written out unless it is evidently over the target (a factor over it, or two factors
    of two digits against a target under 100: ``65 * 60 > 61``); every other result is worked out, and right,
    a product of several digits by one digit with its columns (a digit and zeros times a digit is a fact)."""
    import re
    from qwen3mini.tasks import countdown
    assert countdown.pair_result("*", 65, 60, 3900, 61) == "65 * 60 > 61"
    assert countdown.pair_result("*", 58, 2, 116, 61) == "58 * 2 (8*2=16, 5*2+1=11) = 116"   # not evident: worked
    assert countdown.pair_result("*", 12, 11, 132, 250) == "12 * 11 = 132"
    assert countdown.pair_result("+", 65, 60, 125, 61) == "65 + 60 = 125"
    assert countdown.pair_result("*", 62, 4, 248, 256) == "62 * 4 (2*4=8, 6*4=24) = 248"
    assert countdown.pair_result("*", 50, 4, 200, 256) == "50 * 4 = 200"
    rng = random.Random(11)
    for _ in range(2000):
        high, low, target = rng.randint(2, 999), rng.randint(2, 999), rng.randint(1, 999)
        high, low = max(high, low), min(high, low)
        for op, left, right, value in countdown.moves(high, low):
            shown = countdown.pair_result(op, left, right, value, target)
            if op == "*" and shown == f"{left} * {right} > {target}":
                assert value > target
                continue
            work = re.fullmatch(rf"{left} \{op} {right}(?: \((.*)\))? = {value}", shown)
            assert work, shown
            if work.group(1):                    # the columns: each digit of the larger times the smaller, carried
                assert right < 10 <= left and work.group(1).count("=") == len(str(left))
                assert int(work.group(1).split("=")[-1] + "".join(c.split("=")[1][-1] for c in
                                                                 reversed(work.group(1).split(", ")[:-1]))) == value


def test_last_pair_in_order_and_the_check_worked_out():
    """The solution's last pair shows its results in the pair's fixed order until the target's, each right (in
    closest-first order the target's move came first, and the model learned to write the target there); the
    check works the answer out again, operation by operation, ending at the target."""
    import re
    from qwen3mini.tasks import countdown
    from qwen3mini.tasks.expressions import evaluate, parse
    from qwen3mini.tasks.traces import thinking
    rng, shown_before = random.Random(7), 0
    for difficulty in (3, 4, 5):
        for _ in range(30):
            problem = COUNTDOWN.generate(rng, difficulty)
            target = problem.data[0]
            found = [line for line in thinking(problem).split("\n") if line.endswith(". Found it.")]
            assert len(found) == (0 if COUNTDOWN.gives_up(problem) else 1)
            if not found or found[0].endswith("is one of the numbers. Found it."):
                continue
            pair, results = found[0].removesuffix(". Found it.").split(": ", 1)
            if pair.count(",") > 1:
                continue            # made with numbers left over (the closest move first)
            a, b = map(int, pair.split(", "))
            expected = [countdown.pair_result(op, left, right, value, target)
                        for op, left, right, value in countdown.moves(a, b)]
            n = next(n for n in range(1, len(expected) + 1) if ", ".join(expected[:n]) == results)
            written = expected[:n]
            assert written[-1].endswith(f" = {target}"), found[0]
            assert all(not w.endswith(f" = {target}") for w in written[:-1])
            check = next(line for line in thinking(problem).split("\n") if line.startswith("Check: "))
            worked = re.findall(r"(\d+) ([-+*/]) (\d+) = (\d+)", check.split("each given; ")[1])
            assert worked and all(evaluate(parse(f"{a} {op} {b}")) == int(v) for a, op, b, v in worked), check
            assert worked[-1][3] == str(target), check
            shown_before += len(written) - 1
    assert shown_before > 0         # some pairs show results before the target's
