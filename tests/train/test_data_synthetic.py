"""The synthetic S2 generators: seeded, and their worked answers are right (checked independently of the
generator code: Python's own arithmetic, substitution into the equation, brute force over the puzzles)."""
import itertools
import os
import random
import re
import sys
from fractions import Fraction
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from train.data import synthetic  # noqa: E402

N = int(os.environ.get("QWEN3MINI_SYNTH_CASES", "100"))  # cases per generator; raise for a deeper check
SEEDS = range(N)

# "expression = number" with an operator in the expression, e.g. "2 × (-5) + 7 = -3" or "40 + 42 = 82".
EQUALITY = re.compile(r"(?<![\w.)/^])(\(?-?\d[\d\s.+\-×÷()]*?[+\-×÷]\s*\(?-?[\d.]+[\d\s.+\-×÷()]*?)"
                      r"=\s*(-?\d+(?:\.\d+)?)(?![\d/^])")


def _exact(expr: str) -> Fraction:
    """Evaluate +, -, ×, ÷ and parentheses exactly (Fractions), via Python's parser on a rewritten string."""
    py = re.sub(r"(\d+(?:\.\d+)?)", r"Fraction('\1')", expr.replace("×", "*").replace("÷", "/"))
    return eval(py, {"Fraction": Fraction, "__builtins__": {}})


def _checked_equalities(text: str) -> int:
    n = 0
    for line in text.split("\n"):
        for m in EQUALITY.finditer(line):
            lhs, rhs = m.group(1).strip(), m.group(2)
            if lhs.count("(") != lhs.count(")"):
                continue  # the match began inside a larger parenthesised expression; the full one is checked
            assert _exact(lhs) == Fraction(rhs), f"wrong step {lhs} = {rhs!r} in line {line!r}"
            n += 1
    return n


@pytest.mark.parametrize("kind", sorted(synthetic.GENERATORS))
def test_every_arithmetic_step_is_true(kind):
    checked = sum(_checked_equalities(synthetic.GENERATORS[kind](random.Random(s)).solution) for s in SEEDS)
    if kind not in ("ordering_puzzle", "knights_and_knaves", "unit_conversion", "fractions", "quadratic",
                    "prime_factorisation"):
        assert checked >= len(SEEDS), f"{kind}: the step checker found only {checked} equalities"


def test_equality_checker_catches_a_wrong_step():
    assert _checked_equalities("So 40 + 42 = 82.") == 1
    with pytest.raises(AssertionError):
        _checked_equalities("Check: 6 × (-5) + 7 = 23.")


def _gen(kind, seed):
    return synthetic.GENERATORS[kind](random.Random(seed))


@pytest.mark.parametrize("seed", SEEDS[:50])
def test_arithmetic_answers(seed):
    for kind in ("addition", "subtraction", "multiplication", "order_of_operations"):
        p = _gen(kind, seed)
        assert int(p.answer) == eval(p.facts["expr"]), (kind, p.question)
    p = _gen("division", seed)
    q, r = divmod(p.facts["a"], p.facts["b"])
    assert p.answer == (str(q) if r == 0 else f"{q} remainder {r}")
    p = _gen("fractions", seed)
    f = p.facts
    a, c = Fraction(f["a"], f["b"]), Fraction(f["c"], f["d"])
    assert Fraction(p.answer) == (a + c if f["op"] == "+" else a - c)
    p = _gen("percentage", seed)
    assert Fraction(p.answer) == Fraction(p.facts["p"] * p.facts["base"], 100)
    p = _gen("average", seed)
    mean = Fraction(sum(p.facts["values"]), len(p.facts["values"]))
    assert (Fraction(p.answer) == mean) if "about" not in p.answer else abs(float(p.answer.split()[1]) - mean) < 0.01


@pytest.mark.parametrize("seed", SEEDS[:50])
def test_algebra_answers(seed):
    p = _gen("linear_equation", seed)
    x = int(p.answer.removeprefix("x = "))
    assert p.facts["a"] * x + p.facts["b"] == p.facts["c"]
    p = _gen("linear_system", seed)
    x, y = (int(v.split("=")[1]) for v in p.answer.split(","))
    f = p.facts
    assert f["a1"] * x + f["b1"] * y == f["c1"] and f["a2"] * x + f["b2"] * y == f["c2"]
    p = _gen("quadratic", seed)
    roots = [int(r.split("=")[1]) for r in p.answer.split(" or ")]
    assert all(r * r + p.facts["p"] * r + p.facts["q"] == 0 for r in roots)
    assert len(roots) == len({r for r in range(-50, 51) if r * r + p.facts["p"] * r + p.facts["q"] == 0})


