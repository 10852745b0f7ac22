"""Scoring one reply (correct?, thinking and answer tokens, ended by itself?) and summarising a cell of them
(greedy pass@1 with its Wilson interval, pass@k from samples, mean token counts)."""
from dataclasses import dataclass

from ..chat import ChatTokens, split_completion
from ..generation import Completion
from ..tasks import Problem, verify
from ..tasks.metrics import pass_at_k, wilson_interval


@dataclass(frozen=True)
class Scored:
    correct: bool
    thinking_tokens: int    # sampled between <think> and </think> (or the budget's stop text)
    answer_tokens: int      # sampled outside the think block, the end-of-turn token not counted
    self_ended: bool        # ended with an end-of-turn token, not at its length limit
    thought: bool           # its think block has content (how a reply shows its mode)


def token_counts(completion: Completion, ids: ChatTokens) -> tuple[int, int]:
    """(thinking, answer) tokens the model sampled in ``completion``. The budget's forced stop text and the
    <think> / </think> tokens belong to neither; a think block that never closed is all thinking."""
    tokens = completion.tokens[:-1] if completion.finish_reason == "stop" else completion.tokens
    if ids.think not in tokens:                       # a non-thinking reply (the empty block is in the prompt)
        return 0, len(tokens)
    start = tokens.index(ids.think) + 1
    if completion.forced_at is not None:
        end, after = completion.forced_at, completion.forced_at + len(ids.stop_thinking)
    elif ids.end_think in tokens[start:]:
        end = tokens.index(ids.end_think, start)
        after = end + 1
    else:
        return len(tokens) - start, start - 1
    return end - start, start - 1 + max(0, len(tokens) - after)


def score_reply(problem: Problem, text: str, completion: Completion, ids: ChatTokens) -> Scored:
    """Score the reply ``text`` (its ``completion``) to ``problem``: correct when the answer part, the text
    after the think block, ends in the right ``\\boxed{}``; a \\boxed{} inside an unclosed think block is not
    an answer."""
    thinking, answer = token_counts(completion, ids)
    parts = split_completion(text)
    return Scored(verify(problem, parts.answer), thinking, answer, completion.finish_reason == "stop",
                  bool(parts.thinking.strip()))


def sample_ks(samples: int) -> list[int]:
    """The k of pass@k reported for ``samples`` samples an item: powers of two up to it, and itself."""
    ks = [k for k in (1, 2, 4, 8, 16, 32, 64, 128) if k < samples]
    return ks + [samples] if samples else []


def summarize(greedy: list[Scored], sampled: list[list[bool]] | None = None) -> dict:
    """The figures of one cell: ``greedy`` has one scored greedy reply per item; ``sampled`` (optional) one
    list of correct/incorrect per item, n samples each, for the unbiased pass@k."""
    n, correct = len(greedy), sum(s.correct for s in greedy)
    low, high = wilson_interval(correct, n)
    figures = {"n": n, "correct": correct, "pass@1": correct / n, "wilson95": [low, high],
               "mean_thinking_tokens": sum(s.thinking_tokens for s in greedy) / n,
               "mean_answer_tokens": sum(s.answer_tokens for s in greedy) / n,
               "self_ended": sum(s.self_ended for s in greedy) / n, "thought": sum(s.thought for s in greedy) / n,
               "samples": 0, "pass@k": None}
    if sampled:
        samples = len(sampled[0])
        figures["samples"] = samples
        figures["pass@k"] = {str(k): sum(pass_at_k(samples, sum(item), k) for item in sampled) / n
                             for k in sample_ks(samples)}
    return figures
