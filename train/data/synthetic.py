"""Synthetic reasoning text for S2, and passkey documents for the long-context evaluation.

Paper §3 (S2): "a larger share of STEM, code, reasoning and synthetic data". We cannot ask a large model to
write problems, so we generate them from templates, with worked, step-by-step solutions whose every number is
computed here: arithmetic (column addition and subtraction, long multiplication and division, order of
operations, fractions, percentages), algebra (linear equations, 2x2 systems, factorable quadratics), number
theory (Euclid's algorithm, prime factorisation, base 2), unit conversions, sequences, and logic (ordering
puzzles and knights-and-knaves, solved by brute force and only emitted when the answer is unique), plus short
"textbook" passages that explain a topic before its exercises.

Each generator returns a `Problem`; `facts` holds its parameters in machine-readable form so tests can check
the answer independently of the text. Arithmetic in solutions is always written "expression = number" with
`×`, `÷`, `+`, `-`, so a test can re-evaluate every such equality. Everything is seeded: `corpus(n, seed)` is
a pure function of its arguments.

`passkey_document` builds the needle-in-a-haystack prompts (Mohtashami & Jaggi, 2023) used to evaluate S3 and
YaRN; it is evaluation data and never part of a training corpus.
"""
from __future__ import annotations

import itertools
import math
import random
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Callable, Iterator

DEFAULT_DOCS = 20_000


@dataclass
class Problem:
    kind: str
    question: str
    solution: str  # worked steps, one per line
    answer: str
    facts: dict = field(default_factory=dict)

    def render(self) -> str:
        return f"Problem: {self.question}\nSolution:\n{self.solution}\nAnswer: {self.answer}"


def _digits(rng: random.Random, lo: int, hi: int) -> int:
    """A random integer with between lo and hi digits."""
    n = rng.randint(lo, hi)
    return rng.randint(10 ** (n - 1), 10**n - 1)


def _coef(a: int, var: str) -> str:
    """A coefficient written in front of a variable: 1x -> x, -1x -> -x."""
    return {1: var, -1: f"-{var}"}.get(a, f"{a}{var}")


def _p(n: int) -> str:
    """A number as an operand after an operator: negatives in parentheses, as in "6 × (-5)"."""
    return f"({n})" if n < 0 else str(n)


_PLACES = ["ones", "tens", "hundreds", "thousands", "ten-thousands", "hundred-thousands", "millions"]

# ---------------------------------------------------------------------------------------------- arithmetic


def addition(rng: random.Random) -> Problem:
    a, b = _digits(rng, 2, 6), _digits(rng, 2, 6)
    lines, carry = [], 0
    da, db = str(a)[::-1], str(b)[::-1]
    for i in range(max(len(da), len(db))):
        x, y = int(da[i]) if i < len(da) else 0, int(db[i]) if i < len(db) else 0
        s = x + y + carry
        lines.append(f"{_PLACES[i].capitalize()}: {x} + {y} + {carry} = {s}, write {s % 10}, carry {s // 10}.")
        carry = s // 10
    if carry:
        lines.append(f"Write the final carry {carry}.")
    lines.append(f"So {a} + {b} = {a + b}.")
    return Problem("addition", f"Compute {a} + {b}.", "\n".join(lines), str(a + b), {"expr": f"{a} + {b}"})


def subtraction(rng: random.Random) -> Problem:
    a, b = sorted((_digits(rng, 2, 6), _digits(rng, 2, 6)), reverse=True)
    lines, borrow = [], 0
    da, db = str(a)[::-1], str(b)[::-1]
    for i in range(len(da)):
        x, y = int(da[i]) - borrow, int(db[i]) if i < len(db) else 0
        if x < y:
            lines.append(f"{_PLACES[i].capitalize()}: {x} is less than {y}, borrow 1: {x} + 10 - {y} = {x + 10 - y}.")
            borrow = 1
        else:
            lines.append(f"{_PLACES[i].capitalize()}: {x} - {y} = {x - y}.")
            borrow = 0
    lines.append(f"So {a} - {b} = {a - b}.")
    return Problem("subtraction", f"Compute {a} - {b}.", "\n".join(lines), str(a - b), {"expr": f"{a} - {b}"})


def multiplication(rng: random.Random) -> Problem:
    a, b = _digits(rng, 2, 4), _digits(rng, 2, 3)
    lines, partials = [], []
    for i, d in enumerate(str(b)[::-1]):
        p = a * int(d) * 10**i
        partials.append(p)
        lines.append(f"{a} × {int(d) * 10**i} = {p}")
    lines.append(f"Add the partial products: {' + '.join(map(str, partials))} = {sum(partials)}")
    return Problem("multiplication", f"Compute {a} × {b}.", "\n".join(lines), str(a * b), {"expr": f"{a} * {b}"})


