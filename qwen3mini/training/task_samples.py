"""SFT samples from the verifiable tasks (paper §4.1): query filtering, the solvers' replies in thinking and
non-thinking mode, response filtering. The cold start builds its data here; later stages reuse the query
side (stage 3 samples the RL model on the same kind of queries and filters its replies the same way).

Query filtering (§4.1):
* held out: no item of any evaluation set, in any order (``tasks.splits.training_problems``);
* unique answer: the question alone must determine the answer, i.e. read back by the family's parser it
  gives the same canonical answer (countdown has many answers: its verifier checks the solver's instead);
* balanced: the same number of queries per (family, difficulty) cell, drawn without repeats;
* not answered directly: a query the start model already answers without thinking teaches no reasoning
  (``answered_directly``, measured through the chat's generation path).
Response filtering: ``tasks.filters.reject_reason`` on every solver reply, the same function that later
judges model samples.
"""
import random
from dataclasses import dataclass, field

from ..evaluation.thinkfollow import FLAGS
from ..tasks import FAMILIES, Problem, family_of, problem_hash, verify
from ..tasks import filters, traces
from ..tasks.answers import last_boxed
from ..tasks.splits import evaluation_sets, held_out, training_problems

THINK, NO_THINK = "think", "no-think"


@dataclass
class SampleStats:
    """What the data holds, by (family, difficulty) cell: samples per mode, tokens, and what was dropped."""
    cells: dict = field(default_factory=dict)

    def add(self, family: str, difficulty: int, key: str, n: int = 1):
        cell = self.cells.setdefault(f"{family}/{difficulty}", {})
        cell[key] = cell.get(key, 0) + n

    def total(self, key: str) -> int:
        return sum(cell.get(key, 0) for cell in self.cells.values())

    def table(self) -> str:
        keys = sorted({k for cell in self.cells.values() for k in cell})
        lines = ["cell".ljust(14) + "".join(k.rjust(16) for k in keys)]
        for name, cell in self.cells.items():
            lines.append(name.ljust(14) + "".join(str(cell.get(k, 0)).rjust(16) for k in keys))
        lines.append("total".ljust(14) + "".join(str(self.total(k)).rjust(16) for k in keys))
        return "\n".join(lines)


def parse_ranges(text: str, argument: str = "--ranges") -> dict[str, range]:
    """``"add:1-6,mul:1-3"`` -> {"add": range(1, 7), "mul": range(1, 4)}; ValueError naming ``argument`` and the
    bad part."""
    ranges = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        name, _, span = part.partition(":")
        low, _, high = span.partition("-")
        if name not in FAMILIES or not (low.isdigit() and (high or low).isdigit()):
            raise ValueError(f"{argument} {part!r}: expected family:low-high with a family of {', '.join(FAMILIES)}")
        levels = range(int(low), int(high or low) + 1)
        known = FAMILIES[name].difficulties
        if not levels or levels[0] < known.start or levels[-1] >= known.stop:
            raise ValueError(f"{argument} {part!r}: {name} has difficulties {known.start} to {known.stop - 1}")
        ranges[name] = levels
    if not ranges:
        raise ValueError(f"{argument}: no family given")
    return ranges


def unique_answer(problem: Problem) -> bool:
    """Whether the question determines the answer (countdown: whether its answer verifies instead)."""
    if problem.family == "countdown":
        return verify(problem, f"\\boxed{{{problem.answer}}}")
    return family_of(problem).parse(problem.question).answer == problem.answer


def draw_queries(family: str, difficulty: int, count: int, rng: random.Random, exclude: frozenset) -> list:
    """``count`` distinct training problems of one cell with a unique answer, none of them held out."""
    seen, queries = set(), []
    for draws, problem in enumerate(training_problems(family, difficulty, rng, exclude), 1):
        digest = problem_hash(FAMILIES[family], problem)
        if digest not in seen and unique_answer(problem):
            seen.add(digest)
            queries.append(problem)
        if len(queries) == count or draws == 20 * count:     # a small space (1-digit sums) runs out early
            return queries


def cell_rng(seed: int, family: str, difficulty: int, stage: str = "cold-start") -> random.Random:
    """The random stream of one (family, difficulty) cell of a stage's data: the cold start draws its queries
    (and their replies) from it, so a later stage can redraw them exactly (``cold_start_queries``)."""
    return random.Random(f"{seed}|{family}|{difficulty}" if stage == "cold-start" else f"{seed}|{stage}|{family}|"
                         f"{difficulty}")


def cold_start_queries(cold_start_dir: str) -> list:
    """The queries the cold start whose out_dir is ``cold_start_dir`` drew (its summary.json's settings), before
    its filters, cell by cell: stage 3 samples the RL model on them again (paper §4.3), and RL's pool must not
    contain them (§4.2)."""
    import json
    import os
    summary = os.path.join(cold_start_dir, "summary.json")
    if not os.path.exists(summary):
        raise ValueError(f"--cold_start_dir {cold_start_dir}: no summary.json (run the cold start first)")
    with open(summary) as f:
        cold = json.load(f)["settings"]
    return fresh_queries(cold["ranges"], cold["queries_per_cell"] + cold["val_per_cell"], cold["seed"],
                         evaluation_items(), "cold-start")


