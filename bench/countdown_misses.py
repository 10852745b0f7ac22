"""Countdown replies read by what went wrong (issue 19's countdown floor). A model's greedy thinking replies to
the test problems of one size and to held-out generated ones (none a test item, none a query of the default
cold start), each read as: right; does not end; gave up (the search stopped at its budget, as the trace does
where it needs more dead ends); a number not given, or one used twice; the last move's result worked wrong (by
operation); an earlier worked result wrong; or wrong otherwise. The same split again by whether the trace's own
search needs more dead ends than its budget (``countdown._DEAD_ENDS``; the trace gives up there). And the
results the replies work out wrong, by operation.

    python bench/countdown_misses.py --model M --out replies.jsonl [--numbers 4] [--extra 200]
    python bench/countdown_misses.py --read replies.jsonl        # the tables again from saved replies
"""
import argparse
import json
import os
import re
import sys
from collections import Counter

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from qwen3mini.chat import split_completion  # noqa: E402
from qwen3mini.tasks import countdown, expressions, verify  # noqa: E402
from qwen3mini.tasks.answers import last_boxed  # noqa: E402
from train.sft_cold_start import Settings as ColdStart  # noqa: E402

# a result a line works out (its columns too), where a pair's result starts: not the end of a longer expression
WORKED = re.compile(r"(?:^|(?<=: )|(?<=, )|(?<=; ))(\d+) ([-+*/]) (\d+)(?: \([^)]*\))? = (\d+)", re.M)


def problems(numbers: int, extra: int) -> list:
    """The test set of ``numbers`` numbers, then ``extra`` generated problems held out from training: none a test
    item, none of the queries (training and validation) that the cold start draws with its default settings."""
    from qwen3mini.tasks.splits import evaluation_set
    from qwen3mini.training.task_samples import evaluation_items, fresh_queries, held_out
    ranges, cold = f"countdown:{numbers}", ColdStart()
    drawn = fresh_queries(ranges, cold.queries_per_cell + cold.val_per_cell, cold.seed, evaluation_items(),
                          "cold-start")
    return evaluation_set("countdown", numbers) + fresh_queries(ranges, extra, cold.seed, evaluation_items() |
                                                                held_out([drawn]), "countdown-misses")


def _wrong(a: str, op: str, b: str, value: str) -> bool:
    try:
        return expressions.evaluate(expressions.parse(f"{a} {op} {b}")) != int(value)
    except ZeroDivisionError:
        return True


def kind(problem, text: str, ended: bool) -> str:
    """What a reply to ``problem`` did (module docstring)."""
    if verify(problem, text):
        return "right"
    if not ended:
        return "does not end"
    parts = split_completion(text)
    if "the search stops here" in (parts.thinking or ""):
        return "gave up"
    try:
        used = expressions.numbers(expressions.parse(last_boxed(parts.answer or "") or ""))
    except ValueError:
        return "no answer read"
    if Counter(used) - Counter(problem.data[1]):
        return "a number not given, or one twice"
    thinking = parts.thinking or ""
    found = re.findall(WORKED.pattern + r"\. Found it", thinking, re.M)
    if found and _wrong(*found[-1]):
        return f"last move wrong ({found[-1][1]})"
    if any(_wrong(*result) for result in WORKED.findall(thinking)):
        return "an earlier result wrong"
    return "wrong otherwise"


def wrong_results(text: str) -> Counter:
    """The results a reply works out wrong, by operation, a product of several digits by one digit on its own
    (the trace writes its columns since session 21's change); a line that the next one corrects (``Wait, ...``:
    the slips the traces plant and mend) does not count."""
    wrong, lines = Counter(), (split_completion(text).thinking or "").split("\n")
    for line, after in zip(lines, lines[1:] + [""]):
        for a, op, b, value in [] if after.startswith("Wait,") else WORKED.findall(line):
            if _wrong(a, op, b, value):
                columns = op == "*" and min(int(a), int(b)) < 10 <= max(int(a), int(b))
                inexact = op == "/" and (int(b) == 0 or int(a) % int(b) != 0)
                wrong["* by one digit" if columns else "/ not exact" if inexact else op] += 1
    return wrong


