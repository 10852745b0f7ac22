"""Arithmetic expressions over integers, shared by the ``expr`` family (questions) and ``countdown`` (replies).

An expression is a tree: an ``int`` leaf, or a tuple ``(op, left, right)`` with ``op`` in ``+ - * /``. The
parser is a small recursive descent (no ``eval``: replies are untrusted text); there is no unary minus, so
every number in a countdown reply is one the solver chose to use. Values are exact ``Fraction`` s.
"""
import re
from fractions import Fraction

Expr = int | tuple  # (op, left, right)

_PRECEDENCE = {"+": 1, "-": 1, "*": 2, "/": 2}
_SYMBOLS = {"\u00d7": "*", "\u00b7": "*", "\\times": "*", "\\cdot": "*", "\u00f7": "/", "\\div": "/",
            "\u2212": "-"}
_TOKEN = re.compile(r"\s*(\d+|[-+*/()])")


def tokens(text: str) -> list[str]:
    for symbol, op in _SYMBOLS.items():
        text = text.replace(symbol, op)
    out, pos = [], 0
    text = text.rstrip()
    while pos < len(text):
        match = _TOKEN.match(text, pos)
        if not match:
            raise ValueError(f"expression: unexpected {text[pos:].strip()[:10]!r}")
        out.append(match.group(1))
        pos = match.end()
    return out


def parse(text: str, ops: str = "+-*/") -> Expr:
    """The tree of ``text``; ValueError if it is not one well-formed expression over the operators ``ops``."""
    toks = tokens(text)
    pos = 0

    def peek():
        return toks[pos] if pos < len(toks) else None

    def take():  # None past the end
        nonlocal pos
        pos += 1
        return toks[pos - 1] if pos <= len(toks) else None

    def binary(level):  # level 1: + -, level 2: * /
        node = atom() if level == 2 else binary(2)
        while peek() is not None and _PRECEDENCE.get(peek()) == level:
            op = take()
            if op not in ops:
                raise ValueError(f"expression: operator {op!r} not allowed")
            node = (op, node, atom() if level == 2 else binary(2))
        return node

    def atom():
        tok = take()
        if tok == "(":
            node = binary(1)
            if take() != ")":
                raise ValueError("expression: unbalanced parentheses")
            return node
        if tok is None or not tok.isdigit():
            raise ValueError(f"expression: expected a number, got {tok!r}")
        return int(tok)

    tree = binary(1)
    if pos != len(toks):
        raise ValueError(f"expression: unexpected {toks[pos]!r}")
    return tree


def evaluate(tree: Expr) -> Fraction:
    """Exact value; ZeroDivisionError on a division by zero."""
    if isinstance(tree, int):
        return Fraction(tree)
    op, left, right = tree
    a, b = evaluate(left), evaluate(right)
    if op == "+":
        return a + b
    if op == "-":
        return a - b
    return a * b if op == "*" else a / b  # Fraction raises ZeroDivisionError itself


def numbers(tree: Expr) -> list[int]:
    """The numbers the expression uses, in order of appearance."""
    return [tree] if isinstance(tree, int) else numbers(tree[1]) + numbers(tree[2])


def operations(tree: Expr) -> int:
    return 0 if isinstance(tree, int) else 1 + operations(tree[1]) + operations(tree[2])


def text(tree: Expr) -> str:
    """The expression with only the parentheses it needs, so ``parse(text(t)) == t``: a child of lower
    precedence, and a right child of equal precedence (``a - (b + c)``; kept for ``+`` and ``*`` too, so the
    tree, not only the value, survives the round trip)."""
    if isinstance(tree, int):
        return signed(tree)
    op, left, right = tree
    left_text, right_text = text(left), text(right)
    if not isinstance(left, int) and _PRECEDENCE[left[0]] < _PRECEDENCE[op]:
        left_text = f"({left_text})"
    if not isinstance(right, int) and _PRECEDENCE[right[0]] <= _PRECEDENCE[op]:
        right_text = f"({right_text})"
    return f"{left_text} {op} {right_text}"


def signed(number: int) -> str:
    """A number as an operand: a negative one in parentheses, ``(-2)``, since there is no unary minus."""
    return f"({number})" if number < 0 else str(number)


def reduce_once(tree: Expr) -> tuple[Expr, tuple]:
    """One step of evaluation as a person does it (parentheses first, then ``*`` before ``+ -``, left to
    right): the first operation in post-order whose operands are both numbers, replaced by its value. Returns
    the new tree and the operation done, ``(left, op, right, value)``. Integer operations only (``expr``)."""
    op, left, right = tree
    if not isinstance(left, int):
        new_left, done = reduce_once(left)
        return (op, new_left, right), done
    if not isinstance(right, int):
        new_right, done = reduce_once(right)
        return (op, left, new_right), done
    value = int(evaluate(tree))
    return value, (left, op, right, value)
