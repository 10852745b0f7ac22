"""Worked problems of arithmetic, algebra, number theory and units for the S2 synthetic corpus
(synthetic.py assembles them into documents). Each generator returns a `Problem` whose `facts` hold its
parameters, so tests can check the answer independently of the text; solutions write arithmetic as
"expression = number" with `×`, `÷`, `+`, `-`."""
from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from fractions import Fraction


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
