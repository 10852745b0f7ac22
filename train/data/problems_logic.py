"""Logic puzzles (solved by brute force, emitted only when the answer is unique) and word problems
for the S2 synthetic corpus; `Problem` and the number helpers are those of problems_math.py."""
from __future__ import annotations

import itertools
import math
import random
from fractions import Fraction

from .problems_math import Problem, _num


# --------------------------------------------------------------------------------------------------- logic

_NAMES = ["Alice", "Bob", "Carol", "Dave", "Erin", "Frank", "Grace", "Heidi", "Ivan", "Judy", "Mallory", "Oscar",
          "Peggy", "Rupert", "Sybil", "Trent", "Victor", "Walter"]


def _satisfies(order: tuple[str, ...], clue: tuple) -> bool:
    """Clues about a finishing order (index 0 = first): ('before', a, b), ('first', a), ('last', a),
    ('adjacent', a, b), ('not_first', a)."""
    kind, *who = clue
    pos = {name: i for i, name in enumerate(order)}
    if kind == "before":
        return pos[who[0]] < pos[who[1]]
    if kind == "first":
        return pos[who[0]] == 0
    if kind == "last":
        return pos[who[0]] == len(order) - 1
    if kind == "adjacent":
        return abs(pos[who[0]] - pos[who[1]]) == 1
    if kind == "not_first":
        return pos[who[0]] != 0
    raise ValueError(f"unknown clue kind {kind!r}")


_CLUE_TEXT = {"before": "{0} finished before {1}.", "first": "{0} finished first.", "last": "{0} finished last.",
              "adjacent": "{0} and {1} finished next to each other.", "not_first": "{0} did not finish first."}


def ordering_puzzle(rng: random.Random) -> Problem:
    """Race-order puzzle: add true clues until exactly one order satisfies them all (checked by brute force)."""
    names = rng.sample(_NAMES, rng.randint(3, 5))
    truth = tuple(rng.sample(names, len(names)))
    clues, candidates = [], list(itertools.permutations(names))
    while len(candidates) > 1:
        kind = rng.choice(["before", "before", "before", "adjacent", "first", "last", "not_first"])
        a, b = rng.sample(names, 2)
        clue = (kind, a, b) if kind in ("before", "adjacent") else (kind, a)
        if not _satisfies(truth, clue) or clue in clues:
            continue
        remaining = [o for o in candidates if _satisfies(o, clue)]
        if len(remaining) < len(candidates):
            clues.append(clue)
            candidates = remaining
    statements = " ".join(_CLUE_TEXT[c[0]].format(*c[1:]) for c in clues)
    question = f"{', '.join(names[:-1])} and {names[-1]} ran a race. {statements} In what order did they finish?"
    lines = [f"There are {math.factorial(len(names))} possible orders; each clue removes some of them."]
    left = list(itertools.permutations(names))
    for c in clues:
        left = [o for o in left if _satisfies(o, c)]
        lines.append(f"\"{_CLUE_TEXT[c[0]].format(*c[1:])}\" leaves {len(left)} possible order"
                     f"{'s' if len(left) != 1 else ''}.")
    lines.append(f"The only order consistent with every clue is {', '.join(truth)}.")
    return Problem("ordering_puzzle", question, "\n".join(lines), ", ".join(truth),
                   {"names": names, "clues": [list(c) for c in clues], "order": list(truth)})


def _kk_value(statement: tuple, world: dict[str, bool]) -> bool:
    """Truth of a knights-and-knaves statement: ('knight', x), ('knave', x), ('same', x, y), ('different', x, y)."""
    kind, *who = statement
    if kind == "knight":
        return world[who[0]]
    if kind == "knave":
        return not world[who[0]]
    if kind == "same":
        return world[who[0]] == world[who[1]]
    if kind == "different":
        return world[who[0]] != world[who[1]]
    raise ValueError(f"unknown statement kind {kind!r}")


_KK_TEXT = {"knight": "{0} is a knight", "knave": "{0} is a knave", "same": "{0} and {1} are the same kind",
            "different": "{0} and {1} are different kinds"}


