"""The data of thinking-mode fusion (paper §4.3): one model that thinks or answers directly as the user asks.

* thinking samples: the RL model's own replies to the cold start's queries, sampled a few times each and kept
  only when right and passing the response filters (rejection sampling, ``rejection_sampled``);
* non-thinking samples: the solvers' direct answers to the same kind of queries (the answer line alone);
* the format of the paper's Table 9: a ``/think`` or ``/no_think`` flag at the end of the user turn, the empty
  think block in non-thinking replies (sft.render_sample trains it), thinking as the default (a share of the
  thinking samples carries no flag), and multi-turn dialogues with several random flags whose last reply
  follows the last flag (``dialogue_sample``; ThinkFollow's generator over training problems);
* knowledge questions (tasks/knowledge.py: man pages, WordNet, FOLDOC) and task questions with an instruction
  appended (tasks/instructions.py), each in a random mode, so that the chat knows something and follows simple
  instructions before general RL rewards it for that;
* small talk (tasks/small_talk.py: greetings, who the model is, what it can do, thanks, goodbyes), so that a
  user's first "Hello" gets a greeting.

The thinking budget is not trained: it should emerge from the fusion (§4.3), and the evaluation measures it.
"""
import random

from ..calculator import calculate
from ..evaluation.general import TOOL_DIGITS
from ..evaluation.thinkfollow import FLAGS, make_dialogue
from ..sampling import SamplingParams
from ..tasks import Problem, filters, parse_question, traces
from ..tasks.arithmetic import random_number
from ..tasks.instructions import constrained, reply_following
from ..tasks.knowledge import knowledge_reply, subject_of
from ..tasks.small_talk import small_talk
from ..tools import TOOLS
from .rollouts import sample_task_groups
from .task_samples import flagged_turn


def rejection_sampled(model, tokenizer, problems: list[Problem], samples: int, sampling: dict, seed: int,
                      max_new_tokens: int = 2048, batch_rows: int = 2048, mode: str = "think") -> list[dict | None]:
    """For each problem, the first of ``samples`` replies of ``model`` in ``mode`` that is right, ended by
    itself, is in that mode (a thinking reply thinks, a non-thinking one does not) and passes the response
    filters, as an assistant message (reasoning_content for a thinking reply, content); None when none does.
    ``sampling``: the paper's settings of the mode (chat.sampling_settings(mode))."""
    _, groups = sample_task_groups(model, tokenizer, problems, samples, max_new_tokens, SamplingParams(**sampling),
                                   seed, batch_rows, mode)
    kept = []
    for problem, group in zip(problems, groups):
        kept.append(next((_assistant_message(r.parts) for r in group
                          if bool(r.parts.thinking) == (mode == "think") and not r.parts.tool_calls
                          and filters.reject_reason(problem, r.parts.thinking, r.parts.answer,
                                                    r.completion.finish_reason) is None), None))
    return kept


def split_by_mode(problems: list[Problem], thinking: int, direct: int) -> tuple[list[Problem], list[Problem]]:
    """One cell's queries for thinking replies (the first ``thinking``) and for direct ones (the ``direct`` after
    them). A cell with fewer queries than both (the 1-digit sums, the 1x1 products: their whole space is a few
    dozen problems, less the evaluation's) asks the missing direct ones from its start again, in the other mode:
    without that, non-thinking mode never saw a 1x1 product and wandered into other families' traces."""
    asked_thinking, asked_directly = problems[:thinking], problems[thinking:thinking + direct]
    return asked_thinking, asked_directly + asked_thinking[:direct - len(asked_directly)]


def _assistant_message(parts) -> dict:
    if parts.thinking:
        return {"role": "assistant", "reasoning_content": parts.thinking, "content": parts.answer}
    return {"role": "assistant", "content": parts.answer}


def direct_answer(problem: Problem) -> dict:
    """The non-thinking reply: the solver's answer line (the template adds the empty think block)."""
    return {"role": "assistant", "content": traces.answer(problem)}


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
                 "content": traces.answer(problem, after_trace=True)}
    else:
        reply = direct_answer(problem)
    return dialogue.messages, reply



