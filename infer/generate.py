#!/usr/bin/env python
"""Batch generation: a file of prompts in, one JSON line per sample out (for the post-training stages).

    python infer/generate.py --model DIR --input prompts.jsonl --output samples.jsonl --num-samples 4
    python infer/generate.py --model DIR --input questions.txt --output answers.jsonl --no-think
    python infer/generate.py --model DIR --input q.jsonl --output o.jsonl --thinking-budget 512 --resume
    python infer/generate.py --model DIR --input q.jsonl --output o.jsonl --tools calculator --max-calls 4

Input: ``.jsonl`` lines are objects with ``"prompt"`` (a user message) or ``"messages"`` (a chat, rendered with
the template, docs/qwen3.md §4); their other fields are copied to the output. Any other file is one prompt per line.
Output, one line per sample: the input fields plus ``index`` (input line), ``sample``, ``completion`` (the
generated text, think block and any budget stop text included), ``thinking``, ``response``, ``tool_calls``,
``finish_reason`` ("stop" or "length"), ``prompt_tokens`` and ``completion_tokens`` (generated tokens only).

Prompts are generated ``--batch-size`` at a time through ``qwen3mini.chat.generate_replies`` (one packed
prefill, all rows decoding together). Modes, sampling defaults and the thinking budget are the chat's (paper
§4.3, §4.6).

``--tools calculator``: the tool is offered through the chat template and each prompt goes through
``qwen3mini.tools.generate_with_tools`` (the model's calls run, their results go back to it, at most
``--max-calls`` per sample; ``--max-new-tokens`` counts the sampled tokens of all rounds). ``completion`` is then
every token after the prompt (tool turns included), ``thinking``/``response``/``tool_calls`` are the last reply's,
``finish_reason`` may also be "max_calls", and each line adds ``calls`` ({"name", "arguments", "result",
"valid"} per call run) and ``all_calls_valid``.

Nothing is lost: every argument and the whole input are checked before any file is written; samples go to
``OUTPUT.partial`` (flushed after each batch), renamed to OUTPUT once all are there. ``--resume`` continues an
interrupted run: it keeps the leading lines of ``OUTPUT.partial`` (or of a finished OUTPUT) that are whole
records of this input's samples in order, drops an incomplete last line, and generates the rest. Resume with
the same arguments; with ``--seed``, batch k of a run is seeded with seed + its first sample's number.
"""
import argparse
import json
import os
import shutil
import sys
import time

from qwen3mini.chat import STOP_THINKING, ChatError, decode_text, generate_replies, load, render, sampling_settings
from qwen3mini.checkpoint import SHIPPED_CHECKPOINT
from qwen3mini.quantize import QUANTIZE_CHOICES
from qwen3mini.tools import TOOLS, generate_with_tools, resolve_tools

POST_TRAINED_MAX_NEW_TOKENS = 2048     # per sample unless the checkpoint or --max-new-tokens says otherwise


def parse_args(argv=None):
    p = argparse.ArgumentParser(prog="generate.py",
                                description="Generate completions for a file of prompts (JSONL out).")
    p.add_argument("--model", default=SHIPPED_CHECKPOINT, help="HF-layout model directory or hub repo id")
    p.add_argument("--input", required=True, help=".jsonl with prompt/messages per line, or text: a prompt a line")
    p.add_argument("--output", required=True, help="JSONL file to write (replaced once every sample is done)")
    p.add_argument("--resume", action="store_true", help="continue OUTPUT.partial left by an interrupted run")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--think", dest="think", action="store_true", default=True, help="thinking mode (default)")
    mode.add_argument("--no-think", dest="think", action="store_false", help="empty think block in the prompt")
    mode.add_argument("--raw", action="store_true", help="feed prompts as plain text, no chat template (base models)")
    p.add_argument("--thinking-budget", type=int, default=None, metavar="N")
    p.add_argument("--system", default=None, help="system prompt for inputs given as a bare prompt")
    p.add_argument("--tools", action="append", choices=sorted(TOOLS), default=None, metavar="NAME",
                   help=f"offer this tool and run the model's calls (repeatable): {', '.join(sorted(TOOLS))}")
    p.add_argument("--max-calls", type=int, default=4, metavar="N", help="with --tools: most calls per sample")
    p.add_argument("--num-samples", type=int, default=1, metavar="K", help="samples per prompt")
    p.add_argument("--batch-size", type=int, default=16, metavar="B", help="rows generated together")
    p.add_argument("--max-new-tokens", type=int, default=None, metavar="N",
                   help="tokens per sample (default: the checkpoint's generation_config.json, else "
                        f"{POST_TRAINED_MAX_NEW_TOKENS} for a post-trained model, 256 for a base model; at "
                        "most what the context leaves)")
    p.add_argument("--temperature", type=float, default=None)
    p.add_argument("--top-p", type=float, default=None)
    p.add_argument("--top-k", type=int, default=None)
    p.add_argument("--presence-penalty", type=float, default=None)
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--device", default=None)
    p.add_argument("--dtype", default=None, choices=["float32", "bfloat16", "float16", "fp32", "bf16", "fp16"])
    p.add_argument("--quantize", default=None, choices=QUANTIZE_CHOICES, help="int8: int8 weights (CPU decode)")
    args = p.parse_args(argv)
    for name in ("num_samples", "batch_size", "max_new_tokens"):
        if getattr(args, name) is not None and getattr(args, name) < 1:
            p.error(f"argument --{name.replace('_', '-')}: must be >= 1")
    if args.tools and args.raw:
        p.error("argument --tools: needs the chat template (not --raw)")
    if args.max_calls < 0:
        p.error("argument --max-calls: must be >= 0")
    if args.thinking_budget is not None and (args.thinking_budget < 0 or not args.think or args.raw):
        p.error("argument --thinking-budget: needs thinking mode (not --no-think / --raw) and N >= 0")
    try:
        sampling_settings("think", vars(args))
    except ChatError as error:
        p.error(f"argument --{str(error).replace('_', '-')}")
    try:
        check_paths(args.input, args.output)
        (args.system or "").encode("utf-8")   # bytes that are not UTF-8 reach Python as lone surrogates
    except ChatError as error:
        p.error(str(error))
    except UnicodeEncodeError:
        p.error("argument --system: not valid UTF-8")
    return args