def division(rng: random.Random) -> Problem:
    b = rng.randint(2, 19)
    a = rng.randint(b * 10, b * 2000) + rng.choice([0, 0, rng.randint(0, b - 1)])
    q, r = divmod(a, b)
    lines = [f"Find how many times {b} fits into {a}: {b} × {q} = {b * q}."]
    lines.append(f"Remainder: {a} - {b * q} = {r}.")
    lines.append(f"Check: {b} × {q} + {r} = {a}.")
    ans = str(q) if r == 0 else f"{q} remainder {r}"
    return Problem("division", f"Divide {a} by {b}.", "\n".join(lines), ans, {"a": a, "b": b, "q": q, "r": r})


def _random_expression(rng: random.Random, depth: int) -> tuple[str, int]:
    """A fully parenthesised expression and its value. Operands of "-" are ordered so that every
    intermediate value is non-negative (so no "5 × -7" appears after substitution)."""
    if depth == 0:
        n = rng.randint(1, 20)
        return str(n), n
    op = rng.choice(["+", "-", "×"])
    (left, lv), (right, rv) = _random_expression(rng, depth - 1), _random_expression(rng, rng.randint(0, depth - 1))
    if op == "-" and lv < rv:
        (left, lv), (right, rv) = (right, rv), (left, lv)
    return f"({left} {op} {right})", {"+": lv + rv, "-": lv - rv, "×": lv * rv}[op]


def order_of_operations(rng: random.Random) -> Problem:
    """Evaluate an expression by repeatedly reducing an innermost parenthesis, then × before + and -."""
    expr = _random_expression(rng, rng.randint(2, 3))[0][1:-1]
    lines, current = [], expr
    while "(" in current:
        start = current.rfind("(")
        end = current.index(")", start)
        inner = current[start + 1:end]
        value = _eval_flat(inner)
        lines.append(f"{inner} = {value}")
        current = current[:start] + str(value) + current[end + 1:]
        lines.append(f"Now the expression is {current}.")
    value = _eval_flat(current)
    if current != str(value):
        lines.append(f"{current} = {value}")
    return Problem("order_of_operations", f"Evaluate {expr}.", "\n".join(lines), str(value),
                   {"expr": expr.replace("×", "*")})


def _eval_flat(expr: str) -> int:
    """Value of a parenthesis-free expression of integers with ×, + and - (× first, then left to right)."""
    tokens = expr.split()
    terms, signs, i = [], ["+"], 0
    while i < len(tokens):
        value = int(tokens[i])
        while i + 1 < len(tokens) and tokens[i + 1] == "×":
            value *= int(tokens[i + 2])
            i += 2
        terms.append(value)
        if i + 1 < len(tokens):
            signs.append(tokens[i + 1])
        i += 2
    return sum(t if s == "+" else -t for s, t in zip(signs, terms))


