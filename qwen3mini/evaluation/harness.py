"""Running an evaluation: the cells to measure, their replies through the one batched generation path
(``qwen3mini.chat.generate_replies``), and every figure as one JSON-ready dict.

A cell is (family, difficulty, mode, budget) over that family's fixed test set at that difficulty
(``tasks.splits.evaluation_set``). The mode is asked for by the chat template (``enable_thinking``) or, with
``switch="flags"``, by a ``/think`` or ``/no_think`` flag after the question (the template left in thinking
mode, paper §4.3). Every cell gets one greedy reply per item; with ``samples`` n, the cells
without a budget also get n sampled replies per item at the paper's settings for their mode (paper §4.6:
thinking T 0.6, top-p 0.95, top-k 20) for pass@k. The budget sweep repeats the thinking cells with each
finite thinking budget (greedy); the thinking cell itself is the sweep's "unlimited" point. Each phase is kept in a
``Journal`` once finished, so that an evaluation killed half-way resumes from there.
"""
import time
from dataclasses import asdict, dataclass, field

from ..chat import ChatTokens, generate_replies, render, sampling_settings
from ..generation import SamplingParams
from ..tasks import FAMILIES, Problem
from ..tasks.splits import evaluation_set
from . import thinkfollow
from .general import REPLY_TOKENS, evaluate_instructions, evaluate_knowledge, evaluate_tools, share
from .journal import Journal
from .scoring import Scored, score_reply, summarize

SCHEMA = "qwen3mini-evaluation/1"
MODES = ("think", "no-think")
BUDGETS = (0, 16, 32, 64, 128, 256, 512)   # finite thinking budgets of the sweep (tokens after <think>)
REPLY_SLACK = 256                          # a reply may run to twice the solver's reply plus this (see below)
EXAMPLE_CHARS = 600                        # of each greedy reply a cell keeps in the results (example, misses)
MISSES = 4                                 # wrong greedy replies a cell keeps


@dataclass
class Selection:
    """What to evaluate. difficulties None: every difficulty of each family; limit: items per cell (None:
    the whole test set); budgets: the finite budgets swept in thinking mode (needs "think" in modes);
    switch: how a mode is asked for, "template" (enable_thinking) or "flags" (/think, /no_think)."""
    families: list[str] = field(default_factory=lambda: list(FAMILIES))
    difficulties: list[int] | None = None
    modes: list[str] = field(default_factory=lambda: list(MODES))
    budgets: list[int] = field(default_factory=lambda: list(BUDGETS))
    samples: int = 0
    thinkfollow: int = 0
    instructions: int = 0               # items per constraint (general.py)
    knowledge: int = 0                  # test questions per kind
    tools: int = 0                      # products per size, with the calculator and without
    limit: int | None = None
    max_new_tokens: int = 3072
    batch_size: int = 256
    seed: int = 0
    switch: str = "template"

    def test_sets(self) -> dict[tuple[str, int], list[Problem]]:
        """The selected (family, difficulty) test sets, ``limit`` items each; ValueError naming a selection
        that matches nothing."""
        sets = {}
        for name in self.families:
            if name not in FAMILIES:
                raise ValueError(f"families: unknown family {name!r} (known: {', '.join(FAMILIES)})")
            levels = [d for d in FAMILIES[name].difficulties if self.difficulties is None or d in self.difficulties]
            if not levels:
                known = FAMILIES[name].difficulties
                raise ValueError(f"difficulties: none of {self.difficulties} exists for {name} "
                                 f"({known.start} to {known.stop - 1})")
            for difficulty in levels:
                sets[name, difficulty] = evaluation_set(name, difficulty)[:self.limit]
        return sets


@dataclass
class Cell:
    family: str
    difficulty: int
    mode: str
    budget: int | None
    problems: list[Problem]
    greedy: list = field(default_factory=list)      # Scored per item
    sampled: list = field(default_factory=list)     # per item, correct or not for each sample
    example: dict | None = None
    misses: list = field(default_factory=list)      # the first wrong greedy replies: where the errors come from

    def record(self) -> dict:
        return {"family": self.family, "difficulty": self.difficulty, "mode": self.mode, "budget": self.budget,
                **summarize(self.greedy, self.sampled or None), "example": self.example, "misses": self.misses}


