"""``add`` (addition and subtraction, column by column) and ``mul`` (long multiplication)."""
from .expressions import signed
from .family import Family, Problem, Step, match, random_number

_NUMBER_PAIR = r"What is\s+(\d+)\s*([{ops}])\s*(\d+)\s*\?"


def _digits_left(number: str, used: int) -> str:
    """The operand with its ``used`` rightmost digits consumed (0 once nothing is left)."""
    return number[:max(0, len(number) - used)] or "0"


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
        # The sign is decided on the page, by a comparison read off the digits: with the sign left implicit
        # the model subtracted below zero by borrowing from nothing (7 - 8 = 9) or the wrong way round when
        # two numbers had the same length.
        if a >= b:
            return [f"{a} - {b}: {comparison(a, b)}, so subtract the columns from the right."] + \
                column_difference(str(a), str(b))
        return [f"{a} - {b}: {comparison(a, b)}, so {a} - {b} = -({b} - {a}). Subtract the columns from the right."] + \
            column_difference(str(b), str(a))

    def check(self, problem):
        a, op, b = problem.data
        return f"Check: {problem.answer} {'-' if op == '+' else '+'} {b} = {a}. Correct."


def comparison(a: int, b: int) -> str:
    """Which of two numbers (at least 0) is larger, as one reads it off: the count of digits first, then the
    first digit from the left where they differ, and the relation last, drawn from them: ``5 digits each, from
    the left 8 = 8, 5 > 0, so 85624 > 80381``. (With the relation first, the model wrote it before looking and
    then digits to fit: ``73695 < 54273 (5 digits each; from the left 7 < 5)``.) Two one-digit numbers say so
    too, and equal ones are called equal: a bare ``5 = 5, so subtract the columns from the right`` at the start
    of a one-digit trace came back in non-thinking replies as ``5 * 9 = 45, so subtract the columns ...``."""
    sa, sb = str(a), str(b)
    relation = f"{a} {'<' if a < b else '>'} {b}"
    if len(sa) != len(sb):
        return f"{len(sa)} digit{'s' * (len(sa) > 1)} against {len(sb)}, so {relation}"
    if a == b:
        return "the same digits, so the two are equal"
    if len(sa) == 1:
        return f"1 digit each, so {relation}"
    same = next(i for i in range(len(sa)) if sa[i] != sb[i])
    pairs = [f"{x} = {x}" for x in sa[:same]] + [f"{sa[same]} {'<' if sa[same] < sb[same] else '>'} {sb[same]}"]
    return f"{len(sa)} digits each, from the left {', '.join(pairs)}, so {relation}"


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

    def generate_for_training(self, rng, difficulty):
        """A fifth of the problems past 1x1 take a one-digit multiplier (``347 * 6``): the trace of a single
        partial product, the procedure of a 1x1 product, which the training data barely holds (the 1x1 test
        set takes nearly all of them)."""
        if difficulty > 1 and rng.random() < 0.2:
            return self._problem(random_number(rng, difficulty, 1), rng.randint(2, 9))
        return self.generate(rng, difficulty)

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
        return long_multiplication(*problem.data)

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


def long_multiplication(a: int, b: int) -> list:
    """``a * b`` (both >= 0): one partial product per digit of ``b``, each shifted into place and added to the
    sum so far (the sum's columns written out on the line before it). A digit met again is multiplied out
    again: a line ``a * digit = partial, as above`` had the model copy the nearest product line instead of the
    one for that digit (``160 * 779``: ``160 * 7 = 1440, as above``, from the line ``160 * 9 = 1440``). A
    multiplier of one digit three times (``888``) then copies a third of its lines, and the response filters'
    repetition rule drops the trace: the cold start holds no such product (under 1% of the 3x3 ones)."""
    lines, total = [f"{a} * {b}: one partial product per digit of {b}, from the right."], 0
    for place, digit in enumerate(reversed(str(b))):
        partial = a * int(digit)
        if digit == "0":
            lines.append(f"Digit 0 in place {place + 1}: nothing to add")
            continue
        lines += digit_product(str(a), int(digit))
        if place:
            lines.append(f"{a} * {digit} = {partial}")
        shifted = partial * 10 ** place
        lines.append(f"{a} * {digit}{'0' * place} = {shifted}")
        if total:
            lines.append(f"{total} + {shifted}: {columns_sum(total, shifted)}")
            lines.append(Step("Sum so far: ", f"{total} + {shifted}", total + shifted))
        total += shifted
    return lines


# The written work behind one operation inside a longer trace (expr's steps, linear's moves, mul's sum of partial
# products): a person works a sum, a difference or a product of several digits column by column, in one line. A
# line per column, as the add and mul families write their own operation, would make those traces several times
# longer.

def columns_sum(x: int, y: int) -> str:
    """``x + y`` (both >= 0), columns from the right: ``6+8=14, 1+1+1=3`` (a carry is the trailing ``+1``)."""
    a, b, carry, parts = str(x), str(y), 0, []
    for i in range(max(len(a), len(b))):
        digits = [int(n[-1 - i]) for n in (a, b) if i < len(n)] + ([carry] if carry else [])
        total = sum(digits)
        parts.append("+".join(map(str, digits)) + f"={total}" if len(digits) > 1 else str(total))
        carry = total // 10
    return ", ".join(parts)


def columns_difference(x: int, y: int) -> str:
    """``x - y`` (x >= y >= 0), columns from the right: ``14-9=5, 3-0-1=2`` (a borrow is the trailing ``-1``;
    a column that borrows is written with its 10 added)."""
    a, b, borrow, parts = str(x), str(y), 0, []
    for i in range(len(a)):
        top, below = int(a[-1 - i]), int(b[-1 - i]) if i < len(b) else 0
        if i >= len(b) and not borrow:
            parts.append(str(top))
            continue
        lend = 10 if top - borrow < below else 0
        parts.append(f"{top + lend}-{below}{'-1' if borrow else ''}={top + lend - below - borrow}")
        borrow = 1 if lend else 0
    return ", ".join(parts)


