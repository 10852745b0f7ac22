"""The tasks and rule-based rewards of general RL (paper §4.4), mixed in one pool:

* ``reasoning``: a verifiable task asked with a random ``/think``, ``/no_think``, no flag, or the hard switch
  (``enable_thinking=False``: no flag, the template's empty think block in the prompt, as ``infer/chat.py
  --no-think`` asks) (the reasoning slice, so that accuracy does not fall away, and format following at once);
* ``dialogue``: 2 to 4 turns with random flags, the reply due in the mode of the last flag (format following
  across turns, as ThinkFollow measures it);
* ``instruction``: a task question with one of the five constraints appended (tasks/instructions.py), asked the
  same four ways;
* ``tool``: a product of two 4- to 6-digit numbers with the ``calculator`` tool offered; the model calls it
  (Qwen3's ``<tool_call>``), the environment answers with the safe evaluator's result (qwen3mini/tools.py).

A completion earns 1 when every rule of its kind holds: it ended by itself (``<|im_end|>``, not the token cap);
its mode is the one asked for (a thinking reply has a non-empty, closed think block, a non-thinking one the empty
block; after the hard switch, no think tag at all); the final answer is right (``\\boxed{}`` unless the
instruction asks for another form); an instruction's constraint holds; a tool reply made at least one call,
and only valid ones. A reply that keeps the format rules (ended, in the right mode, the answer in ``\\boxed{}``
or in the form the instruction asks for) but not the answer earns ``FORMAT_CREDIT`` (§4.4 rewards format
following on its own): on a problem past the model's reach every answer is wrong, and without it a group that
ended and one that ran to the token cap would score alike, so nothing would teach the model to end. Else 0.
"""
import random
from dataclasses import dataclass, field

from ..chat import render, split_completion
from ..evaluation import reply_limit
from ..evaluation.thinkfollow import FLAGS, make_dialogue, reply_mode
from ..tasks import Problem, parse_question, verify
from ..tasks.answers import last_boxed
from ..tasks.instructions import CONSTRAINTS, answer_right, constrained, follows
from ..tools import generate_with_tools
from .fusion_samples import tool_problem
from .rl import Environment, RLSettings, Rollout
from .rollouts import sample_groups
from .settings import setting
from .task_samples import evaluation_items, parse_ranges, fresh_queries

KINDS = ("reasoning", "dialogue", "instruction", "tool")
MIX = "reasoning:0.3,dialogue:0.2,instruction:0.3,tool:0.2"
RANGES = "add:1-10,mul:1-5,expr:1-8,linear:1-6,sort:3-14,countdown:3-5,chain:1-8"   # whole ladders: the ends too
FORMAT_CREDIT = 0.2                         # of a reply that keeps the format but gets the answer wrong


@dataclass
class Query:
    kind: str
    messages: list[dict]                # the conversation so far, a user turn last
    problem: Problem                    # what the last user turn asks
    mode: str                           # the mode the reply is due in ("think" or "no-think")
    constraint: str | None = None       # instruction: the constraint's name
    tools: list = field(default_factory=list)     # names of the tools offered (qwen3mini/tools.py)
    enable_thinking: bool = True        # False: the hard switch, the template's empty think block in the prompt


def flag(rng: random.Random, hard_switch: bool = True) -> tuple[str, str, bool]:
    """(suffix, mode, enable_thinking) of a random way to ask for a mode: /think, /no_think or no flag (thinking
    is the default), a third each; with ``hard_switch``, half of the non-thinking ones asked instead the template's
    way (no flag, enable_thinking=False). Asked only by flag, the models ran on as a trace after the template's
    block (bench/RESULTS.md, session 21)."""
    choice = rng.choice(("think", "no-think", None))
    if choice == "no-think" and hard_switch and rng.random() < 0.5:
        return "", "no-think", False
    return (f" {FLAGS[choice]}" if choice else ""), (choice or "think"), True


def make_query(kind: str, rng: random.Random, problems: list[Problem]) -> Query:
    """One query of ``kind`` drawn with ``rng`` over training ``problems`` (tool queries make their own)."""
    if kind == "dialogue":
        dialogue = make_dialogue(rng, problems)
        last = dialogue.messages[-1]["content"]
        for text in FLAGS.values():
            last = last.removesuffix(f" {text}")
        return Query(kind, dialogue.messages, parse_question(last), dialogue.expected)
    if kind == "tool":      # (the tool loop opens every row of a batch in one mode: flags only)
        problem, (suffix, mode, _) = tool_problem(rng), flag(rng, hard_switch=False)
        return Query(kind, [{"role": "user", "content": problem.question + suffix}], problem, mode,
                     tools=["calculator"])
    problem, (suffix, mode, enable_thinking) = rng.choice(problems), flag(rng)
    if kind == "instruction":
        name = rng.choice(list(CONSTRAINTS))
        return Query(kind, [{"role": "user", "content": constrained(problem.question, name) + suffix}], problem,
                     mode, constraint=name, enable_thinking=enable_thinking)
    return Query(kind, [{"role": "user", "content": problem.question + suffix}], problem, mode,
                 enable_thinking=enable_thinking)


def parse_mix(text: str, option: str = "--mix") -> dict[str, float]:
    """``"reasoning:0.5,tool:0.5"`` -> {"reasoning": 0.5, "tool": 0.5}; ValueError naming ``option`` and a bad
    part."""
    shares = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        kind, _, share = part.partition(":")
        try:
            shares[kind] = float(share)
        except ValueError:
            shares[kind] = -1.0
        if kind not in KINDS or not 0 <= shares[kind] <= 1:
            raise ValueError(f"{option} {part!r}: expected kind:share with a kind of {', '.join(KINDS)}")
    if not shares or abs(sum(shares.values()) - 1) > 1e-6:
        raise ValueError(f"{option} {text}: expected shares of {', '.join(KINDS)} that sum to 1")
    return shares


