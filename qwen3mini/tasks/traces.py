"""The cold start's replies, written by the programmatic solvers (paper §4.1; they replace the report's
teacher model): the thinking (every step restating where the work stands, a check, the result), the short
answer after ``</think>``, and a share of traces with a planted slip that the trace notices and corrects. A
trace whose search stops at its budget (countdown's) has no result: its reply says so (``gives_up``)."""
import random

from .family import Problem, Step
from .verify import family_of


def thinking(problem: Problem, rng: random.Random | None = None, slip_share: float = 0.0) -> str:
    """The thinking block's text. With ``rng``, a ``slip_share`` of traces writes one step's result wrong,
    then ``Wait, ...`` and the step again, right."""
    family = family_of(problem)
    lines = family.solve(problem) + ([] if family.gives_up(problem) else [family.check(problem),
                                                                         family.restated(problem)])
    steps = [i for i, line in enumerate(lines) if isinstance(line, Step)]
    slip_at = rng.choice(steps) if rng is not None and steps and rng.random() < slip_share else None
    out = []
    for i, line in enumerate(lines):
        if i == slip_at:
            wrong = _slip(line, rng)
            out += [f"{line.state}{line.work} = {wrong}", f"Wait, {line.work} = {line.value}, not {wrong}."]
        out.append(line.line() if isinstance(line, Step) else line)
    return "\n".join(out)


def _slip(step: Step, rng: random.Random) -> int:
    """A plausible wrong value: the step's own likely slip, else off by a little (kept non-negative)."""
    if step.likely_slip is not None:
        return step.likely_slip
    wrong = step.value + rng.choice((-10, -2, -1, 1, 2, 10))
    return step.value + rng.choice((1, 2, 10)) if step.value >= 0 > wrong else wrong


def gives_up(problem: Problem) -> bool:
    """Whether the problem's trace stops before its result (``Family.gives_up``)."""
    return family_of(problem).gives_up(problem)


def answer(problem: Problem, after_trace: bool = False) -> str:
    """The whole non-thinking reply, and what follows the thinking (``after_trace``): one sentence, then
    ``\\boxed{}``; after a trace that stopped before its result, the family's words for that."""
    family = family_of(problem)
    if after_trace and family.gives_up(problem):
        return family.given_up(problem)
    return f"{family.summary(problem)}\n\n\\boxed{{{problem.answer}}}"
