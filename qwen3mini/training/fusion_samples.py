"""The data of thinking-mode fusion (paper §4.3): one model that thinks or answers directly as the user asks.

* thinking samples: the RL model's own replies to the cold start's queries, sampled a few times each and kept
  only when right and passing the response filters (rejection sampling, ``rejection_sampled``);
* non-thinking samples: the solvers' direct answers to the same kind of queries (the answer line alone);
* the format of the paper's Table 9: a ``/think`` or ``/no_think`` flag at the end of the user turn, the empty
  think block in non-thinking replies (sft.render_sample trains it), thinking as the default (a share of the
  thinking samples carries no flag), and multi-turn dialogues with several random flags whose last reply
  follows the last flag (``dialogue_sample``; ThinkFollow's generator over training problems);
* whatever other non-thinking and thinking data the stage adds (knowledge questions, instructions), as
  (messages, reply) pairs through the same rendering.

The thinking budget is not trained: it should emerge from the fusion (§4.3), and the evaluation measures it.
"""
import random

from ..chat import render
from ..evaluation import reply_limit
from ..evaluation.thinkfollow import FLAGS, make_dialogue
from ..sampling import SamplingParams
from ..tasks import Problem, filters, parse_question, traces
from .rollouts import sample_groups


def rejection_sampled(model, tokenizer, problems: list[Problem], samples: int, sampling: dict, seed: int,
                      max_new_tokens: int = 2048, batch_rows: int = 2048) -> list[dict | None]:
    """For each problem, the first of ``samples`` thinking-mode replies of ``model`` that is right, ended by
    itself and passes the response filters, as an assistant message (reasoning_content, content); None when
    none does. ``sampling``: the paper's thinking settings (chat.sampling_settings("think"))."""
    prompts = [render(tokenizer, [{"role": "user", "content": p.question}], think=True) for p in problems]
    limits = [reply_limit(tokenizer, p, "think", max_new_tokens) for p in problems]
    groups = sample_groups(model, tokenizer, prompts, samples, limits, SamplingParams(**sampling), seed, batch_rows)
    kept = []
    for problem, group in zip(problems, groups):
        kept.append(next(({"role": "assistant", "reasoning_content": r.parts.thinking, "content": r.parts.answer}
                          for r in group if r.parts.thinking and not r.parts.tool_calls
                          and filters.reject_reason(problem, r.parts.thinking, r.parts.answer,
                                                    r.completion.finish_reason) is None), None))
    return kept


def direct_answer(problem: Problem) -> dict:
    """The non-thinking reply: the solver's answer line (the template adds the empty think block)."""
    return {"role": "assistant", "content": traces.answer(problem)}


def flagged_turn(question: str, mode: str, rng: random.Random, unflagged_share: float) -> dict:
    """The user turn of a single-turn sample: the mode's flag at the end; a share of thinking turns without
    one (thinking is the default)."""
    if mode == "think" and rng.random() < unflagged_share:
        return {"role": "user", "content": question}
    return {"role": "user", "content": f"{question} {FLAGS[mode]}"}


def dialogue_sample(rng: random.Random, problems: list[Problem]) -> tuple[list[dict], dict]:
    """(messages, reply) of a 2- to 4-turn dialogue with random flags (ThinkFollow's generator over training
    problems): the reply answers the last question in the mode of the last flag (thinking when none)."""
    dialogue = make_dialogue(rng, problems)
    last = dialogue.messages[-1]["content"]
    for flag in FLAGS.values():
        last = last.removesuffix(f" {flag}")
    problem = parse_question(last)
    if dialogue.expected == "think":
        reply = {"role": "assistant", "reasoning_content": traces.thinking(problem, rng),
                 "content": traces.answer(problem)}
    else:
        reply = direct_answer(problem)
    return dialogue.messages, reply

