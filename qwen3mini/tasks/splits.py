"""Fixed, seeded test sets per family and difficulty, and training generators that never yield a test item.

Items are compared by ``problem_hash`` (the family's canonical key: ``3 + 5`` and ``5 + 3`` are one item), so
a training stream filtered by the test hashes holds no test item in any order. A test set is drawn from a
seed made of its family and difficulty only, so it is the same on every machine and for every stage.
"""
import random
from collections.abc import Iterator

from .family import Problem, problem_hash
from .verify import FAMILIES, family_of

TEST_SIZE = 50
_MAX_REJECTED = 1000  # consecutive held-out draws before a training stream gives up (space exhausted)


def evaluation_set(family: str, difficulty: int, size: int = TEST_SIZE) -> list[Problem]:
    """``size`` draws, duplicates dropped (a small space, like 1-digit addition, gives fewer items)."""
    rng = random.Random(f"test|{family}|{difficulty}")  # str seeds are hashed with SHA-512: stable everywhere
    seen, items = set(), []
    for _ in range(size):
        problem = FAMILIES[family].generate(rng, difficulty)
        digest = problem_hash(FAMILIES[family], problem)
        if digest not in seen:
            seen.add(digest)
            items.append(problem)
    return items


def evaluation_sets(size: int = TEST_SIZE) -> dict[tuple[str, int], list[Problem]]:
    """Every family at every difficulty."""
    return {(name, difficulty): evaluation_set(name, difficulty, size)
            for name, family in FAMILIES.items() for difficulty in family.difficulties}


def held_out(sets) -> frozenset[str]:
    """The hashes of every problem in ``sets`` (an iterable of lists of problems)."""
    return frozenset(problem_hash(family_of(p), p) for problems in sets for p in problems)


def training_problems(family: str, difficulty: int, rng: random.Random,
                      exclude: frozenset[str]) -> Iterator[Problem]:
    """An endless stream of problems whose hashes are not in ``exclude``."""
    rejected = 0
    while True:
        problem = FAMILIES[family].generate_for_training(rng, difficulty)
        if problem_hash(FAMILIES[family], problem) in exclude:
            rejected += 1
            if rejected == _MAX_REJECTED:
                raise ValueError(f"tasks: {family} at difficulty {difficulty} has no problems left outside "
                                 "the held-out set")
            continue
        rejected = 0
        yield problem
