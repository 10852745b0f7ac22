"""The calculator tool's arithmetic (issue 19; offered to the model by ``qwen3mini.tools``).

    evaluate("(347 * 86 - 12) / 4")      # Fraction(14915, 2), exact
    calculate("(347 * 86 - 12) / 4")     # "7457.5"
    calculate("1/0")                     # CalculatorError("division by zero (the '/' at position 2)")

Integers and decimals, ``+ - * /``, unary minus (and plus) and parentheses, with the usual precedence, left to
right. Nothing of Python evaluates the text: a regular-expression tokenizer and a recursive-descent parser compute
with ``fractions.Fraction``, so 0.1 + 0.2 is 0.3 exactly. Every error is a CalculatorError whose message is
written for the model that made the call (what is wrong, where). Limits against huge-number work: the input's
length, the nesting depth of parentheses, and the size of every number (input or intermediate): its magnitude
and its denominator must stay below 10**MAX_DIGITS (there is no power operator, so sizes grow only linearly).
"""
import re
from fractions import Fraction


class CalculatorError(ValueError):
    """Bad input or a failed evaluation; the message is for the model that made the call."""


MAX_EXPRESSION_CHARS = 500     # longer input is refused
MAX_NESTING = 50               # parentheses deeper than this are refused (no deep recursion)
MAX_DIGITS = 50                # every number (input or intermediate): |x| < 10**50 and denominator < 10**50
SIGNIFICANT_DIGITS = 12        # non-integer results are rounded to this many significant digits
_LIMIT = 10 ** MAX_DIGITS
_TOKEN = re.compile(r"\s*(?:(\d+\.?\d*|\.\d+)|(\*\*|//|[-+*/()])|([A-Za-z_]\w*)|(\S))")


def _lex(expression: str) -> list:
    """(kind, value, position, text) per token: kind "number" (value: a Fraction) or "op" (+ - * / ( ))."""
    tokens, position = [], 0
    while position < len(expression):
        match = _TOKEN.match(expression, position)
        if match is None:          # only whitespace is left
            break
        number, op, name, other = match.groups()
        at = match.start(match.lastindex) + 1                  # 1-based, for the model to read
        if number is not None:
            whole, _, decimals = number.partition(".")
            if len(whole.lstrip("0")) + len(decimals) > MAX_DIGITS:
                raise CalculatorError(f"number too long at position {at}: at most {MAX_DIGITS} digits")
            value = Fraction(int(whole or "0") * 10 ** len(decimals) + int(decimals or "0"), 10 ** len(decimals))
            tokens.append(("number", _checked(value), at, number))
        elif op in ("**", "//"):
            raise CalculatorError(f"'{op}' at position {at} is not supported: use + - * / and parentheses")
        elif op is not None:
            tokens.append(("op", op, at, op))
        elif name is not None:
            raise CalculatorError(f"names are not allowed ('{name}' at position {at}): only numbers, + - * / and "
                            "parentheses")
        else:
            raise CalculatorError(f"unknown character {other!r} at position {at}: only numbers, + - * / and "
                            "parentheses")
        position = match.end()
    return tokens


def _checked(value: Fraction) -> Fraction:
    if abs(value) >= _LIMIT:
        raise CalculatorError(f"number too large: the calculator works with magnitudes below 1e{MAX_DIGITS}")
    if value.denominator >= _LIMIT:
        raise CalculatorError(f"result too precise: more than {MAX_DIGITS} digits after the decimal point")
    return value


class _Parser:
    """Recursive descent over the tokens: expression = term (+|- term)*, term = unary (*|/ unary)*,
    unary = (-|+)* primary, primary = number | ( expression )."""

    def __init__(self, tokens):
        self.tokens, self.index = tokens, 0

    def peek(self):
        return self.tokens[self.index] if self.index < len(self.tokens) else ("end", None, None, None)

    def expression(self, depth: int) -> Fraction:
        value = self.term(depth)
        while self.peek()[1] in ("+", "-"):
            op = self.peek()[1]
            self.index += 1
            right = self.term(depth)
            value = _checked(value + right if op == "+" else value - right)
        return value

    def term(self, depth: int) -> Fraction:
        value = self.unary(depth)
        while self.peek()[1] in ("*", "/"):
            _, op, at, _ = self.peek()
            self.index += 1
            right = self.unary(depth)
            if op == "/" and right == 0:
                raise CalculatorError(f"division by zero (the '/' at position {at})")
            value = _checked(value * right if op == "*" else value / right)
        return value

    def unary(self, depth: int) -> Fraction:
        sign = 1
        while self.peek()[1] in ("+", "-"):            # a loop, not recursion: "------1" is fine
            sign = -sign if self.peek()[1] == "-" else sign
            self.index += 1
        return sign * self.primary(depth)

    def primary(self, depth: int) -> Fraction:
        kind, value, at, text = self.peek()
        if kind == "number":
            self.index += 1
            return value
        if value == "(":
            if depth >= MAX_NESTING:
                raise CalculatorError(f"parentheses nested deeper than {MAX_NESTING} levels")
            self.index += 1
            inner = self.expression(depth + 1)
            if self.peek()[1] != ")":
                raise CalculatorError(f"unbalanced parentheses: the '(' at position {at} is never closed")
            self.index += 1
            return inner
        if kind == "end":
            previous = self.tokens[self.index - 1][3] if self.index else None
            raise CalculatorError("empty expression" if previous is None else f"the expression ends after '{previous}'")
        raise CalculatorError(f"expected a number or '(' at position {at}, got '{text}'")


def evaluate(expression: str) -> Fraction:
    """The exact value of an arithmetic expression: integers and decimals, + - * /, unary minus (and plus),
    parentheses; the usual precedence, left to right. No Python evaluation of any kind: a tokenizer and a
    recursive-descent parser over Fractions. CalculatorError (with a message for the model) on bad input."""
    if not isinstance(expression, str):
        raise CalculatorError(f"the expression must be a string, got {type(expression).__name__}")
    if len(expression) > MAX_EXPRESSION_CHARS:
        raise CalculatorError(f"expression too long: {len(expression)} characters, at most {MAX_EXPRESSION_CHARS}")
    parser = _Parser(_lex(expression))
    value = parser.expression(0)
    kind, _, at, text = parser.peek()
    if kind != "end":
        if text == ")":
            raise CalculatorError(f"unbalanced parentheses: the ')' at position {at} closes nothing")
        raise CalculatorError(f"unexpected '{text}' at position {at}: expected an operator")
    return value


def format_number(value: Fraction) -> str:
    """An integer prints with all its digits. Any other value prints as a decimal rounded (half to even) to
    SIGNIFICANT_DIGITS significant digits, with at least one digit after the point and trailing zeros dropped:
    1/4 -> 0.25, 2/3 -> 0.666666666667, 10/4 -> 2.5; never in exponent notation."""
    if value.denominator == 1:
        return str(value.numerator)
    sign, value = ("-" if value < 0 else ""), abs(value)
    exponent = len(str(value.numerator)) - len(str(value.denominator))       # 10**exponent <= value < 10**(+1)
    if Fraction(10) ** exponent > value:
        exponent -= 1
    places = max(1, SIGNIFICANT_DIGITS - 1 - exponent)
    digits = str(round(value * 10 ** places)).rjust(places + 1, "0")
    return f"{sign}{digits[:-places]}.{digits[-places:].rstrip('0') or '0'}"


def calculate(expression: str) -> str:
    """``evaluate`` then ``format_number``: the calculator tool's result text."""
    return format_number(evaluate(expression))
