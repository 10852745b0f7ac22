"""The solvers' traces: their result verifies (with or without a planted slip), they pass the response
filters, and they restate the state as they go."""
import random
import re

import pytest
from hypothesis import given, strategies as st

from qwen3mini.tasks import FAMILIES, expressions, verify
from qwen3mini.tasks.arithmetic import comparison, columns_difference, columns_product, columns_sum, worked, \
    worked_division
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
            assert verify(problem, reply) and reject_reason(problem, "", reply) is None  # the non-thinking reply
            if family.gives_up(problem):       # (test_countdown.py: the trace stops, the reply after it says so)
                continue
            assert answer(problem, after_trace=True) == reply
            assert verify(problem, f"<think>\n{think}\n</think>\n\n{reply}")
            assert family.is_correct(problem, family.stated_answer(think))
            assert reject_reason(problem, think, reply) is None, think
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
    sort = thinking(FAMILIES["sort"].parse("Sort in ascending order: 42, 7, 19, 88, 3, 47.")).split("\n")
    assert sort[1:7] == ["Tens digits: 42 (4), 7 (0), 19 (1), 88 (8), 3 (0), 47 (4)", "0 to 9: 7, 3",
                         "10 to 19: 19", "40 to 49: 42, 47", "80 to 89: 88", "0 to 9, left 7, 3: smallest = 3"]
    assert sort[7:9] == ["0 to 9 sorted: 3, 7", "10 to 19 sorted: 19"]
    mul = thinking(FAMILIES["mul"].parse("What is 347 * 86?"))
    assert "347 * 80 = 27760" in mul and "Sum so far: 2082 + 27760 = 29842" in mul
    mul = thinking(FAMILIES["mul"].parse("What is 160 * 779?")).split("\n")   # a digit met again: worked again
    assert mul.count("1 * 7, carry 4: 1 * 7 + 4 = 11, so far 1120") == 2 and mul.count("160 * 7 = 1120") == 2
    assert not [line for line in mul if "as above" in line]
    countdown = thinking(FAMILIES["countdown"].parse(
        "Make 100 from the numbers 3, 7, 25, 50. Use each number at most once, with + - * / and parentheses."))
    assert "Give up on 7, 50, 75 (dead end 3 of 6). Back to 3, 7, 25, 50; tried 25 * 3." in countdown
    assert "Give up on 3, 7, 75 (dead end 6 of 6). Back to 3, 7, 25, 50; tried 25 * 3, 50 + 25." in countdown
    assert "7, 50, 75: 75 + 7 = 82, left 50, 82: 82 + 50 = 132, 82 - 50 = 32, 82 * 50 = 4100; no 100 (dead end 1 " \
           "of 6). Back to 7, 50, 75." in countdown    # (a target of 100: two two-digit factors are not evidently over)
    assert countdown.endswith("No 100 within 6 dead ends: the search stops here.")
    linear = thinking(FAMILIES["linear"].parse("Solve for x: -3x + 5 = 7x - 25.")).split("\n")
    assert linear[1:10] == ["Subtract 7x from both sides: -3 - 7 = -10, so -10x + 5 = -25",
                            "Subtract 5 from both sides:",
                            "(-25) - 5 = -(25 + 5): 5+5=10, 2+1=3",
                            "Subtract 5 from both sides: -10x = -25 - 5 = -30",
                            "Divide both sides by -10:",
                            "-30 / (-10) = 30 / 10",
                            "30 / 10, ones: 3 / 1 gives 3; 10 * 3: 0*3=0, 1*3=3, so 30, not more than 30",
                            "30 / 10: 10 * 3 = 30; nothing left",
                           "Divide both sides by -10: x = -30 / (-10) = 3"]
    short = thinking(FAMILIES["add"].parse("What is 48213 + 77?")).split("\n")   # operands run out unevenly
    assert short[3:5] == ["482 + 0, carry 0: 2 + 0 + 0 = 2, write 2, carry 0, so far 290",
                          "48 + 0, carry 0: 8 + 0 + 0 = 8, write 8, carry 0, so far 8290"]