def evaluation_items() -> frozenset:
    """Hashes of every evaluation item of every family and difficulty."""
    return held_out(evaluation_sets().values())


def answered_directly(model, tokenizer, problems: list, batch_size: int = 2048) -> list[bool]:
    """Whether ``model`` answers each problem right without thinking: greedy, in non-thinking mode, a few
    tokens more than the answer. A base model knows no ``\\boxed{}``, so its reply's first line counts as the
    answer when it has no box."""
    from ..chat import generate_replies, render
    prompts = [render(tokenizer, [{"role": "user", "content": p.question}], think=False) for p in problems]
    right = []
    for start in range(0, len(problems), batch_size):
        batch = problems[start:start + batch_size]
        longest = max(len(tokenizer.encode(p.answer)) for p in batch)
        replies = generate_replies(model, tokenizer, prompts[start:start + batch_size], longest + 16,
                                   {"temperature": 0.0})
        for problem, reply in zip(batch, replies):
            text = reply.parts.answer
            answer = last_boxed(text) or (text.strip().split("\n")[0] if text.strip() else "")
            right.append(family_of(problem).is_correct(problem, answer))
    return right


def flagged_turn(question: str, mode: str, rng: random.Random, unflagged_share: float) -> dict:
    """The user turn of a single-turn sample: the mode's flag at the end (paper §4.3, Table 9); a share of
    thinking turns without one (thinking is the default)."""
    if mode == THINK and rng.random() < unflagged_share:
        return {"role": "user", "content": question}
    return {"role": "user", "content": f"{question} {FLAGS[mode]}"}


def switched_by_template(messages: list, reply: dict, rng: random.Random, share: float) -> tuple[list, bool]:
    """(messages, enable_thinking) to render a sample with (``sft.render_sample``): a ``share`` of the
    single-turn non-thinking samples asked the way ``infer/chat.py --no-think`` and the harness ask, with no
    flag and the template's empty think block in the prompt (``enable_thinking=False``), the rest unchanged.
    Trained only under ``/no_think``, the model answered directly after the flag and ran on as a trace after
    the template's block (bench/RESULTS.md, session 21). The block stays prompt, not a target: learnt after an
    unflagged question it would teach the model to skip thinking where thinking is the default."""
    flag = f" {FLAGS[NO_THINK]}"
    if (len(messages) != 1 or "reasoning_content" in reply or reply.get("tool_calls")
            or not messages[0]["content"].endswith(flag) or not rng.random() < share):
        return messages, True
    return [{**messages[0], "content": messages[0]["content"].removesuffix(flag)}], False


def reply_message(problem: Problem, mode: str, rng: random.Random, slip_share: float) -> dict:
    """The solver's reply as an assistant message (the chat template adds the think block around it)."""
    if mode == THINK:
        return {"role": "assistant", "reasoning_content": traces.thinking(problem, rng, slip_share),
                "content": traces.answer(problem, after_trace=True)}
    return {"role": "assistant", "content": traces.answer(problem)}


def response_rejected(problem: Problem, message: dict) -> str | None:
    """The response filters (tasks.filters) on one reply; None when it is kept. A trace that stops at its budget
    gives no answer to check: only its repetition is."""
    thinking = message.get("reasoning_content", "")
    if thinking and traces.gives_up(problem):
        return filters.repetition(f"{thinking}\n{message['content']}")
    return filters.reject_reason(problem, thinking, message["content"])


def fresh_queries(ranges: str, per_cell: int, seed: int, exclude: frozenset, stage: str) -> list:
    """``per_cell`` problems of each (family, difficulty) in ``ranges``, none in ``exclude``, from the random
    streams of ``stage`` (each stage draws its own; ``"cold-start"``'s are the cold start's queries)."""
    return [problem for family, levels in parse_ranges(ranges).items() for difficulty in levels
            for problem in draw_queries(family, difficulty, per_cell, cell_rng(seed, family, difficulty, stage),
                                        exclude)]


def balanced_pool(problems: list, rates: list[float], low: float, high: float, size: int) -> list:
    """Problems with a pass rate in [low, high], at most ``size`` of them, the same share for every family
    (taken round-robin over its difficulties, so no difficulty crowds the others out)."""
    cells = {}
    for problem, rate in zip(problems, rates):
        if low <= rate <= high:
            cells.setdefault(problem.family, {}).setdefault(problem.difficulty, []).append(problem)
    per_family, pool = size // max(1, len(cells)), []
    for levels in cells.values():
        queues, taken = [list(q) for q in levels.values()], []
        while len(taken) < per_family and any(queues):
            taken += [q.pop(0) for q in queues if q][:per_family - len(taken)]
        pool += taken
    return pool