class Run:
    """One evaluation of ``model`` (with ``tokenizer``): ``run()`` returns the results dict."""

    def __init__(self, model, tokenizer, selection: Selection, log=print, journal: Journal | None = None):
        self.model, self.tok, self.sel, self.log = model, tokenizer, selection, log
        self.journal = journal or Journal(None, {})
        self.ids = ChatTokens.of(tokenizer, model.config.eos_token_ids)
        self.context = model.config.max_position_embeddings
        self.requests = {}
        self.replies = self.tokens = 0
        self.seconds = 0.0

    def run(self) -> dict:
        sel, sets = self.sel, self.sel.test_sets()
        cells = [Cell(f, d, mode, None, problems) for mode in sel.modes for (f, d), problems in sets.items()]
        if "think" in sel.modes:
            cells += [Cell(f, d, "think", budget, problems)
                      for budget in sel.budgets for (f, d), problems in sets.items()]
        for mode, budget in dict.fromkeys((c.mode, c.budget) for c in cells):
            group = [c for c in cells if (c.mode, c.budget) == (mode, budget)]
            self.greedy(group, mode, budget)
            if sel.samples and budget is None:
                self.sample(group, mode)
        follow = None
        if sel.thinkfollow:
            lowest = {}                               # the easiest selected set of each family: short turns
            for (family, _), problems in sets.items():
                lowest.setdefault(family, problems)
            follow = self.phase("thinkfollow", lambda: self.think_follow(
                [p for problems in lowest.values() for p in problems]))
        cap = min(REPLY_TOKENS, sel.max_new_tokens)
        general = {name: self.phase(name, lambda evaluate=evaluate, count=count: evaluate(
                       self.model, self.tok, sel.modes, count, sel.batch_size, cap))
                   for name, evaluate, count in (("instructions", evaluate_instructions, sel.instructions),
                                                 ("knowledge", evaluate_knowledge, sel.knowledge),
                                                 ("tools", evaluate_tools, sel.tools)) if count}
        ended = {mode: share([s.self_ended and s.thinking_tokens + s.answer_tokens < REPLY_TOKENS for c in cells
                              if c.mode == mode and c.budget is None for s in c.greedy]) for mode in sel.modes}
        return {"schema": SCHEMA, "selection": asdict(sel), "general": general, "ended_within_1024": ended,
                "sampling": {mode: sampling_settings(mode) for mode in MODES},
                "reply_limit": f"min(max_new_tokens, max({REPLY_TOKENS}, 2 x the solver's reply + {REPLY_SLACK}), "
                               "what the context leaves)",
                "cells": [c.record() for c in cells], "thinkfollow": follow,
                "generation": {"replies": self.replies, "generated_tokens": self.tokens,
                               "seconds": self.seconds, "tokens_per_second": self.tokens / max(self.seconds, 1e-9)}}

    # ------------------------------------------------------------------------------------------ generation
    def phase(self, name: str, compute):
        """``compute()``'s JSON-ready result, taken from the journal when an earlier run finished this phase."""
        saved = self.journal.get(name)
        if saved is not None:
            replies, tokens, seconds = saved["generation"]
            self.replies, self.tokens, self.seconds = self.replies + replies, self.tokens + tokens, \
                self.seconds + seconds
            self.log(f"{name}: finished by an earlier run (its journal)")
            return saved["result"]
        before = self.replies, self.tokens, self.seconds
        result = compute()
        self.journal.record(name, {"result": result, "generation": [
            self.replies - before[0], self.tokens - before[1], self.seconds - before[2]]})
        return result

    def greedy(self, cells: list[Cell], mode: str, budget: int | None):
        states = self.phase(f"greedy {mode} {budget}", lambda: self.greedy_states(cells, mode, budget))
        for cell, state in zip(cells, states):
            cell.greedy = [Scored(**scored) for scored in state["greedy"]]
            cell.example, cell.misses = state["example"], state["misses"]

    def greedy_states(self, cells: list[Cell], mode: str, budget: int | None) -> list[dict]:
        """Per cell: its scored greedy replies, the example and the misses."""
        items = [(c, p) for c in cells for p in c.problems]
        prompts, limits = zip(*(self.request(p, mode) for _, p in items))
        replies = self.generate(prompts, limits, SamplingParams(temperature=0.0), budget,
                                f"{mode}, {'no' if budget is None else budget} budget, greedy")
        states = {id(c): {"greedy": [], "example": None, "misses": []} for c in cells}
        for (cell, problem), reply in zip(items, replies):
            state = states[id(cell)]
            scored = score_reply(problem, reply.text, reply.completion, self.ids)
            state["greedy"].append(asdict(scored))
            if state["example"] is None:
                state["example"] = {"question": problem.question, "reply": reply.text[:EXAMPLE_CHARS]}
            if len(state["misses"]) < MISSES and not scored.correct:
                state["misses"].append({"question": problem.question, "answer": problem.answer,
                                        "reply": reply.text[:EXAMPLE_CHARS]})
        return [states[id(c)] for c in cells]

    def sample(self, cells: list[Cell], mode: str):
        per_cell = self.phase(f"samples {mode}", lambda: self.sampled_states(cells, mode))
        for cell, sampled in zip(cells, per_cell):
            cell.sampled = sampled

    def sampled_states(self, cells: list[Cell], mode: str) -> list[list[list[bool]]]:
        """Per cell, per item: whether each of the n samples is right."""
        n = self.sel.samples
        items = [(c, p) for c in cells for p in c.problems]
        rows = [self.request(p, mode) for _, p in items for _ in range(n)]
        replies = self.generate([r[0] for r in rows], [r[1] for r in rows], sampling_settings(mode), None,
                                f"{mode}, {n} samples an item")
        per_cell = {id(c): [] for c in cells}
        for i, (cell, problem) in enumerate(items):
            per_cell[id(cell)].append([score_reply(problem, r.text, r.completion, self.ids).correct
                                       for r in replies[i * n:(i + 1) * n]])
        return [per_cell[id(c)] for c in cells]

    def think_follow(self, problems: list[Problem]) -> dict:
        dialogues = thinkfollow.make_dialogues(self.sel.thinkfollow, problems)
        prompts = [render(self.tok, d.messages, think=True) for d in dialogues]
        limits = [min(thinkfollow.REPLY_TOKENS, self.room(prompt)) for prompt in prompts]
        replies = self.generate(prompts, limits, SamplingParams(temperature=0.0), None, "ThinkFollow")
        return thinkfollow.score(dialogues, [r.text for r in replies])

    def generate(self, prompts, limits, sampling, budget, what) -> list:
        """Replies to ``prompts`` in batches of ``batch_size``, rows of similar length limits together (a batch
        runs until its longest row ends); returned in the order of ``prompts``. Sampled batches are seeded
        with the run's seed plus the batch number."""
        order = sorted(range(len(prompts)), key=lambda i: limits[i])
        replies, size = [None] * len(prompts), self.sel.batch_size
        start, tokens = time.perf_counter(), 0
        for batch, first in enumerate(range(0, len(order), size)):
            rows = order[first:first + size]
            params = dict(sampling, seed=self.sel.seed + batch) if isinstance(sampling, dict) else sampling
            done = generate_replies(self.model, self.tok, [prompts[i] for i in rows], [limits[i] for i in rows],
                                    params, thinking_budget=budget)
            for i, reply in zip(rows, done):
                replies[i] = reply
                tokens += reply.completion.generated_tokens
        seconds = time.perf_counter() - start
        self.replies += len(prompts)
        self.tokens += tokens
        self.seconds += seconds
        self.log(f"{what}: {len(prompts)} replies, {tokens} tokens in {seconds:.1f} s")
        return replies

    # ------------------------------------------------------------------------------------------ prompts
    def request(self, problem: Problem, mode: str) -> tuple[list[int], int]:
        """(prompt ids, length limit) of ``problem`` in ``mode``, made once (the budget sweep asks again)."""
        if (problem, mode) not in self.requests:
            prompt = self.prompt(problem, mode)
            self.requests[problem, mode] = prompt, self.limit(problem, mode, prompt)
        return self.requests[problem, mode]

    def prompt(self, problem: Problem, mode: str) -> list[int]:
        if self.sel.switch == "flags":
            return render(self.tok, [{"role": "user", "content": f"{problem.question} {thinkfollow.FLAGS[mode]}"}],
                          think=True)
        return render(self.tok, [{"role": "user", "content": problem.question}], think=mode == "think")

    def limit(self, problem: Problem, mode: str, prompt: list[int]) -> int:
        # Never under REPLY_TOKENS: whether a reply ends by itself within that many tokens (issue 19) can only be
        # seen when no reply is cut before it (a non-thinking reply that works a problem out loud runs far past
        # twice the solver's one-line answer).
        floor = min(REPLY_TOKENS, self.sel.max_new_tokens)
        return min(max(reply_limit(self.tok, problem, mode, self.sel.max_new_tokens), floor), self.room(prompt))

    def room(self, prompt: list[int]) -> int:
        """Tokens the context leaves after ``prompt`` and a budget's stop text."""
        room = self.context - len(prompt) - len(self.ids.stop_thinking)
        if room < 1:
            raise ValueError(f"a prompt of {len(prompt)} tokens leaves no room for a reply in the model's "
                             f"context of {self.context} tokens")
        return room


def reply_limit(tokenizer, problem: Problem, mode: str, max_new_tokens: int) -> int:
    """Tokens a reply to ``problem`` may take: ``max_new_tokens``, but at most twice the solver's own reply in
    this mode plus REPLY_SLACK (a model that never ends its turn, such as a base model, costs no more than that;
    RL's rollouts are held to this rule). The harness lets a reply run to at least REPLY_TOKENS and holds it to
    what the context leaves."""
    solver = len(tokenizer.encode(thinkfollow.reply_in_mode(problem, mode)))
    return min(max_new_tokens, 2 * solver + REPLY_SLACK)


def evaluate(model, tokenizer, selection: Selection, log=print, journal: Journal | None = None) -> dict:
    """Evaluate ``model`` on ``selection``; every figure in one JSON-ready dict (see the package docstring).
    ``journal`` keeps each finished phase, and gives back those an earlier, interrupted run finished."""
    return Run(model, tokenizer, selection, log, journal).run()

