"""qwen3mini.calculator, the calculator tool's arithmetic (issue 19): random expressions, printed and parsed,
evaluate to the Fraction computed alongside the printing; bad input is refused with a clear message; the
result format."""
from fractions import Fraction

import pytest
from hypothesis import given, settings, strategies as st

from qwen3mini.calculator import MAX_DIGITS, CalculatorError, calculate, evaluate, format_number


def _spaces():
    return st.sampled_from(["", "", " ", "  "])


@st.composite
def literals(draw):
    """(text, value, precedence, error) of a number literal: an integer, or a decimal in one of its forms."""
    whole = draw(st.integers(0, draw(st.sampled_from([9, 10 ** 4, 10 ** 12]))))
    decimals = draw(st.text("0123456789", min_size=0, max_size=5))
    form = draw(st.sampled_from(["int", "decimal", "dot-first", "dot-last"]))
    if form == "int" or (form == "decimal" and not decimals):
        return str(whole), Fraction(whole), 4, None
    if form == "dot-last":
        return f"{whole}.", Fraction(whole), 4, None
    decimals = decimals or "5"
    fraction = Fraction(int(decimals), 10 ** len(decimals))
    if form == "dot-first":
        return "." + decimals, fraction, 4, None
    return f"{whole}.{decimals}", whole + fraction, 4, None


def _limit(value):
    """The calculator's documented cap, applied to the reference value: the error it must report, or None."""
    if abs(value) >= 10 ** MAX_DIGITS:
        return "number too large"
    if value.denominator >= 10 ** MAX_DIGITS:
        return "result too precise"
    return None


def _binary(args):
    op, left, right, before, after = args
    (lt, lv, lp, le), (rt, rv, rp, re_) = left, right
    precedence = 1 if op in "+-" else 2
    # Parentheses only where precedence needs them (the right side also for equal precedence: a-(b-c)).
    text = (lt if lp >= precedence else f"({lt})") + before + op + after + (rt if rp > precedence else f"({rt})")
    error = le or re_
    if error is None:
        if op == "/" and rv == 0:
            error = "division by zero"
        else:
            value = {"+": lambda: lv + rv, "-": lambda: lv - rv, "*": lambda: lv * rv, "/": lambda: lv / rv}[op]()
            error = _limit(value)
    return text, (None if error else value), precedence, error


def _negate(node):
    text, value, precedence, error = node
    return "-" + (text if precedence >= 3 else f"({text})"), None if error else -value, 3, error


def _parenthesize(args):
    (text, value, _, error), before, after = args
    return f"({before}{text}{after})", value, 4, error


def _extend(children):
    return st.one_of(st.tuples(st.sampled_from("+-*/"), children, children, _spaces(), _spaces()).map(_binary),
                     children.map(_negate), st.tuples(children, _spaces(), _spaces()).map(_parenthesize))


expressions = st.recursive(literals(), _extend, max_leaves=25)


@settings(max_examples=300, deadline=None)
@given(expressions, _spaces(), _spaces())
def test_calculator_matches_a_reference_built_with_the_string(node, before, after):
    """A random expression tree printed with the fewest parentheses its precedence needs (plus random ones and
    spaces) evaluates to the Fraction computed alongside the printing, or fails with the reference's error."""
    text, value, _, error = node
    text = before + text + after
    if error is None:
        assert evaluate(text) == value
        assert calculate(text) == format_number(value)
    else:
        with pytest.raises(CalculatorError, match=error):
            evaluate(text)


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(st.sampled_from("*/"), st.integers(10 ** 8, 10 ** 12)), min_size=1, max_size=14))
def test_the_magnitude_cap(factors):
    """Long products and quotients of big numbers reach the cap on |x| or on the denominator; the first
    intermediate value past it is refused, with the reference's message."""
    text, value, error = "1", Fraction(1), None
    for op, number in factors:
        text += f" {op} {number}"
        if error is None:
            value = value * number if op == "*" else value / number
            error = _limit(value)
    if error is None:
        assert evaluate(text) == value
    else:
        with pytest.raises(CalculatorError, match=error):
            evaluate(text)


@pytest.mark.parametrize("expression, message", [
    ("__import__('os').system('ls')", r"names are not allowed \('__import__' at position 1\)"),
    ("abs(-1)", "names are not allowed"),
    ("1e5", "names are not allowed"),
    ("2**10", r"'\*\*' at position 2 is not supported"),
    ("7 // 2", "'//' at position 3 is not supported"),
    ("5 % 2", "unknown character '%' at position 3"),
    ("", "empty expression"),
    ("   ", "empty expression"),
    ("1 +", "the expression ends after '\\+'"),
    ("(1 + 2", r"unbalanced parentheses: the '\(' at position 1 is never closed"),
    ("1 + 2)", r"unbalanced parentheses: the '\)' at position 6 closes nothing"),
    ("()", r"expected a number or '\(' at position 2, got '\)'"),
    ("1 2", "unexpected '2' at position 3: expected an operator"),
    ("1.2.3", r"unexpected '\.3' at position 4"),
    ("4 / (2 - 2)", r"division by zero \(the '/' at position 3\)"),
    ("1" * 51, "number too long at position 1: at most 50 digits"),
    ("1" + "0" * 49 + " * 10", "number too large"),
    ("9" * 40 + " * " + "9" * 40, "number too large"),
    ("1" + " / 7" * 60, "result too precise"),
    ("(" * 51 + "1" + ")" * 51, "parentheses nested deeper than 50 levels"),
    ("1+" * 300 + "1", "expression too long: 601 characters, at most 500"),
])
def test_calculator_refuses_with_clear_messages(expression, message):
    with pytest.raises(CalculatorError, match=message):
        evaluate(expression)


def test_calculator_values_and_format():
    assert calculate("347 * 86") == "29842"
    assert calculate("-(3 - 10) * 2 / 7") == "2"                 # integral: printed as an integer
    assert calculate("0.1 + 0.2") == "0.3"                       # exact: no binary floating point
    assert calculate("1/3") == "0.333333333333" and calculate("2/3") == "0.666666666667"
    assert calculate("--1") == "1" and calculate("2*-3") == "-6" and calculate("-7/2") == "-3.5"
    assert calculate("1/4") == "0.25" and calculate(".5 * 3.") == "1.5"
    assert calculate("1/1024") == "0.0009765625"                 # 10 significant digits: exact
    assert calculate("0.9999999999999") == "1.0"                 # rounded, still shown as a decimal
    assert calculate("1" + "0" * 40 + "/3") == "3" * 40 + ".3"   # never exponent notation
    assert calculate("(" * 50 + "1" + ")" * 50) == "1"
    assert calculate("-" * 400 + "1") == "1"                     # a chain of unary minus is not recursion


@settings(max_examples=200, deadline=None)
@given(st.fractions(max_denominator=10 ** 9).filter(lambda f: abs(f) < 10 ** 15))
def test_format_rule(value):
    text = format_number(value)
    if value.denominator == 1:
        assert text == str(value.numerator)
    else:
        assert "." in text and "e" not in text
        assert abs(Fraction(text) - value) <= abs(value) * Fraction(1, 10 ** 11)
