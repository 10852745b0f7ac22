"""Synthetic reasoning text for S2, and passkey documents for the long-context evaluation.

Paper §3 (S2): "a larger share of STEM, code, reasoning and synthetic data". We cannot ask a large model to
write problems, so we generate them from templates, with worked, step-by-step solutions whose every number is
computed here: arithmetic (column addition and subtraction, long multiplication and division, order of
operations, fractions, percentages), algebra (linear equations, 2x2 systems, factorable quadratics), number
theory (Euclid's algorithm, prime factorisation, base 2), unit conversions, sequences, and logic (ordering
puzzles and knights-and-knaves, solved by brute force and only emitted when the answer is unique), plus short
"textbook" passages that explain a topic before its exercises. The generators live in problems_math.py and
problems_logic.py; this file assembles them into documents.

Each generator returns a `Problem`; `facts` holds its parameters in machine-readable form so tests can check
the answer independently of the text. Arithmetic in solutions is always written "expression = number" with
`×`, `÷`, `+`, `-`, so a test can re-evaluate every such equality. Everything is seeded: `corpus(n, seed)` is
a pure function of its arguments.

`passkey_document` builds the needle-in-a-haystack prompts (Mohtashami & Jaggi, 2023) used to evaluate S3 and
YaRN; it is evaluation data and never part of a training corpus.
"""
from __future__ import annotations

import random
from typing import Callable, Iterator

from .problems_logic import average, knights_and_knaves, ordering_puzzle, rectangle, word_problem
from .problems_math import (Problem, addition, arithmetic_series, division, fractions, gcd_euclid,
                            linear_equation, linear_system, multiplication, order_of_operations, percentage,
                            prime_factorisation, quadratic, subtraction, to_binary, unit_conversion)

DEFAULT_DOCS = 20_000



GENERATORS: dict[str, Callable[[random.Random], Problem]] = {
    "addition": addition, "subtraction": subtraction, "multiplication": multiplication, "division": division,
    "order_of_operations": order_of_operations, "fractions": fractions, "percentage": percentage,
    "linear_equation": linear_equation, "linear_system": linear_system, "quadratic": quadratic,
    "gcd": gcd_euclid, "prime_factorisation": prime_factorisation, "binary": to_binary,
    "arithmetic_series": arithmetic_series, "unit_conversion": unit_conversion, "ordering_puzzle": ordering_puzzle,
    "knights_and_knaves": knights_and_knaves, "word_problem": word_problem, "average": average,
    "rectangle": rectangle,
}

# ------------------------------------------------------------------------------------------ textbook text

# Short explanations that precede exercises of the same kind ("textbook" style, paper §3 synthetic data).
TEXTBOOK = {
    "addition": "Column addition adds numbers one place value at a time, starting from the ones. When a column "
                "adds up to ten or more, we write the last digit and carry the tens to the next column.",
    "subtraction": "Column subtraction works from the ones upward. When the top digit is smaller than the bottom "
                   "digit, we borrow ten from the next column, which then has one less.",
    "multiplication": "Long multiplication splits the second factor into its digits. Each digit, with its place "
                      "value, gives a partial product, and the partial products are added.",
    "division": "Dividing a by b means finding the quotient q and remainder r with a = b × q + r and r smaller "
                "than b. We always check the result by multiplying back.",
    "order_of_operations": "Inside an expression we first evaluate parentheses, innermost first, then "
                           "multiplications, then additions and subtractions from left to right.",
    "fractions": "To add or subtract fractions we rewrite them over a common denominator, preferably the least "
                 "common multiple of the denominators, then combine the numerators and simplify.",
    "percentage": "A percentage is a fraction with denominator 100. To take p percent of a number, multiply it "
                  "by p and divide by 100.",
    "linear_equation": "A linear equation stays true when we do the same thing to both sides. We isolate the "
                       "unknown by undoing additions first and multiplications second, then check the answer.",
    "linear_system": "Two linear equations in two unknowns can be solved by elimination: scale the equations so "
                     "that one unknown has the same coefficient in both, subtract, and solve for the other.",
    "quadratic": "A quadratic x² + px + q with integer roots factors as (x - r)(x - s), where r × s = q and "
                 "r + s = -p. The roots are the values that make a factor zero.",
    "gcd": "Euclid's algorithm rests on one fact: the common divisors of a and b are the common divisors of b "
           "and the remainder of a divided by b. Repeating the division shrinks the numbers until the "
           "remainder is zero.",
    "prime_factorisation": "Every whole number greater than one is a product of primes in exactly one way. "
                           "Trial division by 2, 3, 5, and so on finds the factors in increasing order.",
    "binary": "In base two each place is worth twice the place to its right. Repeated division by 2 gives the "
              "binary digits from the lowest to the highest.",
    "arithmetic_series": "In an arithmetic sequence consecutive terms differ by a fixed amount. Pairing the "
                         "first term with the last, the second with the second to last, and so on, shows that "
                         "the sum is the number of terms times the average of the first and last terms.",
    "unit_conversion": "To convert between units, express both in a common base unit; the ratio of the two "
                       "definitions is the conversion factor. Since 1959 the inch is exactly 2.54 cm and the "
                       "pound exactly 0.45359237 kg.",
    "ordering_puzzle": "An ordering puzzle can always be solved by listing all possible orders and striking out "
                       "those that contradict a clue. With n people there are n! orders.",
    "knights_and_knaves": "In a knights-and-knaves puzzle, a statement is true exactly when its speaker is a "
                          "knight. Testing every assignment of knight or knave finds the consistent ones.",
    "word_problem": "A word problem becomes arithmetic once we name the quantities: what is bought, how many, "
                    "at what price, and what is asked.",
    "average": "The arithmetic mean of a list of numbers is their sum divided by how many there are.",
    "rectangle": "The area of a rectangle is its width times its height; its perimeter is twice the sum of width "
                 "and height.",
}