@dataclass
class GeneralRLSettings(RLSettings):
    """An RL-loop stage over general RL's mix of queries (stage 4, on-policy distillation); ``pool`` makes it."""
    mix: str = setting(MIX, "kind:share of each kind of query in the pool (kinds: " + ", ".join(KINDS) + ")")
    ranges: str = setting(RANGES, "family:low-high difficulties of the task problems the queries are built on")
    per_cell: int = setting(40, "task problems per (family, difficulty)")
    pool_size: int = setting(4000, "queries in the pool")

    def __post_init__(self):
        super().__post_init__()
        parse_ranges(self.ranges)
        parse_mix(self.mix)

    def pool(self, stage: str) -> tuple[list, dict]:
        return query_pool(self.mix, self.ranges, self.per_cell, self.pool_size, self.seed, stage)


def query_pool(mix: str, ranges: str, per_cell: int, size: int, seed: int, stage: str) -> tuple[list, dict]:
    """(queries, record): ``size`` queries in the ``mix``'s shares over ``per_cell`` fresh training problems
    per (family, difficulty) of ``ranges`` (no evaluation item), drawn from ``stage``'s random streams."""
    problems = fresh_queries(ranges, per_cell, seed, evaluation_items(), stage)
    rng, queries, counts = random.Random(f"{seed}|{stage}"), [], {}
    for kind, share in parse_mix(mix).items():
        counts[kind] = round(share * size)
        queries += [make_query(kind, rng, problems) for _ in range(counts[kind])]
    return queries, {"problems": len(problems), "queries": counts}


def replied_mode(query: Query, text: str) -> str | None:
    """The mode of a reply to ``query``: ``reply_mode``'s, or after the hard switch (the empty think block already
    in the prompt) "no-think" for a reply with no think tag; one that writes them (thinking after the block) is
    in neither mode."""
    if query.enable_thinking:
        return reply_mode(text)
    return None if "<think>" in text or "</think>" in text else "no-think"


def reward(query: Query, text: str, ended: bool) -> float:
    """1.0 when every rule of the query's kind holds, ``FORMAT_CREDIT`` when only the format rules do (module
    docstring), else 0.0."""
    if not ended or replied_mode(query, text) != query.mode:
        return 0.0
    answer = split_completion(text).answer
    if query.kind == "instruction":
        if not follows(query.constraint, answer):
            return 0.0
        return 1.0 if answer_right(query.problem, query.constraint, answer) else FORMAT_CREDIT
    if last_boxed(answer) is None:
        return 0.0
    return 1.0 if verify(query.problem, answer) else FORMAT_CREDIT


class GeneralEnvironment(Environment):
    """Stage 4's rollouts: plain queries through the one generation path, tool queries through the tool loop."""
    kinds = list(KINDS)

    def __init__(self, tokenizer, max_new_tokens: int, max_calls: int = 4):
        self.tokenizer, self.max_new_tokens, self.max_calls = tokenizer, max_new_tokens, max_calls

    def question(self, query: Query) -> str:
        return query.messages[-1]["content"]

    def limit(self, query: Query) -> int:
        return reply_limit(self.tokenizer, query.problem, query.mode, self.max_new_tokens)

    def rollouts(self, generator, queries, group, sampling, seed, batch_rows):
        results = [None] * len(queries)
        plain = [i for i, q in enumerate(queries) if not q.tools]
        tooled = [i for i, q in enumerate(queries) if q.tools]
        if plain:
            prompts = [render(self.tokenizer, queries[i].messages, think=queries[i].enable_thinking) for i in plain]
            groups = sample_groups(generator, self.tokenizer, prompts, group, [self.limit(queries[i]) for i in plain],
                                   sampling, seed, batch_rows)
            for i, prompt, replies in zip(plain, prompts, groups):
                results[i] = (prompt, [self._plain(queries[i], r) for r in replies])
        if tooled:              # every tool query offers the same tools: one batched loop for all their rows
            rows = [i for i in tooled for _ in range(group)]
            done = generate_with_tools(generator, self.tokenizer, [queries[i].messages for i in rows],
                                       queries[tooled[0]].tools, [self.limit(queries[i]) for i in rows],
                                       {**sampling.__dict__, "seed": seed * 1000 + 999}, think=True,
                                       max_calls=self.max_calls)
            for n, i in enumerate(tooled):
                runs = done[n * group:(n + 1) * group]
                results[i] = (runs[0].prompt, [self._tooled(queries[i], run) for run in runs])
        return results

    def _thinking_tokens(self, replies) -> int:
        return sum(len(self.tokenizer.encode(r.parts.thinking)) for r in replies if r.parts.thinking)

    def _plain(self, query: Query, reply) -> Rollout:
        ended = reply.completion.finish_reason == "stop"
        return Rollout(reply.completion.tokens, [True] * len(reply.completion.tokens),
                       reward(query, reply.text, ended), query.kind, not ended, self._thinking_tokens([reply]),
                       reply.text)

    def _tooled(self, query: Query, run) -> Rollout:
        """1 when the run ended by itself after at least one call, every call valid, its first reply in the mode
        asked for, and its final answer right."""
        ok = (run.finish == "stop" and bool(run.calls) and run.all_calls_valid
              and reply_mode(run.replies[0].text) == query.mode and verify(query.problem, run.answer))
        return Rollout(run.tokens, run.mask, float(ok), query.kind, run.truncated, self._thinking_tokens(run.replies),
                       self.tokenizer.decode(run.tokens))
