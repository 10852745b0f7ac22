"""``countdown``: reach a target from given numbers with ``+ - * /`` and parentheses, each number at most once.

The answer is any expression: the verifier evaluates it exactly (fractions) and checks that the numbers it
uses are a sub-multiset of the given ones. The generator builds the target from a random sequence of moves, so
every problem has a solution; the canonical answer is the one the solver finds. The solver is a depth-first search
over states (the numbers still available), moves tried closest-to-target first; the trace shows each move and,
up to a budget, each dead end it meets: with two numbers left every result of the pair (a product evidently over
the target said to be, ``pair_result``), with more a couple of tries before giving the state up, and the
backtracking; a product of several digits by one digit is written with its columns (``shown``). The last pair
of a solution is written like a dead end's, its results in order until the target's. Each dead end is numbered
as it is closed (``dead end 2 of 6``), and a search that meets one more than its budget (``_DEAD_ENDS``) stops
and says so: the reply gives up rather than claim a solution it did not find (``gives_up``; bench/RESULTS.md,
session 26: a trace that went straight for the solution past its budget, as if it had known, taught a model
whose own search needed more to search on and never end).
"""
import functools
import itertools
from collections import Counter
from dataclasses import dataclass

from . import expressions
from .arithmetic import columns_product
from .family import Family, Problem, Step, match

_LARGE = (25, 50, 75, 100)
# Dead ends a trace may show before its search stops: as many as keep nearly every 4- and 5-number reply within the
# 1,024 tokens a reply has to end in, and its cold-start row with the prompt within 1,024 (about 1% are longer and
# dropped; bench/RESULTS.md, session 26).
_DEAD_ENDS = 6
_TRIES_IN_A_DEAD_END = 2  # moves tried from a dead state of three or more numbers before giving it up
_QUESTION = (r"Make\s+(\d+)\s+from the numbers\s+(\d+(?:\s*,\s*\d+)+)\.\s*Use each number at most once, "
             r"with \+ - \* / and parentheses\.")


def _listed(values) -> str:
    return ", ".join(map(str, values))


