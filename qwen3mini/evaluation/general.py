"""The general abilities of a post-trained model (issue 19), on held-out items, greedy, through the one
generation path:

* instruction following: evaluation items of easy task cells with one of the five constraints appended,
  scored *strict* (the constraint holds and the answer is right, tasks/instructions.py);
* knowledge: the test split of the man-page / WordNet / FOLDOC questions (tasks/knowledge.py), scored by the
  share of the reference's content words the answer covers (``covers``: at least half), in at most 60 words;
* tool use: 4x4, 5x5 (the mul evaluation sets) and 6x6-digit products (a fixed set of its own) asked with the
  ``calculator`` offered and without it: right answers, the share of valid calls, calls per reply.

Each is asked in every selected mode, through a ``/think`` or ``/no_think`` flag after the question.
"""
import random

from ..chat import generate_replies, render
from ..tasks import FAMILIES, parse_question, verify
from ..tasks.instructions import CONSTRAINTS, constrained, follows, strict
from ..tasks.knowledge import covers, load_knowledge
from ..tasks.metrics import wilson_interval
from ..tasks.splits import evaluation_set
from ..tools import generate_with_tools
from .thinkfollow import FLAGS

INSTRUCTION_CELLS = (("add", 3), ("mul", 2), ("expr", 2), ("linear", 2), ("sort", 5), ("chain", 2))
TOOL_DIGITS = (4, 5, 6)         # digits of each factor of a product asked with the calculator offered
KNOWLEDGE_WORDS = 60            # a knowledge answer longer than this scores 0: no listing every word
REPLY_TOKENS = 1024             # a reply "ends by itself" when it does within this many tokens (issue 19)


def share(hits: list[bool]) -> dict:
    """n, correct, accuracy and its Wilson 95% interval (None for both when there is nothing to count)."""
    n, k = len(hits), sum(hits)
    return {"n": n, "correct": k, "accuracy": k / n if n else None,
            "wilson95": list(wilson_interval(k, n)) if n else None}


def instruction_items(per_constraint: int) -> list[tuple]:
    """(problem, constraint name): ``per_constraint`` items a constraint, taken round-robin over the
    evaluation sets of INSTRUCTION_CELLS."""
    pools = [evaluation_set(f, d) for f, d in INSTRUCTION_CELLS]
    return [(pools[i % len(pools)][i // len(pools)], name) for name in CONSTRAINTS for i in range(per_constraint)]


def tool_items(per_size: int) -> list:
    """``per_size`` products per size: the mul evaluation sets at 4 and 5 digits, a fixed 6x6 set beside them."""
    items = []
    for digits in TOOL_DIGITS:
        if digits in FAMILIES["mul"].difficulties:
            items += evaluation_set("mul", digits)[:per_size]
        else:
            rng = random.Random(f"test|mul-tool|{digits}")
            items += [parse_question(f"What is {rng.randrange(10 ** (digits - 1), 10 ** digits)} * "
                                     f"{rng.randrange(10 ** (digits - 1), 10 ** digits)}?") for _ in range(per_size)]
    return items


def _ask(tokenizer, question: str, mode: str) -> list[int]:
    return render(tokenizer, [{"role": "user", "content": f"{question} {FLAGS[mode]}"}], think=True)


def evaluate_instructions(model, tokenizer, modes, per_constraint: int, batch_size: int, max_new_tokens: int) -> dict:
    items = instruction_items(per_constraint)
    results = {}
    for mode in modes:
        prompts = [_ask(tokenizer, constrained(p.question, name), mode) for p, name in items]
        replies = _generate(model, tokenizer, prompts, batch_size, max_new_tokens)
        hits = [(name, r.completion.finish_reason == "stop" and strict(p, name, r.parts.answer),
                 follows(name, r.parts.answer)) for (p, name), r in zip(items, replies)]
        results[mode] = {"strict": share([h for _, h, _ in hits]),
                         "by_constraint": {name: {"strict": share([h for n, h, _ in hits if n == name])["accuracy"],
                                                  "follows": share([f for n, _, f in hits if n == name])["accuracy"]}
                                           for name in CONSTRAINTS},
                         "example": replies[0].text[:400]}
    return results


def evaluate_knowledge(model, tokenizer, modes, per_kind: int, batch_size: int, max_new_tokens: int) -> dict:
    records = load_knowledge(split="test")
    kinds = sorted({r["kind"] for r in records})
    items = [r for kind in kinds for r in [r for r in records if r["kind"] == kind][:per_kind]]
    results = {}
    for mode in modes:
        replies = _generate(model, tokenizer, [_ask(tokenizer, r["question"], mode) for r in items], batch_size,
                            max_new_tokens)
        hits = [len(reply.parts.answer.split()) <= KNOWLEDGE_WORDS and covers(r["answer"], reply.parts.answer)
                for r, reply in zip(items, replies)]
        results[mode] = {"covers": share(hits),
                         "by_kind": {k: share([h for r, h in zip(items, hits) if r["kind"] == k])["accuracy"]
                                     for k in kinds},
                         "example": {"question": items[0]["question"], "reference": items[0]["answer"],
                                     "reply": replies[0].text[:400]} if items else None}
    return results


def evaluate_tools(model, tokenizer, modes, per_size: int, batch_size: int, max_new_tokens: int,
                   max_calls: int = 4) -> dict:
    items, results = tool_items(per_size), {}
    for mode in modes:
        conversations = [[{"role": "user", "content": f"{p.question} {FLAGS[mode]}"}] for p in items]
        runs = []
        for start in range(0, len(items), batch_size):
            runs += generate_with_tools(model, tokenizer, conversations[start:start + batch_size], ["calculator"],
                                        max_new_tokens, {"temperature": 0.0}, think=True, max_calls=max_calls)
        bare = _generate(model, tokenizer, [_ask(tokenizer, p.question, mode) for p in items], batch_size,
                         max_new_tokens)
        by_size = {}
        for digits in TOOL_DIGITS:
            rows = [i for i, p in enumerate(items) if p.difficulty == digits]
            by_size[f"{digits}x{digits}"] = {
                "with_tool": share([verify(items[i], runs[i].answer) for i in rows])["accuracy"],
                "without_tool": share([verify(items[i], bare[i].parts.answer) for i in rows])["accuracy"]}
        calls = [c for run in runs for c in run.calls]
        results[mode] = {"with_tool": share([verify(p, run.answer) for p, run in zip(items, runs)]),
                         "without_tool": share([verify(p, r.parts.answer) for p, r in zip(items, bare)]),
                         "valid_calls": share([c["valid"] for c in calls]), "calls_per_reply": len(calls) / len(items),
                         "by_size": by_size, "example": runs[0].messages[:2] if runs else None}
    return results


def _generate(model, tokenizer, prompts, batch_size: int, max_new_tokens: int) -> list:
    """Greedy replies of at most ``max_new_tokens`` tokens, or what the context leaves after the prompt."""
    limits = [min(max_new_tokens, model.config.max_position_embeddings - len(prompt)) for prompt in prompts]
    replies = []
    for start in range(0, len(prompts), batch_size):
        replies += generate_replies(model, tokenizer, prompts[start:start + batch_size],
                                    limits[start:start + batch_size], {"temperature": 0.0})
    return replies