def fractions(rng: random.Random) -> Problem:
    a, c = rng.randint(1, 9), rng.randint(1, 9)
    b, d = rng.randint(2, 12), rng.randint(2, 12)
    op = rng.choice(["+", "-"])
    l = math.lcm(b, d)
    na, nc = a * (l // b), c * (l // d)
    num = na + nc if op == "+" else na - nc
    result = Fraction(num, l)
    lines = [f"The least common denominator of {b} and {d} is {l}.",
             f"{a}/{b} = {na}/{l} because {a} × {l // b} = {na}.",
             f"{c}/{d} = {nc}/{l} because {c} × {l // d} = {nc}.",
             f"Combine the numerators: {na} {op} {nc} = {num}, giving {num}/{l}."]
    g = math.gcd(abs(num), l)
    if g > 1:
        lines.append(f"Divide numerator and denominator by their greatest common divisor {g}: {result}.")
    return Problem("fractions", f"Compute {a}/{b} {op} {c}/{d}.", "\n".join(lines), str(result),
                   {"a": a, "b": b, "c": c, "d": d, "op": op})


def percentage(rng: random.Random) -> Problem:
    p, base = rng.choice([5, 10, 12, 15, 20, 25, 30, 40, 50, 60, 75, 80]), rng.randint(2, 400) * 4
    value = Fraction(base * p, 100)
    lines = [f"{p}% means {p} out of every 100, so multiply by {p} and divide by 100.",
             f"{base} × {p} ÷ 100 = {_num(value)}"]
    return Problem("percentage", f"What is {p}% of {base}?", "\n".join(lines), _num(value), {"p": p, "base": base})


def _num(x: Fraction) -> str:
    """A Fraction as an integer or an exact decimal when it has one (denominator 2^a 5^b), else as a/b."""
    if x.denominator == 1:
        return str(x.numerator)
    d, places = x.denominator, 0
    while d % 10 == 0 or d % 2 == 0 or d % 5 == 0:
        d //= 2 if d % 2 == 0 else 5
        places += 1
    if d != 1:
        return str(x)
    scaled = abs(x) * 10**places  # an integer, since 10^places is a multiple of the denominator
    digits = str(scaled.numerator).rjust(places + 1, "0")
    text = f"{digits[:-places]}.{digits[-places:]}".rstrip("0").rstrip(".")
    return ("-" if x < 0 else "") + text


# ------------------------------------------------------------------------------------------------- algebra


def linear_equation(rng: random.Random) -> Problem:
    x = rng.randint(-20, 20)
    a = rng.choice([i for i in range(-9, 10) if i not in (0, 1)])
    b = rng.randint(-30, 30)
    c = a * x + b
    sign = "+" if b >= 0 else "-"
    lines = [f"Start from {_coef(a, 'x')} {sign} {abs(b)} = {c}."]
    if b >= 0:
        lines.append(f"Subtract {b} from both sides: {c} - {b} = {c - b}, so {_coef(a, 'x')} = {c - b}.")
    else:
        lines.append(f"Add {-b} to both sides: {c} + {-b} = {c - b}, so {_coef(a, 'x')} = {c - b}.")
    lines.append(f"Divide both sides by {a}: {c - b} ÷ {_p(a)} = {x}.")
    lines.append(f"Check: {a} × {_p(x)} + {b} = {c}." if b >= 0 else f"Check: {a} × {_p(x)} - {-b} = {c}.")
    return Problem("linear_equation", f"Solve {_coef(a, 'x')} {sign} {abs(b)} = {c} for x.", "\n".join(lines), f"x = {x}",
                   {"a": a, "b": b, "c": c, "x": x})


def linear_system(rng: random.Random) -> Problem:
    """a1 x + b1 y = c1, a2 x + b2 y = c2 with integer solution, solved by elimination of y."""
    x, y = rng.randint(-9, 9), rng.randint(-9, 9)
    while True:
        a1, b1, a2, b2 = (rng.randint(1, 6) * rng.choice([1, -1]) for _ in range(4))
        if a1 * b2 - a2 * b1 != 0:
            break
    c1, c2 = a1 * x + b1 * y, a2 * x + b2 * y

    def eq(a, b, c):
        return f"{_coef(a, 'x')} {'+' if b >= 0 else '-'} {_coef(abs(b), 'y')} = {c}"

    det = a1 * b2 - a2 * b1
    lines = [f"Multiply the first equation by {b2} and the second by {b1}, then subtract to eliminate y.",
             f"Coefficient of x: {a1} × {_p(b2)} - {_p(a2)} × {_p(b1)} = {det}.",
             f"Right-hand side: {c1} × {_p(b2)} - {_p(c2)} × {_p(b1)} = {c1 * b2 - c2 * b1}.",
             f"So x = {c1 * b2 - c2 * b1} ÷ {_p(det)} = {x}.",
             f"Substitute x = {x} into the first equation: {_coef(b1, 'y')} = {c1} - {_p(a1 * x)} = {c1 - a1 * x}.",
             f"So y = {c1 - a1 * x} ÷ {_p(b1)} = {y}.",
             f"Check the second equation: {a2} × {_p(x)} + {_p(b2)} × {_p(y)} = {c2}."]
    question = f"Solve the system {eq(a1, b1, c1)} and {eq(a2, b2, c2)}."
    return Problem("linear_system", question, "\n".join(lines), f"x = {x}, y = {y}",
                   {"a1": a1, "b1": b1, "c1": c1, "a2": a2, "b2": b2, "c2": c2, "x": x, "y": y})


def quadratic(rng: random.Random) -> Problem:
    r1, r2 = 0, 0
    while r1 == r2 == 0:  # x² = 0 is not a factoring exercise
        r1, r2 = rng.randint(-12, 12), rng.randint(-12, 12)
    p, q = -(r1 + r2), r1 * r2

    def term(coef, var):
        return f" {'+' if coef >= 0 else '-'} {abs(coef)}{var}" if coef else ""

    def factor(root):
        return "x" if root == 0 else f"(x{term(-root, '')})"

    poly = f"x²{term(p, 'x')}{term(q, '')}"
    roots = sorted({r1, r2})
    lines = [f"Look for two numbers whose product is {q} and whose sum is {-p}.",
             f"They are {r1} and {r2}: {r1} × {_p(r2)} = {q} and {r1} + {_p(r2)} = {-p}.",
             f"So {poly} = {factor(r1)}{factor(r2)}.",
             "A product is zero when one of its factors is zero."]
    answer = " or ".join(f"x = {r}" for r in roots)
    return Problem("quadratic", f"Solve {poly} = 0.", "\n".join(lines), answer, {"p": p, "q": q, "roots": roots})


# ------------------------------------------------------------------------------------------- number theory


def gcd_euclid(rng: random.Random) -> Problem:
    g = rng.randint(2, 30)
    a, b = g * rng.randint(2, 60), g * rng.randint(2, 60)
    a, b = max(a, b), min(a, b)
    lines, x, y = [], a, b
    while y:
        q, r = divmod(x, y)
        lines.append(f"{q} × {y} + {r} = {x}, so gcd({x}, {y}) = gcd({y}, {r}).")
        x, y = y, r
    lines.append(f"The last nonzero remainder is {x}.")
    return Problem("gcd", f"Find the greatest common divisor of {a} and {b} with Euclid's algorithm.",
                   "\n".join(lines), str(x), {"a": a, "b": b})


def prime_factorisation(rng: random.Random) -> Problem:
    n = rng.choice([2, 3, 5, 7]) ** rng.randint(1, 3) * rng.choice([1, 3, 7, 11, 13, 17, 19]) * rng.randint(1, 30)
    n = max(n, 4)
    lines, m, factors, p = [], n, [], 2
    while m > 1:
        if p * p > m:
            p = m
        if m % p == 0:
            lines.append(f"{m} ÷ {p} = {m // p}")
            factors.append(p)
            m //= p
        else:
            p += 1
    if len(factors) == 1:
        lines.append(f"{n} has no divisor other than 1 and itself, so it is prime.")
    powers = [f"{f}^{factors.count(f)}" if factors.count(f) > 1 else str(f) for f in sorted(set(factors))]
    return Problem("prime_factorisation", f"Write {n} as a product of primes.", "\n".join(lines),
                   " × ".join(powers), {"n": n, "factors": factors})


def to_binary(rng: random.Random) -> Problem:
    n = rng.randint(2, 1000)
    lines, m, bits = [], n, []
    while m:
        lines.append(f"2 × {m // 2} + {m % 2} = {m}, remainder {m % 2}.")
        bits.append(str(m % 2))
        m //= 2
    lines.append("Read the remainders from last to first.")
    return Problem("binary", f"Convert {n} to binary.", "\n".join(lines), "".join(reversed(bits)), {"n": n})


def arithmetic_series(rng: random.Random) -> Problem:
    a1, d, n = rng.randint(-10, 20), rng.randint(1, 9), rng.randint(5, 40)
    an = a1 + (n - 1) * d
    total = n * (a1 + an) // 2
    lines = [f"The last term is {a1} + ({n} - 1) × {d} = {an}.",
             f"The sum of an arithmetic sequence is the number of terms times the average of the first and last.",
             f"{n} × ({a1} + {an}) ÷ 2 = {total}"]
    return Problem("arithmetic_series",
                   f"Find the sum of the first {n} terms of the arithmetic sequence that starts at {a1} "
                   f"with common difference {d}.", "\n".join(lines), str(total), {"a1": a1, "d": d, "n": n})


# --------------------------------------------------------------------------------------------------- units

# Exact factors to a base unit (metre, gram, second, litre), by definition of each unit.
UNITS = {
    "length": {"millimetre": Fraction(1, 1000), "centimetre": Fraction(1, 100), "metre": Fraction(1),
               "kilometre": Fraction(1000), "inch": Fraction(254, 10000), "foot": Fraction(3048, 10000),
               "yard": Fraction(9144, 10000), "mile": Fraction(1609344, 1000)},
    "mass": {"milligram": Fraction(1, 1000), "gram": Fraction(1), "kilogram": Fraction(1000),
             "tonne": Fraction(1_000_000), "pound": Fraction(45359237, 100000), "ounce": Fraction(45359237, 1600000)},
    "time": {"second": Fraction(1), "minute": Fraction(60), "hour": Fraction(3600), "day": Fraction(86400),
             "week": Fraction(604800)},
    "volume": {"millilitre": Fraction(1, 1000), "litre": Fraction(1), "cubic metre": Fraction(1000)},
}


def _plural(unit: str, value) -> str:
    if value == 1:
        return unit
    return {"inch": "inches", "foot": "feet", "century": "centuries"}.get(unit, unit + "s")


def unit_conversion(rng: random.Random) -> Problem:
    if rng.random() < 0.15:
        return _temperature(rng)
    quantity = rng.choice(sorted(UNITS))
    src, dst = rng.sample(sorted(UNITS[quantity]), 2)
    value = Fraction(rng.choice([rng.randint(1, 100), rng.randint(1, 1000), rng.randint(1, 40) * 5]))
    factor = UNITS[quantity][src] / UNITS[quantity][dst]
    result = value * factor
    exact = _num(result) if "/" not in _num(result) else None
    shown = exact if exact is not None else f"{float(result):.4g}"
    base = {"length": "metre", "mass": "gram", "time": "second", "volume": "litre"}[quantity]
    lines = [f"One {src} is {_num(UNITS[quantity][src])} {_plural(base, 2)} "
             f"and one {dst} is {_num(UNITS[quantity][dst])} {_plural(base, 2)}.",
             f"So one {src} is {_num(factor) if '/' not in _num(factor) else f'{float(factor):.6g}'} "
             f"{_plural(dst, 2)}.",
             f"{_num(value)} × {_num(factor)} = {exact}" if exact is not None and "/" not in _num(factor)
             else f"{_num(value)} {_plural(src, value)} ≈ {shown} {_plural(dst, 2)}"]
    question = f"Convert {_num(value)} {_plural(src, value)} to {_plural(dst, 2)}."
    answer = f"{shown} {_plural(dst, result)}" if exact is not None else f"about {shown} {_plural(dst, 2)}"
    return Problem("unit_conversion", question, "\n".join(lines), answer,
                   {"quantity": quantity, "from": src, "to": dst, "value": str(value), "exact": exact is not None,
                    "result": float(result)})


def _temperature(rng: random.Random) -> Problem:
    if rng.random() < 0.5:
        c = rng.randint(-40, 100) // 5 * 5
        f = Fraction(c * 9, 5) + 32
        lines = ["To convert Celsius to Fahrenheit, multiply by 9, divide by 5 and add 32.",
                 f"{c} × 9 ÷ 5 + 32 = {_num(f)}"]
        return Problem("unit_conversion", f"Convert {c} degrees Celsius to Fahrenheit.", "\n".join(lines),
                       f"{_num(f)} degrees Fahrenheit", {"quantity": "temperature", "celsius": c,
                                                         "result": float(f), "exact": True})
    f = rng.randint(-4, 212)
    c = (Fraction(f) - 32) * 5 / 9
    exact = "/" not in _num(c)
    lines = ["To convert Fahrenheit to Celsius, subtract 32, multiply by 5 and divide by 9.",
             f"({f} - 32) × 5 ÷ 9 = {_num(c)}" if exact else f"({f} - 32) × 5 ÷ 9 ≈ {float(c):.1f}"]
    answer = f"{_num(c)} degrees Celsius" if exact else f"about {float(c):.1f} degrees Celsius"
    return Problem("unit_conversion", f"Convert {f} degrees Fahrenheit to Celsius.", "\n".join(lines), answer,
                   {"quantity": "temperature", "fahrenheit": f, "result": float(c), "exact": exact})


# --------------------------------------------------------------------------------------------------- logic

_NAMES = ["Alice", "Bob", "Carol", "Dave", "Erin", "Frank", "Grace", "Heidi", "Ivan", "Judy", "Mallory", "Oscar",
          "Peggy", "Rupert", "Sybil", "Trent", "Victor", "Walter"]


def _satisfies(order: tuple[str, ...], clue: tuple) -> bool:
    """Clues about a finishing order (index 0 = first): ('before', a, b), ('first', a), ('last', a),
    ('adjacent', a, b), ('not_first', a)."""
    kind, *who = clue
    pos = {name: i for i, name in enumerate(order)}
    if kind == "before":
        return pos[who[0]] < pos[who[1]]
    if kind == "first":
        return pos[who[0]] == 0
    if kind == "last":
        return pos[who[0]] == len(order) - 1
    if kind == "adjacent":
        return abs(pos[who[0]] - pos[who[1]]) == 1
    if kind == "not_first":
        return pos[who[0]] != 0
    raise ValueError(f"unknown clue kind {kind!r}")


_CLUE_TEXT = {"before": "{0} finished before {1}.", "first": "{0} finished first.", "last": "{0} finished last.",
              "adjacent": "{0} and {1} finished next to each other.", "not_first": "{0} did not finish first."}


def ordering_puzzle(rng: random.Random) -> Problem:
    """Race-order puzzle: add true clues until exactly one order satisfies them all (checked by brute force)."""
    names = rng.sample(_NAMES, rng.randint(3, 5))
    truth = tuple(rng.sample(names, len(names)))
    clues, candidates = [], list(itertools.permutations(names))
    while len(candidates) > 1:
        kind = rng.choice(["before", "before", "before", "adjacent", "first", "last", "not_first"])
        a, b = rng.sample(names, 2)
        clue = (kind, a, b) if kind in ("before", "adjacent") else (kind, a)
        if not _satisfies(truth, clue) or clue in clues:
            continue
        remaining = [o for o in candidates if _satisfies(o, clue)]
        if len(remaining) < len(candidates):
            clues.append(clue)
            candidates = remaining
    statements = " ".join(_CLUE_TEXT[c[0]].format(*c[1:]) for c in clues)
    question = f"{', '.join(names[:-1])} and {names[-1]} ran a race. {statements} In what order did they finish?"
    lines = [f"There are {math.factorial(len(names))} possible orders; each clue removes some of them."]
    left = list(itertools.permutations(names))
    for c in clues:
        left = [o for o in left if _satisfies(o, c)]
        lines.append(f"\"{_CLUE_TEXT[c[0]].format(*c[1:])}\" leaves {len(left)} possible order"
                     f"{'s' if len(left) != 1 else ''}.")
    lines.append(f"The only order consistent with every clue is {', '.join(truth)}.")
    return Problem("ordering_puzzle", question, "\n".join(lines), ", ".join(truth),
                   {"names": names, "clues": [list(c) for c in clues], "order": list(truth)})


def _kk_value(statement: tuple, world: dict[str, bool]) -> bool:
    """Truth of a knights-and-knaves statement: ('knight', x), ('knave', x), ('same', x, y), ('different', x, y)."""
    kind, *who = statement
    if kind == "knight":
        return world[who[0]]
    if kind == "knave":
        return not world[who[0]]
    if kind == "same":
        return world[who[0]] == world[who[1]]
    if kind == "different":
        return world[who[0]] != world[who[1]]
    raise ValueError(f"unknown statement kind {kind!r}")


_KK_TEXT = {"knight": "{0} is a knight", "knave": "{0} is a knave", "same": "{0} and {1} are the same kind",
            "different": "{0} and {1} are different kinds"}


def knights_and_knaves(rng: random.Random) -> Problem:
    """Knights always tell the truth, knaves always lie. One statement per person; emitted only if the
    assignment consistent with all statements is unique."""
    while True:
        names = rng.sample(_NAMES, rng.randint(2, 3))
        said = {}
        for n in names:
            others = [m for m in names if m != n]
            kind = rng.choice(["knight", "knave", "same", "different"])
            said[n] = (kind, rng.choice(others)) if kind in ("knight", "knave") else (kind, n, rng.choice(others))
        worlds = [dict(zip(names, bits)) for bits in itertools.product([True, False], repeat=len(names))]
        consistent = [w for w in worlds if all(_kk_value(said[n], w) == w[n] for n in names)]
        if len(consistent) == 1:
            break
    world = consistent[0]
    statements = " ".join(f"{n} says: \"{_KK_TEXT[said[n][0]].format(*said[n][1:])}.\"" for n in names)
    question = f"On an island, knights always tell the truth and knaves always lie. {statements} Who is a knight and who is a knave?"
    lines = [f"Try all {len(worlds)} assignments; a person's statement must be true exactly when that person is a knight."]
    for w in worlds:
        desc = ", ".join(f"{n} {'knight' if w[n] else 'knave'}" for n in names)
        bad = [n for n in names if _kk_value(said[n], w) != w[n]]
        lines.append(f"{desc}: " + ("consistent." if not bad else f"fails, because of what {bad[0]} says."))
    answer = ", ".join(f"{n} is a {'knight' if world[n] else 'knave'}" for n in names)
    return Problem("knights_and_knaves", question, "\n".join(lines), answer,
                   {"names": names, "said": {n: list(s) for n, s in said.items()}, "world": world})


# ------------------------------------------------------------------------------------------ word problems


def word_problem(rng: random.Random) -> Problem:
    name = rng.choice(_NAMES)
    items, price = rng.choice([("notebooks", 3), ("pencils", 1), ("apples", 2), ("tickets", 12), ("books", 15),
                               ("coffees", 4), ("bus passes", 25)])
    n, m = rng.randint(2, 12), rng.randint(1, 9)
    budget = price * (n + m) + rng.randint(0, 50)
    cost_n, cost_m = price * n, price * m
    lines = [f"The first purchase costs {n} × {price} = {cost_n} dollars.",
             f"The second purchase costs {m} × {price} = {cost_m} dollars.",
             f"Together: {cost_n} + {cost_m} = {cost_n + cost_m} dollars.",
             f"Money left: {budget} - {cost_n + cost_m} = {budget - cost_n - cost_m} dollars."]
    question = (f"{name} has {budget} dollars and buys {n} {items} at {price} dollars each, then {m} more. "
                f"How much money does {name} have left?")
    return Problem("word_problem", question, "\n".join(lines), f"{budget - cost_n - cost_m} dollars",
                   {"budget": budget, "price": price, "n": n, "m": m})


def average(rng: random.Random) -> Problem:
    values = [rng.randint(0, 100) for _ in range(rng.randint(3, 8))]
    total = sum(values)
    mean = Fraction(total, len(values))
    lines = [f"Add the values: {' + '.join(map(str, values))} = {total}",
             f"Divide by the number of values: {total} ÷ {len(values)} = {_num(mean)}" if "/" not in _num(mean)
             else f"Divide by the number of values: {total} ÷ {len(values)} ≈ {float(mean):.2f}"]
    answer = _num(mean) if "/" not in _num(mean) else f"about {float(mean):.2f}"
    return Problem("average", f"What is the mean of {', '.join(map(str, values))}?", "\n".join(lines), answer,
                   {"values": values})


def rectangle(rng: random.Random) -> Problem:
    w, h = rng.randint(2, 60), rng.randint(2, 60)
    lines = [f"Area = width × height: {w} × {h} = {w * h}",
             f"Perimeter = 2 × (width + height): 2 × ({w} + {h}) = {2 * (w + h)}"]
    return Problem("rectangle", f"A rectangle is {w} cm wide and {h} cm tall. Find its area and perimeter.",
                   "\n".join(lines), f"area {w * h} square centimetres, perimeter {2 * (w + h)} cm",
                   {"w": w, "h": h})


GENERATORS: dict[str, Callable[[random.Random], Problem]] = {
    "addition": addition, "subtraction": subtraction, "multiplication": multiplication, "division": division,
    "order_of_operations": order_of_operations, "fractions": fractions, "percentage": percentage,
    "linear_equation": linear_equation, "linear_system": linear_system, "quadratic": quadratic,
    "gcd": gcd_euclid, "prime_factorisation": prime_factorisation, "binary": to_binary,
    "arithmetic_series": arithmetic_series, "unit_conversion": unit_conversion, "ordering_puzzle": ordering_puzzle,
    "knights_and_knaves": knights_and_knaves, "word_problem": word_problem, "average": average,
    "rectangle": rectangle,
}

# ------------------------------------------------------------------------------------------ textbook text

# Short explanations that precede exercises of the same kind ("textbook" style, paper §3 synthetic data).
TEXTBOOK = {
    "addition": "Column addition adds numbers one place value at a time, starting from the ones. When a column "
                "adds up to ten or more, we write the last digit and carry the tens to the next column.",
    "subtraction": "Column subtraction works from the ones upward. When the top digit is smaller than the bottom "
                   "digit, we borrow ten from the next column, which then has one less.",
    "multiplication": "Long multiplication splits the second factor into its digits. Each digit, with its place "
                      "value, gives a partial product, and the partial products are added.",
    "division": "Dividing a by b means finding the quotient q and remainder r with a = b × q + r and r smaller "
                "than b. We always check the result by multiplying back.",
    "order_of_operations": "Inside an expression we first evaluate parentheses, innermost first, then "
                           "multiplications, then additions and subtractions from left to right.",
    "fractions": "To add or subtract fractions we rewrite them over a common denominator, preferably the least "
                 "common multiple of the denominators, then combine the numerators and simplify.",
    "percentage": "A percentage is a fraction with denominator 100. To take p percent of a number, multiply it "
                  "by p and divide by 100.",
    "linear_equation": "A linear equation stays true when we do the same thing to both sides. We isolate the "
                       "unknown by undoing additions first and multiplications second, then check the answer.",
    "linear_system": "Two linear equations in two unknowns can be solved by elimination: scale the equations so "
                     "that one unknown has the same coefficient in both, subtract, and solve for the other.",
    "quadratic": "A quadratic x² + px + q with integer roots factors as (x - r)(x - s), where r × s = q and "
                 "r + s = -p. The roots are the values that make a factor zero.",
    "gcd": "Euclid's algorithm rests on one fact: the common divisors of a and b are the common divisors of b "
           "and the remainder of a divided by b. Repeating the division shrinks the numbers until the "
           "remainder is zero.",
    "prime_factorisation": "Every whole number greater than one is a product of primes in exactly one way. "
                           "Trial division by 2, 3, 5, and so on finds the factors in increasing order.",
    "binary": "In base two each place is worth twice the place to its right. Repeated division by 2 gives the "
              "binary digits from the lowest to the highest.",
    "arithmetic_series": "In an arithmetic sequence consecutive terms differ by a fixed amount. Pairing the "
                         "first term with the last, the second with the second to last, and so on, shows that "
                         "the sum is the number of terms times the average of the first and last terms.",
    "unit_conversion": "To convert between units, express both in a common base unit; the ratio of the two "
                       "definitions is the conversion factor. Since 1959 the inch is exactly 2.54 cm and the "
                       "pound exactly 0.45359237 kg.",
    "ordering_puzzle": "An ordering puzzle can always be solved by listing all possible orders and striking out "
                       "those that contradict a clue. With n people there are n! orders.",
    "knights_and_knaves": "In a knights-and-knaves puzzle, a statement is true exactly when its speaker is a "
                          "knight. Testing every assignment of knight or knave finds the consistent ones.",
    "word_problem": "A word problem becomes arithmetic once we name the quantities: what is bought, how many, "
                    "at what price, and what is asked.",
    "average": "The arithmetic mean of a list of numbers is their sum divided by how many there are.",
    "rectangle": "The area of a rectangle is its width times its height; its perimeter is twice the sum of width "
                 "and height.",
}


def document(rng: random.Random) -> str:
    """One synthetic document: either a textbook section (explanation + exercises of one kind) or a mixed
    exercise set."""
    if rng.random() < 0.5:
        kind = rng.choice(sorted(GENERATORS))
        problems = [GENERATORS[kind](rng) for _ in range(rng.randint(3, 8))]
        title = kind.replace("_", " ").capitalize()
        head = f"# {title}\n\n{TEXTBOOK[kind]}\n\n## Worked examples"
    else:
        problems = [GENERATORS[rng.choice(sorted(GENERATORS))](rng) for _ in range(rng.randint(4, 10))]
        head = f"# Exercise set {rng.randint(1, 999)}"
    return head + "\n\n" + "\n\n".join(p.render() for p in problems)


def corpus_document(i: int, seed: int = 0) -> tuple[str, str]:
    """Synthetic document i as (doc_id, text); it depends only on (seed, i)."""
    return f"synthetic#{i:07d}", document(random.Random(f"qwen3mini-synthetic:{seed}:{i}"))


def corpus(n_docs: int, seed: int = 0) -> Iterator[tuple[str, str]]:
    """`n_docs` synthetic documents as (doc_id, text)."""
    return (corpus_document(i, seed) for i in range(n_docs))


# ------------------------------------------------------------------------------------ passkey (eval only)

_FILLER = ("The grass is green. The sky is blue. The sun is yellow. Here we go. There and back again. ")


def passkey_document(encode: Callable[[str], list[int]], n_tokens: int, depth: float, seed: int
                     ) -> tuple[str, str]:
    """A needle-in-a-haystack prompt of about `n_tokens` tokens (under `encode`) with a 5-digit pass key
    hidden at relative `depth` (0 = start, 1 = end). Returns (prompt, passkey); the model should continue
    the prompt with the pass key. Deterministic in `seed`."""
    if not 0.0 <= depth <= 1.0:
        raise ValueError(f"depth must be in [0, 1], got {depth}")
    key = str(random.Random(f"passkey:{seed}").randint(10000, 99999))
    head = "There is important information hidden inside a lot of irrelevant text. Find it and memorize it.\n\n"
    needle = f"The pass key is {key}. Remember it. {key} is the pass key. "
    tail = "\n\nWhat is the pass key? The pass key is"
    fixed = len(encode(head + needle + tail))
    per_filler = len(encode(_FILLER * 8)) / 8
    reps = max(0, int((n_tokens - fixed) / per_filler))
    before = round(reps * depth)
    prompt = head + _FILLER * before + needle + _FILLER * (reps - before) + tail
    return prompt, key
