"""``add`` (addition and subtraction, column by column) and ``mul`` (long multiplication)."""
from .family import Family, Problem, Step, match, random_number

_NUMBER_PAIR = r"What is\s+(\d+)\s*([{ops}])\s*(\d+)\s*\?"


def _digits_left(number: str, used: int) -> str:
    """The operand with its ``used`` rightmost digits consumed (0 once nothing is left)."""
    return number[:len(number) - used] or "0"


class Add(Family):
    """Knob: digits of the longer operand (1 to 10); the other has 1 to that many. ``+`` or ``-`` (the
    difference may be negative)."""
    name = "add"
    difficulties = range(1, 11)
    example = "What is 48213 + 9377?"

    def generate(self, rng, difficulty):
        a, b = random_number(rng, difficulty), random_number(rng, rng.randint(1, difficulty))
        if rng.random() < 0.5:
            a, b = b, a
        return self._problem(a, rng.choice("+-"), b)

    def _problem(self, a, op, b):
        answer = a + b if op == "+" else a - b
        return Problem(self.name, max(len(str(a)), len(str(b))), f"What is {a} {op} {b}?", str(answer),
                       (a, op, b))

    def parse(self, question):
        a, op, b = match(_NUMBER_PAIR.format(ops="+-"), question, self.name).groups()
        return self._problem(int(a), op, int(b))

    def key(self, problem):
        a, op, b = problem.data
        return (min(a, b), op, max(a, b)) if op == "+" else problem.data

    def restated(self, problem):
        a, op, b = problem.data
        return f"{a} {op} {b} = {problem.answer}"

    def min_steps(self, problem):
        return (problem.difficulty + 1) // 2

    def solve(self, problem):
        a, op, b = problem.data
        if op == "+":
            return [f"{a} + {b}: add the columns from the right."] + column_sum(str(a), str(b))
        if a >= b:
            return [f"{a} - {b}: subtract the columns from the right."] + column_difference(str(a), str(b))
        return [f"{a} < {b}, so {a} - {b} = -({b} - {a}). Subtract the columns from the right."] + \
            column_difference(str(b), str(a))

    def check(self, problem):
        a, op, b = problem.data
        return f"Check: {problem.answer} {'-' if op == '+' else '+'} {b} = {a}. Correct."


def column_sum(a: str, b: str) -> list:
    """Column addition, one line per column restating the digits left, the carry and the result so far."""
    lines, carry, written = [], 0, ""
    for used in range(max(len(a), len(b))):
        da = int(a[-1 - used]) if used < len(a) else 0
        db = int(b[-1 - used]) if used < len(b) else 0
        total = da + db + carry
        written = str(total % 10) + written
        lines.append(Step(f"{_digits_left(a, used)} + {_digits_left(b, used)}, carry {carry}: ",
                          f"{da} + {db} + {carry}", total, f", write {total % 10}, carry {total // 10}, "
                                                           f"so far {written}"))
        carry = total // 10
    if carry:
        lines.append(f"Last carry {carry} in front: {carry}{written}")
    return lines


def column_difference(a: str, b: str) -> list:
    """Column subtraction ``a - b`` (a >= b), one line per column with the borrow and the result so far."""
    lines, borrow, written = [], 0, ""
    for used in range(len(a)):
        da = int(a[-1 - used])
        db = int(b[-1 - used]) if used < len(b) else 0
        state = f"{_digits_left(a, used)} - {_digits_left(b, used)}, borrow {borrow}: "
        if da - db - borrow >= 0:
            digit, work, next_borrow = da - db - borrow, f"{da} - {db} - {borrow}", 0
        else:
            digit, work, next_borrow = 10 + da - db - borrow, f"10 + {da} - {db} - {borrow}", 1
        written = str(digit) + written
        lines.append(Step(state, work, digit, f", write {digit}, borrow {next_borrow}, so far {written}"))
        borrow = next_borrow
    if written.lstrip("0") != written and len(written) > 1:
        lines.append(f"Without the leading zeros: {written.lstrip('0') or '0'}")
    return lines


class Mul(Family):
    """Knob: digits of each factor, 1 (1x1) to 5 (5x5); a parsed question's difficulty is its longer factor."""
    name = "mul"
    difficulties = range(1, 6)
    example = "What is 347 * 86?"

    def generate(self, rng, difficulty):
        return self._problem(random_number(rng, difficulty, 1), random_number(rng, difficulty, 1))

    def _problem(self, a, b):
        return Problem(self.name, max(len(str(a)), len(str(b))), f"What is {a} * {b}?", str(a * b), (a, b))

    def parse(self, question):
        a, _, b = match(_NUMBER_PAIR.format(ops=r"*"), question, self.name).groups()
        return self._problem(int(a), int(b))

    def key(self, problem):
        return tuple(sorted(problem.data))

    def restated(self, problem):
        a, b = problem.data
        return f"{a} * {b} = {problem.answer}"

    def min_steps(self, problem):
        return len(str(problem.data[1]))

    def solve(self, problem):
        a, b = problem.data
        lines, total = [f"{a} * {b}: one partial product per digit of {b}, from the right."], 0
        done = set()
        for place, digit in enumerate(reversed(str(b))):
            partial = a * int(digit)
            if digit == "0":
                lines.append(f"Digit 0 in place {place + 1}: nothing to add")
                continue
            if digit in done:
                lines.append(f"{a} * {digit} = {partial}, as above")
            else:
                lines += digit_product(str(a), int(digit))
                done.add(digit)
            shifted = partial * 10 ** place
            lines.append(f"{a} * {digit}{'0' * place} = {shifted}")
            if total:
                lines.append(Step("Sum so far: ", f"{total} + {shifted}", total + shifted))
            total += shifted
        return lines

    def check(self, problem):
        a, b = problem.data
        if b == 0:
            return "Check: anything times 0 is 0. Correct."
        return f"Check: {problem.answer} / {b} = {a}. Correct."


def digit_product(a: str, digit: int) -> list:
    """``a * digit``, one line per digit of ``a`` with the carry and the result so far."""
    if digit in (0, 1):
        return []  # nothing to work out
    lines, carry, written = [], 0, ""
    for used in range(len(a)):
        product = int(a[-1 - used]) * digit + carry
        last = used == len(a) - 1
        written = (str(product) if last else str(product % 10)) + written
        rest = f", so far {written}" if last else f", write {product % 10}, carry {product // 10}, " \
                                                  f"so far {written}"
        lines.append(Step(f"{_digits_left(a, used)} * {digit}, carry {carry}: ", f"{a[-1 - used]} * {digit} + "
                          f"{carry}", product, rest))
        carry = product // 10
    return lines