def test_a_difference_decides_its_sign_by_a_written_comparison():
    """In the add family's subtraction and in the work inside longer traces (expr, linear) alike."""
    first = {q: thinking(FAMILIES["add"].parse(f"What is {q}?")).split("\n")[0]
             for q in ("7 - 8", "73695 - 54273", "56 - 1234")}
    assert first["7 - 8"] == "7 - 8: 1 digit each, so 7 < 8, so 7 - 8 = -(8 - 7). Subtract the columns from the right."
    assert first["73695 - 54273"] == ("73695 - 54273: 5 digits each, from the left 7 > 5, so 73695 > 54273, "
                                      "so subtract the columns from the right.")
    assert first["56 - 1234"].startswith("56 - 1234: 2 digits against 4, so 56 < 1234, so 56 - 1234 = -(1234 - 56).")
    inside = {(a, op, b): worked(a, op, b)[0] for a, op, b in ((816, "-", 738), (-466, "+", 460), (2, "-", 18))}
    assert inside[816, "-", 738] == ("816 - 738: 3 digits each, from the left 8 > 7, so 816 > 738: 16-8=8, 11-3-1=7, "
                                     "8-7-1=0")
    assert inside[-466, "+", 460].startswith("(-466) + 460: 3 digits each, from the left 4 = 4, 6 = 6, 6 > 0, so "
                                             "466 > 460, so (-466) + 460 = -(466 - 460): ")
    assert inside[2, "-", 18] == "2 - 18: 1 digit against 2, so 2 < 18, so 2 - 18 = -(18 - 2): 8-2=6, 1"


def test_a_one_digit_trace_does_not_open_like_a_direct_answer():
    """A non-thinking reply to a one-digit question is ``5 * 9 = 45.``; traces whose first line went on with a
    bare relation (``5 - 5: 5 = 5, so subtract the columns from the right.``) taught the non-thinking mode to go on
    ``5 * 9 = 45, so subtract the columns ...`` (bench/RESULTS.md, session 19). After the restated question, a
    one-digit trace's first line does not start with a relation of two numbers."""
    for a in range(10):
        for b in range(10):
            for family, op in (("add", "+"), ("add", "-"), ("mul", "*")):
                first = thinking(FAMILIES[family].parse(f"What is {a} {op} {b}?")).split("\n")[0]
                assert first.startswith(f"{a} {op} {b}: ")
                assert not re.match(r"\d+ [<>=] \d+", first.split(": ", 1)[1]), first


@given(st.integers(0, 10 ** 8), st.integers(0, 10 ** 8))
def test_comparison_reads_the_larger_number_off_its_digits(a, b):
    """The stated relation is the true one and comes last, after the evidence, and every digit pair cited holds,
    from the left."""
    line = comparison(a, b)
    relation = "<" if a < b else ">"
    assert line.endswith(f"{a} {relation} {b}" if a != b else "the two are equal")
    cited = re.search(r"from the left (.*), so ", line)
    if cited:
        pairs = [pair.split(" ") for pair in cited.group(1).split(", ")]
        assert [x for x, _, _ in pairs] == list(str(a)[:len(pairs)])
        assert [y for _, _, y in pairs] == list(str(b)[:len(pairs)])
        assert all(op == "=" for _, op, _ in pairs[:-1]) and pairs[-1][1] == relation
    elif len(str(a)) != len(str(b)):
        assert line.startswith(f"{len(str(a))} digit{'s' * (len(str(a)) > 1)} against {len(str(b))}, so ")


def _read_columns(line: str) -> int:
    """The number a line of written columns spells: each column's last digit, the last column whole, read
    from the left; and every column's own arithmetic must hold."""
    columns = line.split(", ")
    for column in columns:
        if "=" in column:
            work, value = column.split("=")
            assert expressions.evaluate(expressions.parse(work)) == int(value), line
    values = [column.split("=")[-1] for column in columns]
    return int(values[-1] + "".join(value[-1] for value in reversed(values[:-1])))


@given(st.integers(0, 10 ** 7), st.integers(0, 10 ** 7), st.integers(0, 9))
def test_written_columns_spell_the_result(x, y, digit):
    assert _read_columns(columns_sum(x, y)) == x + y
    assert _read_columns(columns_difference(max(x, y), min(x, y))) == abs(x - y)
    assert _read_columns(columns_product(x, digit)) == x * digit


@given(st.integers(-10 ** 4, 10 ** 4), st.sampled_from("+-*"), st.integers(-10 ** 4, 10 ** 4),
       st.integers(-999, 999).filter(bool), st.integers(-99, 99))
