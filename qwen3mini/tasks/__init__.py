"""Verifiable tasks (paper §4.1's query-verifier pairs, synthesised): seeded generators, parsers of the exact
user questions, verifiers of replies, held-out test sets, the programmatic solvers' thinking traces, the
response filters and the pass@k / Wilson scores. Pure Python: nothing here needs a model.

    family.py       Problem, Step, the Family interface, problem_hash
    answers.py      the last \\boxed{} of a reply, integer and list answers
    expressions.py  integer expressions: parse, evaluate, print (expr questions, countdown replies)
    arithmetic.py   add (and subtract), mul
    algebra.py      expr, linear
    sort.py, countdown.py, chain.py
    verify.py       FAMILIES, parse_question, verify
    splits.py       test sets, held-out filtering of training streams
    traces.py       thinking traces (with planted, corrected slips) and the short answer
    filters.py      response filters
    metrics.py      pass@k, Wilson interval
    instructions.py instruction following: the 5 constraint sentences, rule checks, constrained solver replies
    knowledge.py    knowledge questions grounded in the corpus (train/data/knowledge/): loader, coverage metric
"""
from .family import Family, Problem, Step, problem_hash
from .verify import FAMILIES, family_of, parse_question, verify

__all__ = ["FAMILIES", "Family", "Problem", "Step", "family_of", "parse_question", "problem_hash", "verify"]
