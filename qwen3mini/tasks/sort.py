"""``sort``: sort a list of numbers in ascending order, by tens: each number into its group of ten (0 to 9, 10 to
19, ...), each group by selection, the groups joined.

Why not plain selection over the whole list: it rewrites the list that is left after every pick, so a list of n
numbers is copied about n²/2 times, and the shipped chat model's misses at 10 and 12 items were all copy errors
in those lists (bench/RESULTS.md, session 14). By tens, each number is copied a fixed few times and only a
group's few numbers are rewritten between picks. Each number's tens digit is written beside it first, where the
number's own digits are in view: the groups are then gathered by that digit, and the model's misses in grouping
(a one-digit 6 put with 60 to 69, a group for the digit 2 of a one-digit 2) had it to read off the number
inside the list.
"""
from .answers import parse_integer_list
from .family import Family, Problem, Step, match


def _listed(items) -> str:
    return ", ".join(map(str, items))


def _group_name(tens: int) -> str:
    return f"{10 * tens} to {10 * tens + 9}"


class Sort(Family):
    """Knob: the number of items, 3 to 20, each from 1 to 99 (repeats allowed)."""
    name = "sort"
    difficulties = range(3, 21)
    example = "Sort in ascending order: 42, 7, 19, 88, 3."

    def generate(self, rng, difficulty):
        return self._problem([rng.randint(1, 99) for _ in range(difficulty)])

    def _problem(self, items):
        return Problem(self.name, len(items), f"Sort in ascending order: {_listed(items)}.",
                       _listed(sorted(items)), tuple(items))

    def parse(self, question):
        listed = match(r"Sort in ascending order:\s*(-?\d+(?:\s*,\s*-?\d+)+)\s*\.", question, self.name).group(1)
        return self._problem([int(item) for item in listed.split(",")])

    def key(self, problem):
        return tuple(sorted(problem.data))  # the same numbers in another order are the same exercise

    def is_correct(self, problem, answer):
        return parse_integer_list(answer) == sorted(problem.data)

    def same_answer(self, problem, first, second):
        return parse_integer_list(first) is not None and parse_integer_list(first) == parse_integer_list(second)

    def stated_answer(self, thinking):
        at = thinking.rfind("Sorted:")
        return None if at == -1 else thinking[at + len("Sorted:"):].split("\n")[0].strip().rstrip(".")

    def restated(self, problem):
        return f"Sorted: {problem.answer}"

    def summary(self, problem):
        return f"In ascending order: {problem.answer}."

    def min_steps(self, problem):
        return (problem.difficulty + 1) // 2

    def solve(self, problem):
        groups = {}
        for item in problem.data:
            groups.setdefault(item // 10, []).append(item)   # in the given order
        tens = sorted(groups)
        lines = ["Group the numbers by tens, in their order, then sort each group and join the groups.",
                 "Tens digits: " + ", ".join(f"{item} ({item // 10})" for item in problem.data)]
        lines += [f"{_group_name(t)}: {_listed(groups[t])}" for t in tens]
        for t in tens:
            left, done = list(groups[t]), []
            while len(left) > 1:
                smallest = min(left)
                next_larger = min((item for item in left if item != smallest), default=None)
                lines.append(Step(f"{_group_name(t)}, left {_listed(left)}: ", "smallest", smallest,
                                  likely_slip=next_larger))
                left.remove(smallest)  # its first occurrence: the rest stay in their given order
                done.append(smallest)
            lines.append(f"{_group_name(t)} sorted: {_listed(done + left)}")
        return lines

    def check(self, problem):
        n = len(problem.data)
        return f"Check: {n} numbers in, {n} out, each at least the one before it. Correct."

