#!/usr/bin/env python
"""Evaluate a model on the verifiable tasks (issue 17 §2), the one evaluation every post-training stage runs.

    python train/evaluate.py --preset tiny                                  # CPU smoke run, seconds
    python train/evaluate.py --model checkpoints/qwen3mini-chat             # the full sets, on a GPU
    python train/evaluate.py --families add,mul --difficulties 1-5 --modes think --budgets none --samples 0

For each selected family and difficulty, the fixed held-out test set (qwen3mini.tasks.splits) is asked in
thinking and non-thinking mode: greedy pass@1 with its Wilson 95% interval, pass@k from --samples replies an
item at the paper's sampling for the mode (thinking: T 0.6, top-p 0.95, top-k 20; paper §4.6), mean thinking
and answer tokens, and the share of replies that end by themselves; then thinking mode again under each
thinking budget (paper §4.3's stop text), and ThinkFollow: multi-turn dialogues with /think and /no_think
flags, scored on the last reply's mode. Everything runs through qwen3mini.chat.generate_replies.

Writes OUT/evaluation.json (every figure; its layout: qwen3mini/evaluation/__init__.py; this script adds model,
device, dtype and wall_seconds),
OUT/accuracy_by_difficulty.png and OUT/accuracy_by_budget.png, each replaced only once all are complete. Until
then OUT/journal.json keeps every finished phase: the same command run again (same selection, same weights,
device and quantization) resumes after the last one.
"""
import argparse
import os
import sys
import time
from dataclasses import asdict

import torch

from qwen3mini.chat import ChatError, load
from qwen3mini.evaluation import BUDGETS, MODES, Journal, Selection, evaluate, write_report
from qwen3mini.quantize import QUANTIZE_CHOICES
from qwen3mini.tasks import FAMILIES

# ---------------------------------------------------------------------------------------------- settings
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODELS = [os.path.join(REPO, "checkpoints", name) for name in ("qwen3mini-chat", "qwen3mini-base")]
OUT = "runs/eval"
SAMPLES = 8                 # sampled replies an item, for pass@1..pass@8
THINKFOLLOW = 200           # dialogues
INSTRUCTIONS = 40           # items per instruction (strict: the constraint holds and the answer is right)
KNOWLEDGE = 50              # held-out knowledge questions per kind (man-page function/command, word, term)
TOOLS = 30                  # 4x4, 5x5 and 6x6-digit products each, with the calculator and without
BATCH_SIZE = 512            # rows generated together
MAX_NEW_TOKENS = 3072       # cap on a reply (fits the shipped 4096-token context after the longest prompt)
SEED = 0

PRESETS = {   # a preset sets defaults; options given on the command line still win
    "tiny": dict(families="add,sort", difficulties="3", limit=2, samples=2, budgets="0,16,unlimited",
                 thinkfollow=4, instructions=1, knowledge=1, tools=1, max_new_tokens=32, batch_size=64, device="cpu",
                 out="runs/tiny/eval"),
}


def default_model() -> str:
    """The shipped chat model if it exists, else the shipped base model."""
    return next((path for path in MODELS if os.path.isdir(path)), MODELS[-1])