def knights_and_knaves(rng: random.Random) -> Problem:
    """Knights always tell the truth, knaves always lie. One statement per person; emitted only if the
    assignment consistent with all statements is unique."""
    while True:
        names = rng.sample(_NAMES, rng.randint(2, 3))
        said = {}
        for n in names:
            others = [m for m in names if m != n]
            kind = rng.choice(["knight", "knave", "same", "different"])
            said[n] = (kind, rng.choice(others)) if kind in ("knight", "knave") else (kind, n, rng.choice(others))
        worlds = [dict(zip(names, bits)) for bits in itertools.product([True, False], repeat=len(names))]
        consistent = [w for w in worlds if all(_kk_value(said[n], w) == w[n] for n in names)]
        if len(consistent) == 1:
            break
    world = consistent[0]
    statements = " ".join(f"{n} says: \"{_KK_TEXT[said[n][0]].format(*said[n][1:])}.\"" for n in names)
    question = f"On an island, knights always tell the truth and knaves always lie. {statements} Who is a knight and who is a knave?"
    lines = [f"Try all {len(worlds)} assignments; a person's statement must be true exactly when that person is a knight."]
    for w in worlds:
        desc = ", ".join(f"{n} {'knight' if w[n] else 'knave'}" for n in names)
        bad = [n for n in names if _kk_value(said[n], w) != w[n]]
        lines.append(f"{desc}: " + ("consistent." if not bad else f"fails, because of what {bad[0]} says."))
    answer = ", ".join(f"{n} is a {'knight' if world[n] else 'knave'}" for n in names)
    return Problem("knights_and_knaves", question, "\n".join(lines), answer,
                   {"names": names, "said": {n: list(s) for n, s in said.items()}, "world": world})


# ------------------------------------------------------------------------------------------ word problems


def word_problem(rng: random.Random) -> Problem:
    name = rng.choice(_NAMES)
    items, price = rng.choice([("notebooks", 3), ("pencils", 1), ("apples", 2), ("tickets", 12), ("books", 15),
                               ("coffees", 4), ("bus passes", 25)])
    n, m = rng.randint(2, 12), rng.randint(1, 9)
    budget = price * (n + m) + rng.randint(0, 50)
    cost_n, cost_m = price * n, price * m
    lines = [f"The first purchase costs {n} × {price} = {cost_n} dollars.",
             f"The second purchase costs {m} × {price} = {cost_m} dollars.",
             f"Together: {cost_n} + {cost_m} = {cost_n + cost_m} dollars.",
             f"Money left: {budget} - {cost_n + cost_m} = {budget - cost_n - cost_m} dollars."]
    question = (f"{name} has {budget} dollars and buys {n} {items} at {price} dollars each, then {m} more. "
                f"How much money does {name} have left?")
    return Problem("word_problem", question, "\n".join(lines), f"{budget - cost_n - cost_m} dollars",
                   {"budget": budget, "price": price, "n": n, "m": m})


def average(rng: random.Random) -> Problem:
    values = [rng.randint(0, 100) for _ in range(rng.randint(3, 8))]
    total = sum(values)
    mean = Fraction(total, len(values))
    lines = [f"Add the values: {' + '.join(map(str, values))} = {total}",
             f"Divide by the number of values: {total} ÷ {len(values)} = {_num(mean)}" if "/" not in _num(mean)
             else f"Divide by the number of values: {total} ÷ {len(values)} ≈ {float(mean):.2f}"]
    answer = _num(mean) if "/" not in _num(mean) else f"about {float(mean):.2f}"
    return Problem("average", f"What is the mean of {', '.join(map(str, values))}?", "\n".join(lines), answer,
                   {"values": values})


def rectangle(rng: random.Random) -> Problem:
    w, h = rng.randint(2, 60), rng.randint(2, 60)
    lines = [f"Area = width × height: {w} × {h} = {w * h}",
             f"Perimeter = 2 × (width + height): 2 × ({w} + {h}) = {2 * (w + h)}"]
    return Problem("rectangle", f"A rectangle is {w} cm wide and {h} cm tall. Find its area and perimeter.",
                   "\n".join(lines), f"area {w * h} square centimetres, perimeter {2 * (w + h)} cm",
                   {"w": w, "h": h})
