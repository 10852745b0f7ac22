"""bench/countdown_misses.py: how a countdown reply is read, and which problems need more search than the trace's
budget."""
import os
import re
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "bench"))
import countdown_misses  # noqa: E402
from qwen3mini.tasks import countdown, parse_question  # noqa: E402
from qwen3mini.tasks.splits import evaluation_set  # noqa: E402
from qwen3mini.tasks.traces import answer, thinking  # noqa: E402

PROBLEM = parse_question("Make 248 from the numbers 62, 4, 1, 9. Use each number at most once, with + - * / and "
                         "parentheses.")


def reply(thought: str, answer: str) -> str:
    return f"<think>\n{thought}\n</think>\n\n\\boxed{{{answer}}}"


def test_each_kind_of_reply():
    kind = countdown_misses.kind
    assert kind(PROBLEM, reply("62, 4: 62 * 4 (2*4=8, 6*4=24) = 248. Found it.", "62 * 4"), True) == "right"
    assert kind(PROBLEM, reply("62, 4: 62 * 4 = 248. Found it.", "62 * 4"), False) == "right"  # right counts
    assert kind(PROBLEM, "<think>\n62, 4, 1, 9: 62 + 9 = 71", False) == "does not end"
    assert kind(PROBLEM, reply("62, 62: 62 * 4 = 248. Found it.", "62 * 4 * 1 * 1"), True) == \
        "a number not given, or one twice"
    assert kind(PROBLEM, reply("62, 4: 62 + 4 = 66, 62 * 4 = 256. Found it.", "62 * 4 + 1"), True) == \
        "last move wrong (*)"
    assert kind(PROBLEM, reply("62, 4, 1, 9: 9 + 1 = 11, left 62, 4, 11\n62, 4: 62 * 4 = 248. Found it.",
                               "62 * 4 + 9 - 1"), True) == "an earlier result wrong"
    assert kind(PROBLEM, reply("62, 4: 62 - 4 = 58. Found it.", "62 - 4"), True) == "wrong otherwise"
    assert kind(PROBLEM, reply("62, 4: 62 * 4 = 248. Found it.", "62 *"), True) == "no answer read"


def test_beyond_budget_is_where_the_trace_gives_up():
    """A problem needs more search than the trace's budget exactly where the trace stops and gives up (its
    reply read as "gave up"), for some of the test problems and not for all."""
    beyond = 0
    for problem in evaluation_set("countdown", 4)[:25]:
        text = f"<think>\n{thinking(problem)}\n</think>\n\n{answer(problem, after_trace=True)}"
        assert countdown_misses.beyond_budget(problem) == (countdown_misses.kind(problem, text, True) == "gave up")
        beyond += countdown_misses.beyond_budget(problem)
    assert 0 < beyond < 25
    assert not countdown_misses.beyond_budget(parse_question(
        "Make 10 from the numbers 10, 3, 7. Use each number at most once, with + - * / and parentheses."))


def test_wrong_results_by_operation():
    """Only a pair's own result counts (not the tail of a longer expression), a slip the next line mends does
    not, and a product of several digits by one digit and a division that is not exact are counted apart."""
    wrong = countdown_misses.wrong_results
    assert wrong(reply("Check: 62 * 4 = 248.\nSolution: 75 - 10 - 10 + 6 = 61", "")) == {}
    assert wrong(reply("5, 78: 78 - 5 = 73, 78 / 5 = 15; no 630.\n8, 96: 96 / 8 = 11", "")) == \
        {"/ not exact": 1, "/": 1}
    assert wrong(reply("62, 4: 62 * 4 = 256\nWait, 62 * 4 = 248, not 256.", "")) == {}
    assert wrong(reply("62, 4: 62 * 4 (2*4=8, 6*4=24) = 256. Found it.\n12, 11: 12 * 11 = 121", "")) == \
        {"* by one digit": 1, "*": 1}


def test_going_round():
    """A reply that shows more dead ends than the trace ever does, and makes a first move again after a back-up
    named it, is read as both; one that keeps to the trace's budget and order as neither."""
    start = "Target 248 from 62, 4, 1, 9. Search: combine two numbers, promising moves first; back up at a dead end."
    dead = "62, 4, 1, 9: 62 + 9 = 71, left 4, 1, 71\nGive up on 4, 1, 71. Back to 62, 4, 1, 9; tried 62 + 9."
    text = "\n".join([start] + [dead] * (countdown._DEAD_ENDS + 1))
    assert countdown_misses.going_round(text) == (True, True)
    assert countdown_misses.going_round("\n".join([start, dead])) == (False, False)