def check_paths(input_path: str, output: str):
    """The input is a readable file; the output (and its .partial) can be written and is not the input."""
    if not os.path.isfile(input_path):
        raise ChatError(f"argument --input: {input_path} is not a file" if os.path.exists(input_path) else
                        f"argument --input: no such file {input_path}")
    if os.path.isdir(output):
        raise ChatError(f"argument --output: {output} is a directory")
    directory = os.path.dirname(os.path.abspath(output))
    if not os.path.isdir(directory):
        raise ChatError(f"argument --output: no such directory {os.path.dirname(output) or directory}")
    if not os.access(directory, os.W_OK):
        raise ChatError(f"argument --output: cannot write files in {os.path.dirname(output) or directory}")
    for path in (output, output + ".partial"):
        if os.path.exists(path) and os.path.samefile(path, input_path):
            raise ChatError(f"argument --output: {path} is the input file; writing it would destroy the input")


def read_prompts(path: str) -> list:
    """The input file as a list of dicts with "prompt" or "messages" (plus whatever else a JSONL line holds);
    an error names the file and line."""
    items = []
    try:
        f = open(path, "rb")
    except OSError as error:
        raise ChatError(f"{path}: cannot read it ({error.strerror})") from None
    with f:
        for number, raw in enumerate(f, 1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as error:
                raise ChatError(f"{path}:{number}: not valid UTF-8 (byte {raw[error.start]:#04x} at column "
                                f"{error.start + 1})") from None
            if not line.strip():
                continue
            if not path.endswith(".jsonl"):
                items.append({"prompt": line.rstrip("\r\n")})
                continue
            try:
                item = json.loads(line)
            except json.JSONDecodeError as error:
                raise ChatError(f"{path}:{number}: not valid JSON ({error})") from None
            problem = item_problem(item)
            if problem:
                raise ChatError(f"{path}:{number}: {problem}")
            items.append(item)
    if not items:
        raise ChatError(f"{path}: no prompts")
    return items


def item_problem(item) -> str | None:
    """What is wrong with one JSONL input line, or None."""
    if not isinstance(item, dict) or not (isinstance(item.get("prompt"), str) or "messages" in item):
        return "expected an object with a string \"prompt\" or a list \"messages\""
    messages = item.get("messages", [])
    if not isinstance(messages, list) or ("messages" in item and not messages):
        return "\"messages\" must be a non-empty list"
    for i, message in enumerate(messages):
        if not (isinstance(message, dict) and message.get("role") in ("system", "user", "assistant", "tool")
                and isinstance(message.get("content"), (str, type(None)))):
            return (f"messages[{i}] is not a message: expected {{\"role\": system/user/assistant/tool, "
                    f"\"content\": a string}}, got {json.dumps(message, ensure_ascii=False)[:80]}")
    return None


def conversation(item: dict, system=None) -> list:
    """The messages of one input line: its "messages", or the system prompt (if any) and its "prompt"."""
    if item.get("messages") is not None:
        return item["messages"]
    return ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": item["prompt"]}]


def prompt_ids(tokenizer, item: dict, think: bool, raw: bool, system=None, tools=None) -> list:
    if raw:
        return tokenizer.encode(item["prompt"])
    return render(tokenizer, conversation(item, system), think, [t.schema for t in resolve_tools(tools)] or None)


def finished_records(path: str, items: list, jobs: list) -> int:
    """How many leading lines of ``path`` are whole records of ``jobs`` in order; the file is cut after them.
    A whole record of another input is an error (resuming would mix two runs)."""
    kept, size = 0, 0
    with open(path, "rb") as f:
        for raw in f:
            try:
                record = json.loads(raw) if raw.endswith(b"\n") and kept < len(jobs) else None
            except ValueError:
                record = None
            if not isinstance(record, dict):
                break
            index, sample, _ = jobs[kept]
            if (record.get("index"), record.get("sample")) != (index, sample) or \
                    any(record.get(key) != value for key, value in items[index].items()):
                raise ChatError(f"{path}: line {kept + 1} is not sample {sample} of input line {index + 1}: it "
                                f"comes from another input or other arguments; delete the file to start over")
            kept, size = kept + 1, size + len(raw)
    os.truncate(path, size)
    return kept


def tool_records(model, tokenizer, items: list, args, max_new_tokens: int, sampling: dict) -> list:
    """The output fields of each item's sample through the tool loop (``qwen3mini.tools.generate_with_tools``)."""
    rollouts = generate_with_tools(model, tokenizer, [conversation(item, args.system) for item in items], args.tools,
                                   max_new_tokens, sampling, args.think, args.max_calls, args.thinking_budget)
    records = []
    for rollout in rollouts:
        last = rollout.replies[-1].parts if rollout.replies else None
        records.append({"completion": decode_text(tokenizer, rollout.tokens), "thinking": last.thinking if last else "",
                        "response": rollout.answer, "tool_calls": last.tool_calls if last else [],
                        "finish_reason": rollout.finish, "completion_tokens": sum(rollout.mask),
                        "calls": rollout.calls, "all_calls_valid": rollout.all_calls_valid})
    return records


def main(argv=None) -> int:
    args = parse_args(argv)
    partial = args.output + ".partial"
    try:
        items = read_prompts(args.input)
        if os.path.exists(partial) and not args.resume:
            raise ChatError(f"{partial} holds an interrupted run: --resume continues it; delete it to start over")
        try:
            model, tokenizer, info = load(args.model, args.device, args.dtype, args.quantize)
        except ChatError as error:
            raise ChatError(f"--model: {error}") from None
        sampling = sampling_settings("think" if args.think else "no-think", vars(args))  # --raw: thinking's
        context = model.config.max_position_embeddings
        stop_text = len(tokenizer.encode(STOP_THINKING)) if args.thinking_budget is not None else 0
        jobs = []                                      # (item index, sample index, prompt ids)
        for index, item in enumerate(items):
            ids = prompt_ids(tokenizer, item, args.think, args.raw, args.system, args.tools)
            if len(ids) + (args.max_new_tokens or 1) + stop_text > context:
                raise ChatError(f"{args.input}: prompt {index + 1} is {len(ids)} tokens; with --max-new-tokens "
                                f"{args.max_new_tokens or 1} (and the budget's stop text, {stop_text} tokens) "
                                f"it exceeds the model's context of {context}")
            jobs += [(index, k, ids) for k in range(args.num_samples)]
        longest = max(len(ids) for _, _, ids in jobs)
        max_new_tokens = args.max_new_tokens or min(info.reply_limit(POST_TRAINED_MAX_NEW_TOKENS),
                                                     context - longest - stop_text)
        if args.resume and not os.path.exists(partial) and os.path.exists(args.output):
            shutil.copyfile(args.output, partial)      # a finished run: resume from its lines
        done = finished_records(partial, items, jobs) if args.resume and os.path.exists(partial) else 0
    except ChatError as error:
        print(f"generate.py: error: {error}", file=sys.stderr)
        return 2

    if args.resume:
        print(f"[resuming: {done} of {len(jobs)} samples kept from {partial}]", file=sys.stderr)
    with open(partial, "a" if done else "w", encoding="utf-8") as out:
        for start in range(done, len(jobs), args.batch_size):
            batch = jobs[start:start + args.batch_size]
            began = time.perf_counter()
            seed = None if args.seed is None else args.seed + start
            if args.tools:
                records = tool_records(model, tokenizer, [items[index] for index, _, _ in batch], args,
                                       max_new_tokens, {**sampling, "seed": seed})
            else:
                replies = generate_replies(model, tokenizer, [ids for _, _, ids in batch], max_new_tokens,
                                           {**sampling, "seed": seed}, args.thinking_budget)
                records = [{"completion": reply.text, "thinking": reply.parts.thinking, "response": reply.parts.answer,
                            "tool_calls": reply.parts.tool_calls, "finish_reason": reply.completion.finish_reason,
                            "completion_tokens": reply.completion.generated_tokens} for reply in replies]
            for (index, sample, ids), fields in zip(batch, records):
                fields = dict(fields)
                counted = fields.pop("completion_tokens")
                line = {**items[index], "index": index, "sample": sample, **fields, "prompt_tokens": len(ids),
                        "completion_tokens": counted}
                out.write(json.dumps(line, ensure_ascii=False) + "\n")
            out.flush()
            tokens = sum(record["completion_tokens"] for record in records)
            seconds = time.perf_counter() - began
            print(f"[{start + len(batch)}/{len(jobs)} samples · {tokens} tokens in {seconds:.1f} s "
                  f"· {tokens / seconds:.1f} tokens/s]", file=sys.stderr)
    os.replace(partial, args.output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
