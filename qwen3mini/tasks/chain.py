"""``chain``: chained-quantity word problems (iGSM-style): each person's count is stated from an earlier one's,
and the question asks for the last. Every statement is needed, so the difficulty is the chain's length."""
import re

from .family import Family, Problem, Step, match

NAMES = ("Anna", "Ben", "Carl", "Dana", "Eli", "Fay", "Gus", "Hana", "Ivan", "Jill")
ITEMS = ("apples", "books", "coins", "marbles", "stamps", "shells", "pencils", "cards")
_MAX_COUNT = 1000
# A relation: (kind, earlier person, number, other earlier person or ""); its sentence and its value:
_SENTENCE = {"more": "{p} has {k} more {items} than {q}.", "fewer": "{p} has {k} fewer {items} than {q}.",
             "times": "{p} has {k} times as many {items} as {q}.",
             "together": "{p} has as many {items} as {q} and {r} together."}
_SENTENCE_PATTERNS = {
    "more": r"(\w+) has (\d+) more (\w+) than (\w+)", "fewer": r"(\w+) has (\d+) fewer (\w+) than (\w+)",
    "times": r"(\w+) has (\d+) times as many (\w+) as (\w+)",
    "together": r"(\w+) has as many (\w+) as (\w+) and (\w+) together"}
_WORK = {"more": "{q} + {k}", "fewer": "{q} - {k}", "times": "{q} * {k}", "together": "{q} + {r}"}


def _value(kind, q, k, r):
    return {"more": q + k, "fewer": q - k, "times": q * k, "together": q + r}[kind]


def _counts(first, first_count, relations) -> dict:
    """Every person's count, in the order stated."""
    counts = {first: first_count}
    for person, kind, q, k, r in relations:
        counts[person] = _value(kind, counts[q], k, counts.get(r, 0))
    return counts


def _asked(problem) -> str:
    _, first, _, relations = problem.data
    return relations[-1][0] if relations else first


class Chain(Family):
    """Knob: steps, the number of derived counts, 1 to 8 (the first count is given)."""
    name = "chain"
    difficulties = range(1, 9)
    example = "Anna has 12 apples. Ben has 3 times as many apples as Anna. How many apples does Ben have?"

    def generate(self, rng, difficulty):
        names, items = rng.sample(NAMES, difficulty + 1), rng.choice(ITEMS)
        counts, relations = {names[0]: rng.randint(2, 20)}, []
        for i, person in enumerate(names[1:], 1):
            q = names[i - 1]  # the previous person, so every statement is on the way to the answer
            choices = [("more", rng.randint(1, 20), ""), ("together", 0, rng.choice(names[:i - 1] or [q]))]
            if counts[q] > 1:
                choices.append(("fewer", rng.randint(1, counts[q] - 1), ""))
            if counts[q] * 2 <= _MAX_COUNT:
                choices.append(("times", rng.randint(2, min(5, _MAX_COUNT // counts[q])), ""))
            kind, k, r = rng.choice(choices)
            if kind == "together" and r == q:
                kind, k, r = "more", rng.randint(1, 20), ""
            counts[person] = _value(kind, counts[q], k, counts.get(r, 0))
            relations.append((person, kind, q, k, r))
        return self._problem(items, names[0], counts[names[0]], tuple(relations))

    def _problem(self, items, first, first_count, relations):
        known = {first}
        sentences = [f"{first} has {first_count} {items}."]
        for person, kind, q, k, r in relations:
            if person in known or q not in known or (r and r not in known):
                raise ValueError(f"chain: {person}'s count must be stated once, from earlier counts")
            known.add(person)
            sentences.append(_SENTENCE[kind].format(p=person, k=k, items=items, q=q, r=r))
        asked = relations[-1][0] if relations else first
        question = " ".join(sentences) + f" How many {items} does {asked} have?"
        return Problem(self.name, len(relations), question, str(_counts(first, first_count, relations)[asked]),
                       (items, first, first_count, relations))

    def parse(self, question):
        body, items, asked = match(r"(.+?)\s*How many (\w+) does (\w+) have\?", question, self.name).groups()
        sentences = [s.strip() for s in re.split(r"\.\s*", body) if s.strip()]
        first, count, first_items = match(r"(\w+) has (\d+) (\w+)", sentences[0], self.name).groups()
        relations = []
        for sentence in sentences[1:]:
            for kind, pattern in _SENTENCE_PATTERNS.items():
                found = re.fullmatch(pattern, sentence)
                if found:
                    break
            else:
                raise ValueError(f"chain: cannot read {sentence!r}")
            if kind == "together":
                person, its_items, q, r = found.groups()
                k = 0
            else:
                person, k, its_items, q = found.groups()
                k, r = int(k), ""
            if its_items != items or first_items != items:
                raise ValueError(f"chain: the question mixes {first_items} and {its_items}")
            relations.append((person, kind, q, k, r))
        problem = self._problem(items, first, int(count), tuple(relations))
        if (relations[-1][0] if relations else first) != asked:
            raise ValueError(f"chain: the question asks for {asked}, not the last count stated")
        return problem

    def restated(self, problem):
        return f"{_asked(problem)} = {problem.answer}"

    def summary(self, problem):
        return f"{_asked(problem)} has {problem.answer} {problem.data[0]}."

    def min_steps(self, problem):
        return problem.difficulty

    def solve(self, problem):
        items, first, first_count, relations = problem.data
        counts = _counts(first, first_count, relations)
        lines = [f"Work down the chain, keeping every count. {first} = {first_count}"]
        for done, (person, kind, q, k, r) in enumerate(relations, 2):
            formula = _WORK[kind].format(q=q, k=k, r=r)
            known = ", ".join(f"{name} {count}" for name, count in list(counts.items())[:done])
            lines.append(Step(f"{person} = {formula} = ", _WORK[kind].format(q=counts[q], k=k, r=counts.get(r)),
                              counts[person], f"; known: {known}"))
        return lines

    def check(self, problem):
        items, first, first_count, relations = problem.data
        if not relations:
            return f"Check: {first} was given as {first_count}. Correct."
        counts = _counts(first, first_count, relations)
        person, kind, q, k, r = relations[-1]
        back = {"more": f"{counts[person]} - {k}", "fewer": f"{counts[person]} + {k}",
                "times": f"{counts[person]} / {k}", "together": f"{counts[person]} - {counts.get(r)}"}[kind]
        return f"Check the last step backwards: {back} = {counts[q]}, {q}'s count. Correct."
