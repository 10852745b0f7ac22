"""The families by name, reading a user's question back into a problem, and verifying a reply."""
from .algebra import Expr, Linear
from .answers import last_boxed
from .arithmetic import Add, Mul
from .chain import Chain
from .countdown import Countdown
from .family import Family, Problem
from .sort import Sort

FAMILIES: dict[str, Family] = {family.name: family for family in
                               (Add(), Mul(), Expr(), Linear(), Sort(), Countdown(), Chain())}


def family_of(problem: Problem) -> Family:
    return FAMILIES[problem.family]


def parse_question(question: str) -> Problem:
    """The problem a user's question asks, whatever its family (formats are disjoint); ValueError naming the
    question if no family reads it."""
    for family in FAMILIES.values():
        try:
            return family.parse(question)
        except ValueError:
            continue
    raise ValueError(f"tasks: not a question of any family: {question[:80]!r}")


def verify(problem: Problem, reply: str) -> bool:
    """Whether the final answer of ``reply``, the content of its last ``\\boxed{}``, is correct."""
    answer = last_boxed(reply)
    return answer is not None and family_of(problem).is_correct(problem, answer)
