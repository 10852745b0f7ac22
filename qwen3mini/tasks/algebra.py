"""``expr`` (evaluate an integer expression) and ``linear`` (solve a linear equation in x)."""
import re

from . import expressions
from .answers import parse_integer
from .arithmetic import worked, worked_division
from .family import Family, Problem, Step, match, random_number

_MAX_INTERMEDIATE = 10_000  # keeps every step of an expr problem mental arithmetic


class Expr(Family):
    """Knob: the number of operations (1 to 8) over integers 1 to 20 with ``+ - *`` and parentheses."""
    name = "expr"
    difficulties = range(1, 9)
    example = "Compute (17 + 25) * 3 - 8."

    def generate(self, rng, difficulty):
        while True:
            tree = _random_tree(rng, difficulty)
            if all(abs(value) <= _MAX_INTERMEDIATE for _, _, _, value in _reductions(tree)):
                return self._problem(tree)

    def _problem(self, tree):
        return Problem(self.name, expressions.operations(tree), f"Compute {expressions.text(tree)}.",
                       str(int(expressions.evaluate(tree))), (tree,))

    def parse(self, question):
        tree = expressions.parse(match(r"Compute\s+(.+?)\s*\.", question, self.name).group(1), ops="+-*")
        if isinstance(tree, int):
            raise ValueError(f"expr: no operation in {question!r}")
        return self._problem(tree)

    def restated(self, problem):
        return f"{expressions.text(problem.data[0])} = {problem.answer}"

    def min_steps(self, problem):
        return (problem.difficulty + 1) // 2

    def solve(self, problem):
        tree, lines = problem.data[0], [f"{expressions.text(problem.data[0])}: parentheses first, then * "
                                        "before + and -, left to right."]
        while not isinstance(tree, int):
            tree, (left, op, right, value) = expressions.reduce_once(tree)
            rest = "" if isinstance(tree, int) else f", now {expressions.text(tree)}"
            work = f"{expressions.signed(left)} {op} {expressions.signed(right)}"
            lines += worked(left, op, right) + [Step("", work, value, rest)]
        return lines

    def check(self, problem):
        left, op, right, value = _reductions(problem.data[0])[-1]
        if op == "*" and right == 0:
            return f"Check the last step: {expressions.signed(left)} * 0 = 0. Correct."
        inverse = {"+": "-", "-": "+", "*": "/"}[op]
        signed = expressions.signed
        return f"Check the last step: {signed(value)} {inverse} {signed(right)} = {left}. Correct."


def _random_tree(rng, operations):
    if operations == 0:
        return rng.randint(1, 20)
    left = rng.randint(0, operations - 1)
    return (rng.choice("++--*"), _random_tree(rng, left), _random_tree(rng, operations - 1 - left))


def _reductions(tree):
    done = []
    while not isinstance(tree, int):
        tree, step = expressions.reduce_once(tree)
        done.append(step)
    return done


def _linear_side(coefficient: int, constant: int) -> str:
    """``7x - 12``, ``-x + 5``, ``30`` (a zero coefficient or constant is left out)."""
    term = {0: "", 1: "x", -1: "-x"}.get(coefficient, f"{coefficient}x")
    if not term:
        return str(constant)
    return term if constant == 0 else f"{term} {'+' if constant > 0 else '-'} {abs(constant)}"


def _parse_linear_side(text: str) -> tuple[int, int]:
    """``(coefficient of x, constant)`` of a sum of terms like ``7x``, ``-x``, ``12``."""
    text = text.replace(" ", "").replace("\u2212", "-")
    if not re.fullmatch(r"[+-]?(\d+x?|x)([+-](\d+x?|x))*", text):
        raise ValueError(f"linear: not a linear expression in x: {text!r}")
    coefficient = constant = 0
    for sign, term in re.findall(r"([+-]?)(\d+x?|x)", text):
        value = int(term.rstrip("x") or 1) * (-1 if sign == "-" else 1)
        if term.endswith("x"):
            coefficient += value
        else:
            constant += value
    return coefficient, constant