def going_round(text: str) -> tuple[bool, bool]:
    """(more dead ends shown than the trace ever shows, a first move made again after a back-up named it)."""
    lines = text.split("\n")
    dead_ends = sum(bool(re.search(r"; no \d+(?: \(dead end \d+ of \d+\))?\. Back to|^Give up on ", line))
                    for line in lines)
    start = re.search(r"^Target \d+ from ([\d, ]+)\. Search", text, re.M)
    named, again = set(), False
    for line in lines:
        move = re.match(r"^([\d, ]+): (\d+ [-+*/] \d+)", line)
        again = again or bool(start and move and move.group(1) == start.group(1) and move.group(2) in named)
        named.update(*[tried.split(", ") for tried in re.findall(r"; tried ([^.]*)\.", line)])
    return dead_ends > countdown._DEAD_ENDS, again


def beyond_budget(problem) -> bool:
    """Whether the closest-first search meets more dead ends before its solution than the trace's budget (the
    trace gives up)."""
    return countdown.Countdown().gives_up(problem)


def report(records: list) -> None:
    kinds = Counter(r["kind"] for r in records)
    right = [r for r in records if r["kind"] == "right"]
    tests = sum(r["test"] for r in records)
    print(f"right: test {sum(r['test'] for r in right)} of {tests}, held out {sum(not r['test'] for r in right)} "
          f"of {len(records) - tests}, all {len(right)} of {len(records)}")
    print("by kind:", dict(kinds.most_common()))
    having = sum((Counter(set(wrong_results(r["text"]))) for r in records), Counter())   # (loops repeat lines)
    print("replies with a result worked out wrong, by operation:", dict(having.most_common()))
    endless = [going_round(r["text"]) for r in records if r["kind"] == "does not end"]
    print(f"of the {len(endless)} that do not end: {sum(more for more, _ in endless)} show more than "
          f"{countdown._DEAD_ENDS} dead ends, {sum(again for _, again in endless)} make a first move again after a "
          "back-up named it")
    for beyond in (False, True):
        group = [r for r in records if r["beyond_budget"] == beyond]
        test = [r for r in group if r["test"]]
        label = "more dead ends than the budget (the trace gives up)" if beyond else \
            f"at most {countdown._DEAD_ENDS} dead ends"
        print(f"{label}: {len(group)} (right: {sum(r['kind'] == 'right' for r in test)} of its {len(test)} test "
              "problems):", dict(Counter(r["kind"] for r in group).most_common()))


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", help="the model to ask (HF layout)")
    p.add_argument("--out", help="where to write the replies (JSONL)")
    p.add_argument("--read", help="saved replies (JSONL) to read instead of asking a model")
    p.add_argument("--numbers", type=int, default=4, choices=(3, 4, 5))
    p.add_argument("--extra", type=int, default=200, help="held-out generated problems beside the test set")
    p.add_argument("--max-new-tokens", type=int, default=1536)
    p.add_argument("--batch-size", type=int, default=125)
    args = p.parse_args()
    if args.read:
        try:
            with open(args.read) as f:
                records = [json.loads(line) for line in f]
        except (OSError, ValueError) as error:
            p.error(f"--read {args.read}: not this script's replies ({error!r})")
        return report(records)
    if not (args.model and args.out):
        p.error("--model and --out, or --read")
    import torch
    import qwen3mini
    from qwen3mini.chat import generate_replies, render
    asked = problems(args.numbers, args.extra)
    try:
        model = qwen3mini.load_model(args.model, dtype=torch.float32).eval()
        tokenizer = qwen3mini.load_tokenizer(args.model)
    except (OSError, ValueError) as error:
        p.error(f"--model {args.model}: {error}")
    prompts = [render(tokenizer, [{"role": "user", "content": q.question}], think=True) for q in asked]
    replies = []
    for start in range(0, len(prompts), args.batch_size):
        replies += generate_replies(model, tokenizer, prompts[start:start + args.batch_size], args.max_new_tokens,
                                    {"temperature": 0.0})
    tests = len(asked) - args.extra
    records = [{"question": q.question, "test": i < tests, "beyond_budget": beyond_budget(q),
                "kind": kind(q, r.text, r.completion.finish_reason == "stop"), "tokens": len(r.completion.tokens),
                "text": r.text} for i, (q, r) in enumerate(zip(asked, replies))]
    partial = args.out + ".partial"
    with open(partial, "w") as f:
        f.writelines(json.dumps(record) + "\n" for record in records)
    os.replace(partial, args.out)
    report(records)


if __name__ == "__main__":
    main()