def parse_args(argv=None):
    p = argparse.ArgumentParser(prog="evaluate.py", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", choices=sorted(PRESETS), help="a named group of defaults (tiny: the CPU smoke run)")
    p.add_argument("--model", default=None, help="model directory (default: checkpoints/qwen3mini-chat if it "
                                                 "exists, else checkpoints/qwen3mini-base)")
    p.add_argument("--out", default=OUT, help=f"output directory (default {OUT})")
    p.add_argument("--families", default=",".join(FAMILIES), help="comma-separated families (default: all)")
    p.add_argument("--difficulties", default=None, help="difficulties such as 1,2,5-8, where a family has them "
                                                        "(default: every difficulty of each family)")
    p.add_argument("--modes", default=",".join(MODES), help="think, no-think or both (default both)")
    p.add_argument("--switch", choices=["template", "flags"], default="template",
                   help="how a mode is asked for: the chat template's enable_thinking (default), or a /think or "
                        "/no_think flag after the question")
    p.add_argument("--samples", type=int, default=SAMPLES, metavar="N",
                   help=f"sampled replies an item for pass@k, 0 for greedy only (default {SAMPLES})")
    p.add_argument("--budgets", default=",".join(map(str, BUDGETS)) + ",unlimited",
                   help="thinking budgets swept in thinking mode; 'unlimited' is the thinking cells themselves, "
                        "'none' skips the sweep (default: 0 to 512 and unlimited)")
    p.add_argument("--thinkfollow", type=int, default=THINKFOLLOW, metavar="N",
                   help=f"ThinkFollow dialogues, 0 to skip (default {THINKFOLLOW})")
    p.add_argument("--instructions", type=int, default=INSTRUCTIONS, metavar="N",
                   help=f"items per instruction of the five, 0 to skip (default {INSTRUCTIONS})")
    p.add_argument("--knowledge", type=int, default=KNOWLEDGE, metavar="N",
                   help=f"held-out knowledge questions per kind, 0 to skip (default {KNOWLEDGE})")
    p.add_argument("--tools", type=int, default=TOOLS, metavar="N",
                   help=f"products per size (4x4, 5x5, 6x6) with the calculator and without, 0 to skip "
                        f"(default {TOOLS})")
    p.add_argument("--limit", type=int, default=None, metavar="N", help="items per cell (default: the whole set)")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1... (default: cuda when present)")
    p.add_argument("--quantize", default=None, choices=QUANTIZE_CHOICES,
                   help="int8: the model's projections in int8 (load_model's quantize)")
    p.add_argument("--batch-size", type=int, default=BATCH_SIZE, metavar="B",
                   help=f"rows generated together (default {BATCH_SIZE})")
    p.add_argument("--max-new-tokens", type=int, default=MAX_NEW_TOKENS, metavar="N",
                   help=f"cap on a reply's tokens (default {MAX_NEW_TOKENS}); a reply is also held to twice the "
                        "solver's own reply plus 256 and to what the context leaves")
    p.add_argument("--seed", type=int, default=SEED, help=f"seed of the sampled replies (default {SEED})")
    preset = p.parse_known_args(argv)[0].preset
    p.set_defaults(**PRESETS.get(preset, {}))
    args = p.parse_args(argv)
    try:
        args.selection = selection(args)
        args.selection.test_sets()                        # unknown families, difficulties that match nothing
    except ValueError as error:
        p.error(f"argument --{error}")
    if os.path.exists(args.out) and not os.path.isdir(args.out):
        p.error(f"argument --out: {args.out} is a file, not a directory")
    return args


def selection(args) -> Selection:
    """The Selection the options ask for; ValueError "option: problem" for a bad value."""
    for name in ("samples", "thinkfollow", "instructions", "knowledge", "tools"):
        if getattr(args, name) < 0:
            raise ValueError(f"{name}: must be >= 0, got {getattr(args, name)}")
    for name in ("limit", "batch_size", "max_new_tokens"):
        if getattr(args, name) is not None and getattr(args, name) < 1:
            raise ValueError(f"{name.replace('_', '-')}: must be >= 1, got {getattr(args, name)}")
    modes = names(args.modes)
    if not modes or set(modes) - set(MODES):
        raise ValueError(f"modes: expected think and/or no-think, got {args.modes!r}")
    return Selection(families=names(args.families), difficulties=integers(args.difficulties, "difficulties"),
                     modes=modes, budgets=budgets(args.budgets), samples=args.samples,
                     thinkfollow=args.thinkfollow, instructions=args.instructions, knowledge=args.knowledge,
                     tools=args.tools, limit=args.limit, max_new_tokens=args.max_new_tokens,
                     batch_size=args.batch_size, seed=args.seed, switch=args.switch)


def names(text: str) -> list[str]:
    return [name.strip() for name in text.split(",") if name.strip()]


def integers(text: str | None, option: str) -> list[int] | None:
    """``1,2,5-8`` as [1, 2, 5, 6, 7, 8]; None stays None (everything)."""
    if text is None:
        return None
    values = []
    for part in names(text):
        low, _, high = part.partition("-")
        if not (low.isdigit() and (not high or high.isdigit())):
            raise ValueError(f"{option}: {part!r} is not a number or a range such as 5-8")
        values += range(int(low), int(high or low) + 1)
    return values


def budgets(text: str) -> list[int]:
    if text.strip() == "none":
        return []
    return integers(",".join(b for b in names(text) if b != "unlimited"), "budgets") or []


def journal_key(args, model_path: str, device: str) -> dict:
    """What a journal's phases hold for: the selection, the device and quantization (numerics), and the weights
    (each file's name, size and modification time: retrained weights start the evaluation over)."""
    weights = sorted((name, os.path.getsize(os.path.join(model_path, name)),
                      os.path.getmtime(os.path.join(model_path, name)))
                     for name in (os.listdir(model_path) if os.path.isdir(model_path) else [])
                     if name.endswith(".safetensors"))
    return {"selection": asdict(args.selection), "model": os.path.abspath(model_path), "weights": weights,
            "device": device, "quantize": args.quantize}


def print_table(results: dict):
    """Greedy pass@1 by family and difficulty in each mode (and the largest pass@k), the budget sweep pooled
    over everything, and ThinkFollow."""
    cells = [c for c in results["cells"] if c["budget"] is None]
    modes = list(dict.fromkeys(c["mode"] for c in cells))
    print(f"{'family':<10} {'diff':>4} " + " ".join(f"{m + ' pass@1':>22} {'pass@k':>8}" for m in modes))
    for family, difficulty in dict.fromkeys((c["family"], c["difficulty"]) for c in cells):
        row = f"{family:<10} {difficulty:>4} "
        for mode in modes:
            c = next(c for c in cells if (c["family"], c["difficulty"], c["mode"]) == (family, difficulty, mode))
            k = max(c["pass@k"], key=int) if c["pass@k"] else None
            row += f"{c['pass@1']:>7.2f} [{c['wilson95'][0]:.2f}, {c['wilson95'][1]:.2f}] " + \
                   (f"{'@' + k:>4} {c['pass@k'][k]:.2f}" if k else f"{'-':>8}") + " "
        print(row)
    sweep = [c for c in results["cells"] if c["mode"] == "think"]
    if any(c["budget"] is not None for c in sweep):
        points = sorted({c["budget"] for c in sweep if c["budget"] is not None}) + [None]
        pooled = {b: [c for c in sweep if c["budget"] == b] for b in points}
        print("budget sweep (think, greedy, all cells): " + ", ".join(
            f"{'unlimited' if b is None else b}: {sum(c['correct'] for c in cs) / sum(c['n'] for c in cs):.2f}"
            for b, cs in pooled.items()))
    follow = results["thinkfollow"]
    if follow:
        print(f"ThinkFollow: {follow['correct']}/{follow['n']} = {follow['accuracy']:.2f} "
              f"[{follow['wilson95'][0]:.2f}, {follow['wilson95'][1]:.2f}]; replied modes {follow['replied_modes']}")
    general = results["general"]
    for mode, figures in general.get("instructions", {}).items():
        print(f"instructions ({mode}): strict {figures['strict']['accuracy']:.2f} of {figures['strict']['n']}; by "
              "constraint " + ", ".join(f"{k} {v['strict']:.2f}" for k, v in figures["by_constraint"].items()))
    for mode, figures in general.get("knowledge", {}).items():
        print(f"knowledge ({mode}): covers {figures['covers']['accuracy']:.2f} of {figures['covers']['n']}; by kind "
              + ", ".join(f"{k} {v:.2f}" for k, v in figures["by_kind"].items()))
    for mode, figures in general.get("tools", {}).items():
        print(f"tools ({mode}): right with the calculator {figures['with_tool']['accuracy']:.2f}, without "
              f"{figures['without_tool']['accuracy']:.2f}; valid calls {figures['valid_calls']['accuracy']} of "
              f"{figures['valid_calls']['n']}, "
              f"{figures['calls_per_reply']:.2f} calls a reply")
    print("replies ended by themselves within 1,024 tokens: " + ", ".join(
        f"{mode} {figures['accuracy']:.3f}" for mode, figures in results["ended_within_1024"].items()))


def main(argv=None):
    args = parse_args(argv)
    model_path = args.model or default_model()
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    try:
        model, tokenizer, _ = load(model_path, device=device, quantize=args.quantize)
    except ChatError as error:
        sys.exit(f"evaluate.py: {error}")
    print(f"evaluating {model_path} on {device}", flush=True)
    start = time.perf_counter()
    journal = Journal(os.path.join(args.out, "journal.json"), journal_key(args, model_path, device))
    try:
        results = evaluate(model, tokenizer, args.selection, log=lambda line: print(line, flush=True),
                           journal=journal)
    except (ChatError, ValueError) as error:            # not a Qwen3 tokenizer; a prompt longer than the context
        sys.exit(f"evaluate.py: {model_path}: {error}")
    results.update(model=model_path, device=device, dtype=str(model.dtype).removeprefix("torch."),
                   quantize=args.quantize, wall_seconds=time.perf_counter() - start)
    print_table(results)
    for path in write_report(results, args.out):
        print(f"wrote {path}")
    journal.remove()
    return results


if __name__ == "__main__":
    main()