def knowledge_sample(item: dict, mode: str, rng: random.Random, unflagged_share: float) -> tuple[list, dict]:
    """(messages, reply) of a knowledge record: the solver's one-sentence answer; in thinking mode after a short
    thought that recalls the reference."""
    kind, subject = subject_of(item["question"])
    reply = {"role": "assistant", "content": knowledge_reply(item)}
    if mode == "think":
        source = {"function": "its manual page", "command": "its manual page", "word": "the dictionary",
                  "term": "the dictionary of computing"}[kind]
        reply["reasoning_content"] = (f"The question asks about the {kind} \"{subject}\". What {source} says: "
                                      f"{item['answer'].rstrip('.')}. So I can answer in one sentence.")
    return [flagged_turn(item["question"], mode, rng, unflagged_share)], reply


def small_talk_sample(mode: str, rng: random.Random, unflagged_share: float) -> tuple[list, dict]:
    """(messages, reply) of one small-talk exchange; in thinking mode after its short thought."""
    text, answer, thought = small_talk(rng)
    reply = {"role": "assistant", "content": answer}
    if mode == "think":
        reply["reasoning_content"] = thought
    return [flagged_turn(text, mode, rng, unflagged_share)], reply


def instruction_sample(problem: Problem, name: str | None, mode: str, rng: random.Random,
                       unflagged_share: float) -> tuple[list, dict]:
    """(messages, reply) of a task question with constraint ``name`` appended: in thinking mode the solver's
    trace, then the answer in the form the constraint asks for. ``name`` None: the same question without an
    instruction and the default answer (a sentence, then ``\\boxed{}``), the twin that makes a minimal pair
    with an instructed sample, so that the instruction, not the question, is what changes the answer's form
    (without it the fused model answered some plain questions with the bare number "only the final number"
    asks). A trace that stops at its budget has no answer to put in a constraint's form: that sample is asked in
    non-thinking mode."""
    if mode == "think" and name is not None and traces.gives_up(problem):
        mode = "no-think"
    if name is None:
        question, answer = problem.question, traces.answer(problem, after_trace=mode == "think")
    else:
        question, answer = constrained(problem.question, name), reply_following(problem, name)
    reply = {"role": "assistant", "content": answer}
    if mode == "think":
        reply["reasoning_content"] = traces.thinking(problem, rng)
    return [flagged_turn(question, mode, rng, unflagged_share)], reply


def tool_problem(rng: random.Random) -> Problem:
    """A product of two numbers of 4, 5 or 6 digits each (past what the model multiplies reliably by hand)."""
    digits = rng.choice(TOOL_DIGITS)
    return parse_question(f"What is {random_number(rng, digits, 1)} * {random_number(rng, digits, 1)}?")


def tool_samples(problem: Problem, mode: str, rng: random.Random, unflagged_share: float) -> list[tuple]:
    """The two (messages, reply) samples of a product asked with the ``calculator`` offered (the report's agent
    data, §4.3): the reply that calls the tool, then, after the tool's result, the final answer. Both carry
    ``tools`` (the template shows them in the system turn) as a third element."""
    a, b = problem.data
    expression = f"{a} * {b}"
    user = flagged_turn(problem.question, mode, rng, unflagged_share)
    call = {"role": "assistant", "content": "",
            "tool_calls": [{"name": "calculator", "arguments": {"expression": expression}}]}
    answer = {"role": "assistant", "content": f"{expression} = {problem.answer}.\n\n\\boxed{{{problem.answer}}}"}
    if mode == "think":
        call["reasoning_content"] = (f"The user asks for {expression}. Multiplying numbers this long by hand is "
                                     "slow and easy to get wrong; the calculator gives the exact product.")
        answer["reasoning_content"] = f"The calculator returned {problem.answer}, so {expression} = {problem.answer}."
    else:   # the empty think block the model wrote before its call: the template shows it only for "\n"
        call["reasoning_content"] = "\n"     # (qwen3mini/tools.py, the loop's non-thinking turns)
    result = {"role": "tool", "content": calculate(expression)}
    schemas = [TOOLS["calculator"].schema]
    return [([user], call, schemas), ([user, call, result], answer, schemas)]