def document(rng: random.Random) -> str:
    """One synthetic document: either a textbook section (explanation + exercises of one kind) or a mixed
    exercise set."""
    if rng.random() < 0.5:
        kind = rng.choice(sorted(GENERATORS))
        problems = [GENERATORS[kind](rng) for _ in range(rng.randint(3, 8))]
        title = kind.replace("_", " ").capitalize()
        head = f"# {title}\n\n{TEXTBOOK[kind]}\n\n## Worked examples"
    else:
        problems = [GENERATORS[rng.choice(sorted(GENERATORS))](rng) for _ in range(rng.randint(4, 10))]
        head = f"# Exercise set {rng.randint(1, 999)}"
    return head + "\n\n" + "\n\n".join(p.render() for p in problems)


def corpus_document(i: int, seed: int = 0) -> tuple[str, str]:
    """Synthetic document i as (doc_id, text); it depends only on (seed, i)."""
    return f"synthetic#{i:07d}", document(random.Random(f"qwen3mini-synthetic:{seed}:{i}"))


def corpus(n_docs: int, seed: int = 0) -> Iterator[tuple[str, str]]:
    """`n_docs` synthetic documents as (doc_id, text)."""
    return (corpus_document(i, seed) for i in range(n_docs))


# ------------------------------------------------------------------------------------ passkey (eval only)

_FILLER = ("The grass is green. The sky is blue. The sun is yellow. Here we go. There and back again. ")


def passkey_document(encode: Callable[[str], list[int]], n_tokens: int, depth: float, seed: int
                     ) -> tuple[str, str]:
    """A needle-in-a-haystack prompt of about `n_tokens` tokens (under `encode`) with a 5-digit pass key
    hidden at relative `depth` (0 = start, 1 = end). Returns (prompt, passkey); the model should continue
    the prompt with the pass key. Deterministic in `seed`."""
    if not 0.0 <= depth <= 1.0:
        raise ValueError(f"depth must be in [0, 1], got {depth}")
    key = str(random.Random(f"passkey:{seed}").randint(10000, 99999))
    head = "There is important information hidden inside a lot of irrelevant text. Find it and memorize it.\n\n"
    needle = f"The pass key is {key}. Remember it. {key} is the pass key. "
    tail = "\n\nWhat is the pass key? The pass key is"
    fixed = len(encode(head + needle + tail))
    per_filler = len(encode(_FILLER * 8)) / 8
    reps = max(0, int((n_tokens - fixed) / per_filler))
    before = round(reps * depth)
    prompt = head + _FILLER * before + needle + _FILLER * (reps - before) + tail
    return prompt, key