def _announced(move: str, work: list) -> list:
    """The move first, then the written work it needs (none when the step is a one-digit fact)."""
    return [f"{move}:"] + work if work else []


class Linear(Family):
    """Knob 1 to 6: coefficient digits (1, 2, 3) and one side / both sides, in the order 1-digit one side,
    1-digit both sides, 2-digit one side, ... The solution is an integer from -20 to 20."""
    name = "linear"
    difficulties = range(1, 7)
    example = "Solve for x: -3x + 5 = 7x - 25."

    def generate(self, rng, difficulty):
        digits, both_sides = (difficulty + 1) // 2, difficulty % 2 == 0
        x = rng.randint(-20, 20)

        def nonzero():
            return random_number(rng, digits, 1) * rng.choice((-1, 1))
        a, b, c = nonzero(), nonzero(), nonzero() if both_sides else 0
        while c == a:
            c = nonzero()
        return self._problem(a, b, c, (a - c) * x + b, both_sides)  # ax + b = cx + d

    def _problem(self, a, b, c, d, both_sides):
        if a == c:
            raise ValueError("linear: x cancels out, so the equation has no unique solution")
        if (d - b) % (a - c):
            raise ValueError("linear: the solution is not an integer")
        right = _linear_side(c, d) if both_sides else str(d)
        digits = len(str(max(abs(a), abs(c))))
        return Problem(self.name, min(6, 2 * digits - (0 if both_sides else 1)),
                       f"Solve for x: {_linear_side(a, b)} = {right}.", str((d - b) // (a - c)),
                       (a, b, c, d, both_sides))

    def parse(self, question):
        left, right = match(r"Solve for x:\s*([^=]+?)\s*=\s*([^=]+?)\s*\.", question, self.name).groups()
        (a, b), (c, d) = _parse_linear_side(left), _parse_linear_side(right)
        return self._problem(a, b, c, d, "x" in right)

    def is_correct(self, problem, answer):
        answer = answer.strip()
        if answer.startswith("x"):
            answer = answer[1:].lstrip(" =")
        return parse_integer(answer) == int(problem.answer)

    def restated(self, problem):
        return f"x = {problem.answer}"

    def min_steps(self, problem):
        return 3 if problem.data[4] else 2

    def solve(self, problem):
        a, b, c, d, both_sides = problem.data
        lines = [f"{_linear_side(a, b)} = {_linear_side(c, d)}: collect x on the left, numbers on the right."]
        if both_sides:
            move = f"Subtract {c}x from both sides" if c > 0 else f"Add {-c}x to both sides"
            lines += _announced(move, worked(a, "-" if c > 0 else "+", abs(c)))
            lines.append(Step(f"{move}: ", f"{a} {'-' if c > 0 else '+'} {abs(c)}", a - c,
                              f", so {_linear_side(a - c, b)} = {d}"))
            a = a - c
        if b:
            move = f"Subtract {b} from both sides" if b > 0 else f"Add {-b} to both sides"
            lines += _announced(move, worked(d, "-" if b > 0 else "+", abs(b)))
            lines.append(Step(f"{move}: {_linear_side(a, 0)} = ", f"{d} {'-' if b > 0 else '+'} {abs(b)}",
                              d - b))
        if a != 1:
            lines += _announced(f"Divide both sides by {a}", worked_division(d - b, a))
            lines.append(Step(f"Divide both sides by {a}: x = ", f"{d - b} / {expressions.signed(a)}",
                              (d - b) // a))
        return lines

    def check(self, problem):
        a, b, c, d, both_sides = problem.data
        x = int(problem.answer)

        def side(coefficient, constant):
            value = coefficient * x + constant
            sign = "+" if constant >= 0 else "-"
            return f"{coefficient} * {expressions.signed(x)} {sign} {abs(constant)} = {value}"
        right = f"right {side(c, d)}" if both_sides else f"right {d}"
        return f"Check: left {side(a, b)}, {right}. Correct."