@pytest.mark.parametrize("seed", SEEDS[:50])
def test_number_theory_answers(seed):
    import math

    p = _gen("gcd", seed)
    assert int(p.answer) == math.gcd(p.facts["a"], p.facts["b"])
    p = _gen("binary", seed)
    assert int(p.answer, 2) == p.facts["n"]
    p = _gen("prime_factorisation", seed)
    product = 1
    for factor in p.answer.split(" × "):
        base, _, exp = factor.partition("^")
        assert all(int(base) % d for d in range(2, int(base))), f"{base} is not prime"
        product *= int(base) ** int(exp or 1)
    assert product == p.facts["n"]
    p = _gen("arithmetic_series", seed)
    f = p.facts
    assert int(p.answer) == sum(f["a1"] + i * f["d"] for i in range(f["n"]))
    p = _gen("word_problem", seed)
    f = p.facts
    assert p.answer == f"{f['budget'] - f['price'] * (f['n'] + f['m'])} dollars"
    p = _gen("rectangle", seed)
    assert f"area {p.facts['w'] * p.facts['h']} " in p.answer and f"perimeter {2 * (p.facts['w'] + p.facts['h'])} " in p.answer


# Independent definitions (NIST): to metres, grams, seconds, litres.
_SI = {"millimetre": 0.001, "centimetre": 0.01, "metre": 1, "kilometre": 1000, "inch": 0.0254, "foot": 0.3048,
       "yard": 0.9144, "mile": 1609.344, "milligram": 0.001, "gram": 1, "kilogram": 1000, "tonne": 1e6,
       "pound": 453.59237, "ounce": 28.349523125, "second": 1, "minute": 60, "hour": 3600, "day": 86400,
       "week": 604800, "millilitre": 0.001, "litre": 1, "cubic metre": 1000}


@pytest.mark.parametrize("seed", SEEDS)
def test_unit_conversions(seed):
    p = _gen("unit_conversion", seed)
    f = p.facts
    if f["quantity"] == "temperature":
        expected = f["celsius"] * 9 / 5 + 32 if "celsius" in f else (f["fahrenheit"] - 32) * 5 / 9
    else:
        expected = float(Fraction(f["value"])) * _SI[f["from"]] / _SI[f["to"]]
    shown = float(re.search(r"-?\d+(?:\.\d+)?(?:e[+-]?\d+)?", p.answer).group())
    assert shown == pytest.approx(expected, rel=1e-3 if not f["exact"] else 1e-12, abs=0.05 if not f["exact"] else 0)


def _clue_holds(order, clue):
    kind, *who = clue
    i = [order.index(w) for w in who]
    return {"before": lambda: i[0] < i[1], "first": lambda: i[0] == 0, "last": lambda: i[0] == len(order) - 1,
            "adjacent": lambda: abs(i[0] - i[1]) == 1, "not_first": lambda: i[0] != 0}[kind]()


@pytest.mark.parametrize("seed", SEEDS[:60])
def test_logic_puzzles_have_the_unique_stated_answer(seed):
    p = _gen("ordering_puzzle", seed)
    solutions = [list(o) for o in itertools.permutations(p.facts["names"])
                 if all(_clue_holds(list(o), c) for c in p.facts["clues"])]
    assert solutions == [p.facts["order"]] and p.answer == ", ".join(p.facts["order"])

    p = _gen("knights_and_knaves", seed)
    names, said = p.facts["names"], p.facts["said"]

    def true(stmt, w):
        kind, *who = stmt
        return {"knight": lambda: w[who[0]], "knave": lambda: not w[who[0]],
                "same": lambda: w[who[0]] == w[who[1]], "different": lambda: w[who[0]] != w[who[1]]}[kind]()

    worlds = [dict(zip(names, bits)) for bits in itertools.product([True, False], repeat=len(names))]
    consistent = [w for w in worlds if all(true(said[n], w) == w[n] for n in names)]
    assert len(consistent) == 1
    for n in names:
        assert f"{n} is a {'knight' if consistent[0][n] else 'knave'}" in p.answer


def test_corpus_is_seeded_and_deterministic():
    a = list(synthetic.corpus(20, seed=1))
    assert a == list(synthetic.corpus(20, seed=1))
    assert a != list(synthetic.corpus(20, seed=2))
    assert list(synthetic.corpus(5, seed=1)) == a[:5]  # document i depends only on (seed, i)
    assert len({doc_id for doc_id, _ in a}) == 20


def test_passkey_document():
    encode = lambda s: s.split()  # a whitespace "tokenizer" is enough to test placement and length
    for depth in (0.0, 0.5, 1.0):
        prompt, key = synthetic.passkey_document(encode, 2000, depth, seed=3)
        assert prompt.count(key) == 2 and prompt.endswith("The pass key is")
        assert 1900 <= len(encode(prompt)) <= 2000
        pos = prompt.index(key) / len(prompt)
        assert abs(pos - depth) < 0.1
    assert synthetic.passkey_document(encode, 500, 0.3, seed=3) == synthetic.passkey_document(encode, 500, 0.3, seed=3)
    assert synthetic.passkey_document(encode, 500, 0.3, seed=3)[1] != synthetic.passkey_document(encode, 500, 0.3, seed=4)[1]