def columns_product(x: int, digit: int) -> str:
    """``x * digit`` (x >= 0, one digit), digits of ``x`` from the right: ``7*5=35, 8*5+3=43, 5*5+4=29``."""
    carry, parts = 0, []
    for d in reversed(str(x)):
        value = int(d) * digit + carry
        parts.append(f"{d}*{digit}{f'+{carry}' if carry else ''}={value}")
        carry = value // 10
    return ", ".join(parts)


def worked(a: int, op: str, b: int) -> list:
    """The work behind ``a op b`` (``+ - *``, integers of either sign) when it is more than a one-digit fact:
    the sign, then the magnitudes in columns. [] for a fact (one-digit operands, a 0, a factor 1)."""
    x, y = abs(a), abs(b)
    if x < 10 and y < 10 or not a or not b or op == "*" and 1 in (x, y):
        return []
    work = f"{signed(a)} {op} {signed(b)}"
    if op == "*":
        sign = f" = -({x} * {y})" if (a < 0) != (b < 0) else f" = {x} * {y}" if a < 0 else ""
        if min(x, y) < 10:
            return [f"{work}{sign}: {columns_product(max(x, y), min(x, y))}"]
        lines, total = [f"{work}{sign}: one partial product per digit of {y}, from the right."], 0
        for place, digit in enumerate(reversed(str(y))):
            if digit == "0":
                continue
            partial, shifted = x * int(digit), x * int(digit) * 10 ** place
            lines.append(f"{x} * {digit}: {columns_product(x, int(digit))}, so {partial}" if digit != "1" else
                         f"{x} * 1 = {x}")
            if place:
                lines.append(f"{x} * {digit}{'0' * place} = {shifted}")
            if total:
                lines.append(f"{total} + {shifted}: {columns_sum(total, shifted)}")
            total += shifted
        return lines
    right = b if op == "+" else -b           # a + right
    if (a > 0) == (right > 0):
        header = f"{work} = -({x} + {y})" if a < 0 else work if op == "+" else f"{work} = {x} + {y}"
        return [f"{header}: {columns_sum(x, y)}"]
    # A difference of magnitudes: its sign is decided on the page by their comparison, as the add family's
    # subtraction decides it (the model wrote 816 - 738 = -(738 - 816) and 13 - 12 = -9 when it was implicit).
    larger, smaller = max(x, y), min(x, y)
    if op == "-" and a >= b > 0:
        header = f"{work}: {comparison(a, b)}"
    elif x != y and (a < 0 if x > y else right < 0):
        header = f"{work}: {comparison(x, y)}, so {work} = -({larger} - {smaller})"
    else:
        header = f"{work}: {comparison(x, y)}, so {work} = {larger} - {smaller}"
    return [f"{header}: {columns_difference(larger, smaller)}"]


_PLACES = ("ones", "tens", "hundreds", "thousands")


def worked_division(n: int, d: int) -> list:
    """The work behind an exact division ``n / d`` (linear's last move): the sign, then one quotient digit per
    place, the largest first. Each digit is estimated from the leading digits (what is left at that place over
    the divisor's first digit, which never comes out too small), then the divisor times each digit tried is
    multiplied out and compared with what is left, from the estimate down to the first that is not more; its
    multiple is taken away. [] for a fact (a divisor of one digit and a quotient under 10). A person cannot see
    the right digit at once; a trace that wrote it down would teach a guess. And every digit tried, the one taken
    too, gets its product and its verdict on the page: with the product of the digit taken written only after
    it was taken, the model took the estimate whenever it was too large and wrote a product to fit
    (``133 / 19, ones: 13 / 1 gives 9``, then ``19 * 9 = 133``)."""
    x, y = abs(n), abs(d)
    if not n or y < 10 and x < 10 * y:
        return []
    quotient = x // y
    sign = f" = -({x} / {y})" if (n < 0) != (d < 0) else f" = {x} / {y}"
    lines = [f"{n} / {signed(d)}{sign}"] if n < 0 or d < 0 else []
    shift, lead = 10 ** (len(str(y)) - 1), int(str(y)[0])
    left, parts = x, []
    for place in reversed(range(len(str(quotient)))):
        if not left:
            break
        part = left // 10 ** place               # what is left, counted in this place's units
        digit, guess = part // y, min(9, part // shift // lead)
        name = _PLACES[place] if place < len(_PLACES) else f"10^{place}"
        estimate = f"{left} / {y}, {name}: {part // shift} / {lead} gives {guess}"
        for tried in range(guess, max(digit, 1) - 1, -1):
            product = f"{y} * {tried}: {columns_product(y, tried)}, so {y * tried}" if tried > 1 else f"{y} * 1 = {y}"
            verdict = f"more than {part}, so {tried - 1}" if tried > digit else f"not more than {part}"
            estimate += f"; {product}, {verdict}"
        lines.append(estimate)
        if not digit:
            continue
        multiple = y * digit * 10 ** place
        taken = f"{left} - {multiple}: {columns_difference(left, multiple)}, {left - multiple} left" \
            if multiple != left else "nothing left"
        lines.append(f"{x} / {y}: {y} * {digit}{'0' * place} = {multiple}; {taken}")
        left, parts = left - multiple, parts + [str(digit * 10 ** place)]
    if len(parts) > 1:
        lines.append(f"{x} / {y} = {' + '.join(parts)} = {quotient}")
    return lines