def moves(a: int, b: int) -> list[tuple[str, int, int, int]]:
    """``(op, left, right, value)`` for the pair: a person keeps every intermediate a positive integer
    and skips moves that change nothing (``* 1``, ``/ 1``)."""
    high, low = max(a, b), min(a, b)
    found = [("+", high, low, high + low)]
    if high != low:
        found.append(("-", high, low, high - low))
    if low != 1:
        found.append(("*", high, low, high * low))
        if high % low == 0:
            found.append(("/", high, low, high // low))
    return found


def shown(op: str, high: int, low: int) -> str:
    """A move's operation as a line writes it before its ``= value``: a product of a number of several digits by
    a one-digit one with its columns (``62 * 4 (2*4=8, 6*4=24)``), as expr and linear write theirs; worked in the
    head, such products were most of the wrong last moves that ended countdown replies (``62 * 4 = 256. Found
    it.``; bench/RESULTS.md, session 21). A digit and zeros (10, 50, 100) times a digit is a fact."""
    if op == "*" and 2 <= low < 10 <= high and high % 10 ** (len(str(high)) - 1):
        return f"{high} * {low} ({columns_product(high, low)})"
    return f"{high} {op} {low}"


def pair_result(op: str, high: int, low: int, value: int, target: int) -> str:
    """A result on a pair's line. A product that is evidently over the target is said to be, not worked out
    (``65 * 60 > 61``): a factor over the target times at least 2, or two numbers of two digits or more (at least
    100) against a target under 100. Such products were the head-worked results the model got wrong on dead ends'
    pair lines (``725 * 8 = 5700``), and their value never matters there."""
    if op == "*" and (high > target or (low >= 10 and target < 100)):
        return f"{high} * {low} > {target}"
    return f"{shown(op, high, low)} = {value}"


@functools.lru_cache(maxsize=100_000)
def solvable(values: tuple, target: int) -> bool:
    """Whether ``target`` is among ``values`` (sorted) or reachable from them by moves."""
    if target in values:
        return True
    for i in range(len(values)):
        for j in range(i + 1, len(values)):
            rest = values[:i] + values[i + 1:j] + values[j + 1:]
            if any(solvable(tuple(sorted(rest + (value,))), target) for *_, value in moves(values[i], values[j])):
                return True
    return False


class Countdown(Family):
    """Knob: how many numbers, 3 to 5 (small ones 1 to 10, sometimes a large one: 25, 50, 75, 100); the
    target (10 to 999) needs at least all but one of them."""
    name = "countdown"
    difficulties = range(3, 6)
    example = "Make 100 from the numbers 3, 7, 25, 50. Use each number at most once, with + - * / and parentheses."

    def generate(self, rng, difficulty):
        while True:
            numbers = [rng.choice(_LARGE) if rng.random() < 0.3 else rng.randint(1, 10) for _ in range(difficulty)]
            pool = [(n, n) for n in numbers]  # (value, expression tree)
            rng.shuffle(pool)
            for _ in range(rng.choice((difficulty - 2, difficulty - 1, difficulty - 1))):
                (a, a_tree), (b, b_tree) = pool.pop(), pool.pop()
                op, left, right, value = rng.choice(moves(a, b))
                pool.append((value, (op, a_tree, b_tree) if left == a else (op, b_tree, a_tree)))
                rng.shuffle(pool)
            target = next(value for value, tree in pool if not isinstance(tree, int))
            if 10 <= target <= 999 and not _needs_fewer(numbers, target):
                return self._problem(target, numbers)

    def _problem(self, target, numbers):
        """The canonical answer is the solver's solution (the one its trace arrives at)."""
        path = _search(target, [(n, n) for n in numbers])
        if path is None:
            raise ValueError(f"countdown: {target} cannot be made from {_listed(numbers)}")
        return Problem(self.name, len(numbers),
                       f"Make {target} from the numbers {_listed(numbers)}. Use each number at most once, with "
                       "+ - * / and parentheses.", expressions.text(path[-1]), (target, tuple(numbers)))

    def parse(self, question):
        target, listed = match(_QUESTION, question, self.name).groups()
        return self._problem(int(target), [int(n) for n in listed.split(",")])

    def key(self, problem):
        target, numbers = problem.data
        return target, tuple(sorted(numbers))

    def is_correct(self, problem, answer):
        return self._valid(problem, answer) is not None

    def _valid(self, problem, answer):
        """The tree of a correct answer (``= target`` at the end allowed), None otherwise."""
        target, numbers = problem.data
        text = answer.strip().rstrip(".")
        if "=" in text:
            text, result = text.rsplit("=", 1)
            if result.strip() != str(target):
                return None
        try:
            tree = expressions.parse(text)
            value = expressions.evaluate(tree)
        except (ValueError, ZeroDivisionError):
            return None
        used = Counter(expressions.numbers(tree))
        return tree if value == target and not used - Counter(numbers) else None

    def same_answer(self, problem, first, second):
        trees = [self._valid(problem, answer) for answer in (first, second)]
        return None not in trees and Counter(expressions.numbers(trees[0])) == Counter(expressions.numbers(trees[1]))

    def stated_answer(self, thinking):
        """The expression on the thinking's last line that ends in ``= target``, after any label."""
        lines = [line for line in thinking.split("\n") if "=" in line]
        if not lines:
            return None
        return lines[-1].rsplit("=", 1)[0].split(":")[-1].strip()

    def restated(self, problem):
        return f"Solution: {problem.answer} = {problem.data[0]}"

    def summary(self, problem):
        return f"{problem.answer} = {problem.data[0]}, using each number at most once."

    def min_steps(self, problem):
        return len(problem.data[1]) - 1

    def solve(self, problem):
        target, numbers = problem.data
        return list(_trace(target, numbers)[0])

    def gives_up(self, problem):
        return _trace(*problem.data)[1]

    def given_up(self, problem):
        target, numbers = problem.data
        return (f"I could not make {target} from {_listed(numbers)}: my search stopped at its {_DEAD_ENDS} dead "
                "ends before it found a way.\n\n\\boxed{none found}")

    def check(self, problem):
        """The numbers the answer uses, and its value worked out again operation by operation (not the target
        restated: a check that cannot fail teaches nothing)."""
        target, numbers = problem.data
        tree = expressions.parse(problem.answer)
        used, steps = expressions.numbers(tree), []
        while not isinstance(tree, int):
            tree, (left, op, right, value) = expressions.reduce_once(tree)
            steps.append(f"{left} {op} {right} = {value}")
        value = ", ".join(steps) if steps else f"its value is {target}"
        return f"Check: {problem.answer} uses {_listed(used)}, each given; {value}. Correct."


@functools.lru_cache(maxsize=10_000)
def _trace(target: int, numbers: tuple) -> tuple[tuple, bool]:
    """(the trace's lines, whether its search stopped at the budget before a solution)."""
    lines = [f"Target {target} from {_listed(numbers)}. Search: combine two numbers, promising moves first; "
             "back up at a dead end."]
    try:
        _search(target, [(n, n) for n in numbers], _Budget(_DEAD_ENDS), lines)
        return tuple(lines), False
    except _BudgetSpent:
        lines.append(f"No {target} within {_DEAD_ENDS} dead ends: the search stops here.")
        return tuple(lines), True


@dataclass
class _Budget:
    """The dead ends a trace may still show (``left``) and those it has closed (``closed``: their numbers)."""
    left: int
    closed: int = 0


class _BudgetSpent(Exception):
    """The trace's search met a dead end past its budget."""


def _needs_fewer(numbers, target) -> bool:
    """Whether ``target`` can be made from ``len(numbers) - 2`` of them: then the problem is easier than its
    knob says (a 5-number problem must need at least 4 numbers)."""
    return any(solvable(tuple(sorted(subset)), target)
               for subset in itertools.combinations(numbers, max(1, len(numbers) - 2)))


def _moves_closest_first(target, state):
    """Every move from ``state`` (``(value, tree)`` pairs) as ``(op, left, right, value, tree, rest)``, the result
    closest to the target first."""
    candidates, seen = [], set()
    for i in range(len(state)):
        for j in range(i + 1, len(state)):
            rest = state[:i] + state[i + 1:j] + state[j + 1:]
            (a, a_tree), (b, b_tree) = state[i], state[j]
            for op, left, right, value in moves(a, b):
                if (op, left, right) in seen:  # an equal number's same move: the same state again
                    continue
                seen.add((op, left, right))
                tree = (op, a_tree, b_tree) if left == a else (op, b_tree, a_tree)
                candidates.append((abs(value - target), len(candidates), (op, left, right, value, tree, rest)))
    return [move for *_, move in sorted(candidates)]


def _search(target, state, budget: _Budget | None = None, lines=None, at_start=True):
    """Depth-first search from ``state`` (``(value, tree)`` pairs), moves closest to the target first. Returns
    the moves' trees down to the solution (last one = the answer), None if there is none. With ``lines``, writes
    the trace: each move into a state that cannot reach the target is shown against ``budget`` (one line per
    dead end, a state of two numbers with all its results, a larger one tried a little and given up, see
    ``_show_dead_end``); a dead end met once the budget is spent raises ``_BudgetSpent``."""
    values = [value for value, _ in state]
    if not solvable(tuple(sorted(values)), target):
        return None
    if target in values:  # only at the start: a move that makes the target stops the search
        if lines is not None:
            lines.append(f"{target} is one of the numbers. Found it.")
        return [target]
    if len(state) == 2:
        return _last_pair(target, state, lines)
    tried = [] if at_start else None  # the moves from the start shown as dead ends, named at each back-up there
    for op, left, right, value, tree, rest in _moves_closest_first(target, state):
        after = rest + [(value, tree)]
        if value != target and not solvable(tuple(sorted(v for v, _ in after)), target):
            if lines is not None:
                if budget.left == 0:
                    raise _BudgetSpent
                _show_dead_end(target, values, (left, op, right, value), after, budget, lines, tried)
            continue
        if lines is not None:
            done = ". Found it." if value == target else f", left {_listed(v for v, _ in after)}"
            lines.append(Step(f"{_listed(values)}: ", shown(op, left, right), value, done))
        if value == target:
            return [tree]
        path = _search(target, after, budget, lines, at_start=False)
        if path is not None:
            return [tree] + path
    return None


def _last_pair(target, state, lines):
    """The move's tree that makes ``target`` from the last two numbers (their state can reach it). The trace
    writes the pair's results in their fixed order up to the target's, as a dead end's pair line writes them
    all: in closest-first order the target's move came first, and the model learned to write the target as the
    last pair's result whatever the pair made (``117 * 2 = 183. Found it.``)."""
    (a, a_tree), (b, b_tree) = state
    tried = ""
    for op, left, right, value in moves(a, b):
        if value == target:
            if lines is not None:
                lines.append(Step(f"{_listed([a, b])}: {tried}", shown(op, left, right), value, ". Found it."))
            return [(op, a_tree, b_tree) if left == a else (op, b_tree, a_tree)]
        tried += pair_result(op, left, right, value, target) + ", "
    raise AssertionError(f"{a}, {b} cannot make {target}: the state was checked solvable")


def _show_dead_end(target, values, move, after, budget, lines, tried):
    """The lines of ``move`` (``(left, op, right, value)``) from ``values`` into ``after``, a state that cannot
    reach the target: with two numbers left, one line with every result of the pair; with more, the move's line,
    then its ``_TRIES_IN_A_DEAD_END`` most promising moves (each a dead end in turn, while the budget lasts), then
    giving it up. The line that closes a dead end numbers it (``_counted``). Giving up a state back to the start
    names every move tried from the start (``tried``, this one added; None below the start): the model, with no
    list of what it had tried, made its first move again after backing up to the start and went round. A pair's
    line needs no list (its few results are on it)."""
    budget.left -= 1
    made, result = " ".join(map(str, move[:3])), move[3]
    if tried is not None:
        tried.append(made)
    work, left = shown(move[1], move[0], move[2]), [value for value, _ in after]
    if len(left) == 2:
        pair = ", ".join(pair_result(o, a, b, v, target) for o, a, b, v in moves(*left))
        lines.append(f"{_listed(values)}: {work} = {result}, left {_listed(left)}: {pair}; no {target}"
                     f"{_counted(budget)}. Back to {_listed(values)}.")
        return
    lines.append(f"{_listed(values)}: {work} = {result}, left {_listed(left)}")
    for op, a, b, value, _, rest in _moves_closest_first(target, after)[:_TRIES_IN_A_DEAD_END]:
        if budget.left <= 0:
            break
        _show_dead_end(target, left, (a, op, b, value), rest + [(value, None)], budget, lines, None)
    named = "" if tried is None else f"; tried {_listed(tried)}"
    lines.append(f"Give up on {_listed(left)}{_counted(budget)}. Back to {_listed(values)}{named}.")


def _counted(budget: _Budget) -> str:
    """The number of the dead end being closed, against the budget (`` (dead end 2 of 6)``): the model sees when
    its search must stop (session 26: without it, the model searched on past the budget and went round)."""
    budget.closed += 1
    return f" (dead end {budget.closed} of {_DEAD_ENDS})"
