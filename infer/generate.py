#!/usr/bin/env python
"""Batch generation: a file of prompts in, one JSON line per sample out (for the post-training stages).

    python infer/generate.py --model DIR --input prompts.jsonl --output samples.jsonl --num-samples 4
    python infer/generate.py --model DIR --input questions.txt --output answers.jsonl --no-think
    python infer/generate.py --model DIR --input q.jsonl --output o.jsonl --thinking-budget 512

Input: ``.jsonl`` lines are objects with ``"prompt"`` (a user message) or ``"messages"`` (a chat, rendered with
the template, docs/qwen3.md §4); their other fields are copied to the output. Any other file is one prompt per line.
Output, one line per sample: the input fields plus ``index`` (input line), ``sample``, ``completion`` (the
generated text, think block and any budget stop text included), ``thinking``, ``response``, ``finish_reason``
("stop" or "length"), ``prompt_tokens`` and ``completion_tokens`` (generated tokens only).

Prompts are generated ``--batch-size`` at a time with the model's batched generation (one packed prefill, then
all rows decode together). Modes, sampling defaults and the thinking budget are those of ``chat.py`` (paper
§4.3, §4.6); the budget runs in two passes as in Qwen's own recipe: generate up to N thinking tokens, append the
stop text to the rows still thinking, and continue every unfinished row.
"""
import argparse
import json
import os
import sys
import time

# infer/ holds scripts, not a package: make the sibling chat.py importable however this file is loaded.
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from chat import DEFAULT_MODEL, STOP_THINKING, ChatError, load, sampling_settings  # noqa: E402

DEFAULT_MAX_NEW_TOKENS = 2048


def parse_args(argv=None):
    p = argparse.ArgumentParser(description="Generate completions for a file of prompts (JSONL out).")
    p.add_argument("--model", default=DEFAULT_MODEL, help="HF-layout model directory or hub repo id")
    p.add_argument("--input", required=True, help=".jsonl with prompt/messages per line, or text: a prompt a line")
    p.add_argument("--output", required=True, help="JSONL file to write (overwritten)")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--think", dest="think", action="store_true", default=True, help="thinking mode (default)")
    mode.add_argument("--no-think", dest="think", action="store_false", help="empty think block in the prompt")
    mode.add_argument("--raw", action="store_true", help="feed prompts as plain text, no chat template (base models)")
    p.add_argument("--thinking-budget", type=int, default=None, metavar="N")
    p.add_argument("--system", default=None, help="system prompt for inputs given as a bare prompt")
    p.add_argument("--num-samples", type=int, default=1, metavar="K", help="samples per prompt")
    p.add_argument("--batch-size", type=int, default=16, metavar="B", help="rows generated together")
    p.add_argument("--max-new-tokens", type=int, default=None, metavar="N",
                   help=f"tokens per sample (default {DEFAULT_MAX_NEW_TOKENS}, or what the context leaves)")
    p.add_argument("--temperature", type=float, default=None)
    p.add_argument("--top-p", type=float, default=None)
    p.add_argument("--top-k", type=int, default=None)
    p.add_argument("--presence-penalty", type=float, default=None)
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--device", default=None)
    p.add_argument("--dtype", default=None, choices=["float32", "bfloat16", "float16", "fp32", "bf16", "fp16"])
    args = p.parse_args(argv)
    for name in ("num_samples", "batch_size", "max_new_tokens"):
        if getattr(args, name) is not None and getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be >= 1")
    if args.thinking_budget is not None and (args.thinking_budget < 0 or not args.think or args.raw):
        p.error("--thinking-budget needs thinking mode (not --no-think / --raw) and N >= 0")
    return args


def read_prompts(path: str) -> list:
    """The input file as a list of dicts with "prompt" or "messages" (plus whatever else a JSONL line holds)."""
    items = []
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            if not path.endswith(".jsonl"):
                items.append({"prompt": line.rstrip("\n")})
                continue
            try:
                item = json.loads(line)
            except json.JSONDecodeError as error:
                raise ChatError(f"{path}:{number}: not valid JSON ({error})") from None
            if not isinstance(item, dict) or not (isinstance(item.get("prompt"), str)
                                                  or isinstance(item.get("messages"), list)):
                raise ChatError(f"{path}:{number}: expected an object with a string \"prompt\" or a list "
                                "\"messages\"")
            items.append(item)
    if not items:
        raise ChatError(f"{path}: no prompts")
    return items


def prompt_ids(tokenizer, item: dict, think: bool, raw: bool, system=None) -> list:
    if raw:
        return tokenizer.encode(item["prompt"])
    messages = item.get("messages")
    if messages is None:
        messages = ([{"role": "system", "content": system}] if system else []) + \
                   [{"role": "user", "content": item["prompt"]}]
    text = tokenizer.apply_chat_template(messages, add_generation_prompt=True, enable_thinking=think)
    return tokenizer.encode(text)