def test_worked_operations_show_their_work(a, op, b, divisor, quotient):
    """Work is written exactly when an operation is more than a one-digit fact, and its figures are right."""
    lines = worked(a, op, b)
    fact = abs(a) < 10 and abs(b) < 10 or 0 in (a, b) or op == "*" and 1 in (abs(a), abs(b))
    assert bool(lines) != fact
    result = abs(a + b if op == "+" else a - b if op == "-" else a * b)
    if lines and (op != "*" or min(abs(a), abs(b)) < 10):      # one line of columns spells the result
        assert len(lines) == 1 and _read_columns(lines[0].split(": ")[-1]) == result
    elif lines:                                                 # long multiplication: the last sum spells it
        partials = [line for line in lines if ", so " in line]
        assert all(_read_columns(line.split(": ")[-1].split(", so")[0]) == int(line.split(", so ")[-1])
                   for line in partials)
        assert lines[-1].endswith(f"= {result}") or _read_columns(lines[-1].split(": ")[-1]) == result
    _check_division(worked_division(divisor * quotient, divisor), divisor * quotient, divisor)


def _check_division(steps, n, d):
    """Each estimate is what its line says (leading digits over the divisor's first digit, at most 9); each digit
    tried from it downwards is multiplied out in columns that spell its product, and its verdict ("more than",
    then the next digit down; "not more than" for the last) holds; the digit taken is the last one tried (0 when
    even 1 is too much), and the multiples taken away add up to n."""
    x, y = abs(n), abs(d)
    if not steps:
        return
    estimates = [line for line in steps if " gives " in line]
    taken = [line for line in steps if line.startswith(f"{x} / {y}: ")]
    digits = []
    for line in estimates:
        left, rest = line.split(" / ", 1)
        place = ("ones", "tens", "hundreds", "thousands").index(rest.split(", ")[1].split(":")[0])
        part = int(left) // 10 ** place
        estimate, *tries = line.split("; ")
        head, lead, guess = (int(v) for v in re.match(r".*: (\d+) / (\d+) gives (\d+)$", estimate).groups())
        assert (head, lead, guess) == (part // 10 ** (len(str(y)) - 1), int(str(y)[0]), min(9, head // lead))
        digit = guess
        for number, attempt in enumerate(tries):
            tried, work, product, verdict = re.match(rf"{y} \* (\d+)(?:: (.*?), so | = )(\d+), (.*)$", attempt).groups()
            tried, product = int(tried), int(product)
            assert tried == guess - number and product == y * tried and (not work or _read_columns(work) == product)
            assert verdict == (f"more than {part}, so {tried - 1}" if product > part else f"not more than {part}")
            if number < len(tries) - 1:
                assert product > part                   # tried on down: only a digit that is too much
            else:
                assert product <= part or tried == 1    # the last tried fits, or even 1 is too much (digit 0)
            digit = tried - 1 if product > part else tried
        assert digit == part // y
        digits.append((digit, place))
    multiples = [int(line.split(" = ")[-1].split(";")[0]) for line in taken]
    assert multiples == [y * digit * 10 ** place for digit, place in digits if digit]
    assert sum(multiples) == x and steps[-1].endswith(str(x // y) if len(multiples) > 1 else "left")


@given(st.lists(st.integers(-150, 150), min_size=2, max_size=25))
def test_sorting_by_tens_copies_each_number_a_fixed_few_times(items):
    """Every number goes into exactly its group of ten once, in the given order, and each group's sorted line
    is that group sorted; the groups, joined, are the answer; the tens line gives each number its tens digit, in
    the given order. Across the whole trace a number is written at most its group's size plus 5 times (the tens
    line, the group, the picks left in it, its sorted line, the final list)."""
    problem = FAMILIES["sort"].parse(f"Sort in ascending order: {', '.join(map(str, items))}.")
    lines = thinking(problem).split("\n")
    groups = {int(line.split(" to ")[0]): line.split(": ")[1] for line in lines
              if re.fullmatch(r"-?\d+ to -?\d+: .*", line)}
    assert list(groups) == sorted({10 * (item // 10) for item in items})
    for low, listed in groups.items():
        assert listed == ", ".join(str(item) for item in items if low <= item <= low + 9)
    joined = [line.split("sorted: ")[1] for line in lines if " sorted: " in line]
    assert ", ".join(joined) == ", ".join(map(str, sorted(items))) == lines[-1].removeprefix("Sorted: ")
    assert lines[1] == "Tens digits: " + ", ".join(f"{item} ({item // 10})" for item in items)
    biggest = max(sum(1 for item in items if item // 10 == tens) for tens in {item // 10 for item in items})
    written = [re.sub(r"^-?\d+ to -?\d+", "", line) for line in lines[1:]   # without the group's name, nor the
               if not line.startswith("Check: ")]                           # check line's count of numbers
    for item in (item for item in set(items) if items.count(item) == 1):
        assert sum(len(re.findall(rf"(?<![\d(-]){item}(?![\d)])", line)) for line in written) <= biggest + 5
