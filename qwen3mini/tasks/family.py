"""What every task family provides, and the problem record they share.

A family is a generator, a parser and a verifier of one kind of question, plus the programmatic solver whose
written-out steps are the cold start's thinking traces (paper §4.1; the report's teacher model is replaced by
these solvers). Each family has ONE integer difficulty knob.
"""
import hashlib
import random
import re
from abc import ABC, abstractmethod
from dataclasses import dataclass

from .answers import parse_integer


@dataclass(frozen=True)
class Problem:
    family: str
    difficulty: int
    question: str   # exactly what the user asks
    answer: str     # the canonical final answer, as it goes in \boxed{} (countdown: one solution)
    data: tuple     # the family's own description: operands, items, equation coefficients...


@dataclass(frozen=True)
class Step:
    """One computed line of a trace, ``{state}{work} = {value}{rest}``: ``state`` restates where the work
    stands (operands left, carry, result so far), ``work`` is the operation whose result is ``value``. A
    planted slip writes a wrong value here, then corrects it."""
    state: str
    work: str
    value: int
    rest: str = ""
    likely_slip: int | None = None  # a wrong value a person would plausibly write (default: off by a little)

    def line(self) -> str:
        return f"{self.state}{self.work} = {self.value}{self.rest}"


Trace = list  # of str | Step


class Family(ABC):
    """A task family: a subclass writes the abstract methods; the others have defaults that fit integer answers."""

    name: str
    difficulties: range
    example: str  # a question in the exact format (for the README table)

    @abstractmethod
    def generate(self, rng: random.Random, difficulty: int) -> Problem:
        """A problem of ``difficulty`` drawn with ``rng`` (the same draws give the same problem)."""

    def generate_for_training(self, rng: random.Random, difficulty: int) -> Problem:
        """A training problem of ``difficulty``: by default what ``generate`` makes, the held-out sets' kind; a
        family may add shapes that its test sets lack but their procedure needs."""
        return self.generate(rng, difficulty)

    @abstractmethod
    def parse(self, question: str) -> Problem:
        """The problem asked by ``question`` in this family's exact format; ValueError if it is not one."""

    def is_correct(self, problem: Problem, answer: str) -> bool:
        """Whether ``answer`` (the content of the reply's last \\boxed{}) answers ``problem``."""
        return parse_integer(answer) == int(problem.answer)

    def key(self, problem: Problem) -> tuple:
        """What makes two problems the same one (operands of ``+`` in either order, countdown's numbers as a
        multiset...): the held-out split hashes this, so no reordering of a test item reaches training."""
        return problem.data

    @abstractmethod
    def solve(self, problem: Problem) -> Trace:
        """The careful person's steps up to the result (the trace then adds ``check`` and ``restated``)."""

    @abstractmethod
    def check(self, problem: Problem) -> str:
        """A line that checks the result another way."""

    def min_steps(self, problem: Problem) -> int:
        """Fewest lines of thinking that can count as reasoning for this problem (the guessing filter)."""
        return 1

    def same_answer(self, problem: Problem, first: str, second: str) -> bool:
        """Whether two answers say the same thing (the thinking/summary consistency filter)."""
        return parse_integer(first) is not None and parse_integer(first) == parse_integer(second)

    def stated_answer(self, thinking: str) -> str | None:
        """The result the thinking arrives at: by convention the text after the last ``=`` of its last line
        with one that is not a check (a trace's last line restates the result that way), a trailing period
        dropped."""
        lines = [line for line in thinking.split("\n") if "=" in line and not line.startswith("Check")]
        return lines[-1].rsplit("=", 1)[1].strip().rstrip(".") if lines else None

    def summary(self, problem: Problem) -> str:
        """The sentence after the thinking, before \\boxed{}."""
        return f"{self.restated(problem)}."

    def gives_up(self, problem: Problem) -> bool:
        """Whether the trace stops before the result (a search that spends its budget): its reply then says so
        in place of ``check``, ``restated`` and the answer, in the words of the family's ``given_up(problem)``,
        which a family whose traces can stop writes (countdown's)."""
        return False

    @abstractmethod
    def restated(self, problem: Problem) -> str:
        """``question = answer`` in the family's words, e.g. ``48213 + 9377 = 57590``."""


def problem_hash(family: Family, problem: Problem) -> str:
    """Stable across runs and machines (not Python's salted ``hash``)."""
    text = f"{problem.family}|{family.key(problem)!r}"
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def match(pattern: str, question: str, family: str) -> re.Match:
    """``pattern`` matched against the whole question (surrounding spaces tolerated), or a ValueError naming
    the family whose format the question does not have."""
    found = re.fullmatch(pattern, question.strip())
    if not found:
        raise ValueError(f"{family}: not a question of this family: {question[:60]!r}")
    return found


def random_number(rng: random.Random, digits: int, lowest: int = 0) -> int:
    """A number with exactly ``digits`` digits (one digit: ``lowest`` to 9)."""
    return rng.randint(lowest, 9) if digits == 1 else rng.randint(10 ** (digits - 1), 10 ** digits - 1)