def generate_batch(model, tokenizer, prompts, max_new_tokens, sampling, budget=None, seed=None) -> list:
    """Complete each token list in ``prompts`` (one batch); returns per row a dict with "completion_ids",
    "thinking_ids", "response_ids" and "finish_reason". With ``budget``, rows still thinking after ``budget``
    tokens past <think> get the stop text (paper §4.3) and continue; the stop text is in "completion_ids"
    only and counts toward neither the budget nor ``max_new_tokens``."""
    special = tokenizer.token_to_id
    think_id, end_id = special["<think>"], special["</think>"]
    stops = sorted(set(model.config.eos_token_ids) | {special["<|im_end|>"], special["<|endoftext|>"]})

    def run(rows, n, call):
        outs = model.generate(rows, n, stop_token_ids=stops, seed=None if seed is None else seed + call,
                              **sampling)
        return [out[len(row):] for row, out in zip(rows, outs)]

    first = run(prompts, max_new_tokens if budget is None else min(budget + 1, max_new_tokens), 0)
    rows = [dict(generated=g, injected=[]) for g in first]
    if budget is not None:
        # Rows that neither stopped nor used up max_new_tokens continue, after the stop text if still thinking.
        todo = [i for i, r in enumerate(rows) if not _stopped(r["generated"], stops)
                and len(r["generated"]) < max_new_tokens]
        for i in todo:
            g = rows[i]["generated"]
            if g and g[0] == think_id and end_id not in g:
                rows[i]["injected"] = tokenizer.encode(STOP_THINKING)
        continued = [prompts[i] + rows[i]["generated"] + rows[i]["injected"] for i in todo]
        if todo:
            spent = len(rows[todo[0]]["generated"])       # every unfinished row generated the same count
            room = model.config.max_position_embeddings - max(len(c) for c in continued)
            if min(max_new_tokens - spent, room) > 0:
                for i, g in zip(todo, run(continued, min(max_new_tokens - spent, room), 1)):
                    rows[i]["more"] = g
    return [_result(r, think_id, end_id, stops) for r in rows]


def _stopped(ids, stops) -> bool:
    return bool(ids) and ids[-1] in stops


def _result(row, think_id, end_id, stops) -> dict:
    """Split one row's tokens into thinking and response (the reply format of paper §4.3, Table 9)."""
    first, injected, more = row["generated"], row["injected"], row.get("more", [])
    generated = first + more
    finish = "stop" if _stopped(generated, stops) else "length"
    content = generated[:-1] if finish == "stop" else generated
    if injected:                                       # <think> + budget tokens, stop text, then the answer
        thinking, response = first[1:], content[len(first):]
    elif content and content[0] == think_id:
        end = content.index(end_id) if end_id in content else len(content)
        thinking, response = content[1:end], content[end + 1:]
    else:
        thinking, response = [], content
    return {"completion_ids": first + injected + more, "thinking_ids": thinking, "response_ids": response,
            "finish_reason": finish, "generated_tokens": len(generated)}


def decode(tokenizer, ids) -> str:
    """``tokenizer.decode`` that shows ids without text (the embedding's padding rows, which an untrained
    model may sample) as U+FFFD instead of failing."""
    text, start = [], 0
    for i, token in enumerate(ids + [None]):
        if token is None or token >= tokenizer.vocab_size:
            text.append(tokenizer.decode(ids[start:i]) + ("\ufffd" if token is not None else ""))
            start = i + 1
    return "".join(text)


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        items = read_prompts(args.input)
        model, tokenizer = load(args.model, args.device, args.dtype)
    except (ChatError, OSError) as error:
        print(f"generate.py: error: {error}", file=sys.stderr)
        return 2
    sampling = sampling_settings("think" if args.think else "no-think", args)   # --raw: thinking defaults
    context = model.config.max_position_embeddings
    stop_text = len(tokenizer.encode(STOP_THINKING)) if args.thinking_budget is not None else 0
    jobs = []                                          # (item index, sample index, prompt ids)
    for index, item in enumerate(items):
        ids = prompt_ids(tokenizer, item, args.think, args.raw, args.system)
        if len(ids) + (args.max_new_tokens or 1) + stop_text > context:
            print(f"generate.py: error: {args.input}: prompt {index + 1} is {len(ids)} tokens; with "
                  f"--max-new-tokens {args.max_new_tokens or 1} (and the budget's stop text, {stop_text} "
                  f"tokens) it exceeds the model's context of {context}", file=sys.stderr)
            return 2
        jobs += [(index, k, ids) for k in range(args.num_samples)]
    longest = max(len(ids) for _, _, ids in jobs)
    max_new_tokens = args.max_new_tokens or min(DEFAULT_MAX_NEW_TOKENS, context - longest - stop_text)

    with open(args.output, "w", encoding="utf-8") as out:
        for start in range(0, len(jobs), args.batch_size):
            batch = jobs[start:start + args.batch_size]
            began = time.perf_counter()
            seed = None if args.seed is None else args.seed + 2 * start
            results = generate_batch(model, tokenizer, [ids for _, _, ids in batch], max_new_tokens,
                                     sampling, args.thinking_budget, seed)
            for (index, sample, ids), r in zip(batch, results):
                record = {**items[index], "index": index, "sample": sample,
                          "completion": decode(tokenizer, r["completion_ids"]),
                          "thinking": decode(tokenizer, r["thinking_ids"]).strip("\n"),
                          "response": decode(tokenizer, r["response_ids"]).lstrip("\n"),
                          "finish_reason": r["finish_reason"], "prompt_tokens": len(ids),
                          "completion_tokens": r["generated_tokens"]}
                out.write(json.dumps(record, ensure_ascii=False) + "\n")
            out.flush()
            tokens = sum(r["generated_tokens"] for r in results)
            seconds = time.perf_counter() - began
            print(f"[{min(start + len(batch), len(jobs))}/{len(jobs)} samples · {tokens} tokens in {seconds:.1f} s "
                  f"· {tokens / seconds:.1f} tokens/s]", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
