"""Stage 3 of post-training, thinking-mode fusion (paper §4.3): SFT of the reasoning-RL model on thinking and
non-thinking data together, so that one model thinks or answers directly as the user's flag asks.

The data (qwen3mini/training/fusion_samples.py):

* thinking samples: the stage-2 model's own replies to the cold start's queries (``--per_cell`` per family and
  difficulty), ``--samples`` tries each at the paper's thinking settings, the first right one that passes the
  response filters kept (rejection sampling); a ``--unflagged_share`` of them without a flag (thinking is the
  default), the rest with ``/think``; and the same for the questions of stage 2's pool (``--rl_pool``: the
  edge, where RL made its gains, which fusion at its larger learning rate otherwise washed out);
* non-thinking samples: ``/no_think`` and the solver's answer line (a ``--template_switch_share`` of these and of
  every single-turn non-thinking sample below asked instead with no flag and the template's empty think block,
  as ``infer/chat.py --no-think`` asks), on other queries of the same cells and on
  fresh queries of the cells past the cold start's range (``--direct_past_range``), so that a direct answer ends
  however long the number it writes: asked only the cold start's range, the non-thinking model met a 10-digit
  answer in no training sample and ran into repeated digits;
* ``--dialogues`` multi-turn samples (2 to 4 turns, random flags; the reply follows the last flag);
* ``--knowledge`` knowledge questions (man pages, WordNet, FOLDOC; train/data/knowledge),
  ``--instructions_per_cell`` task questions with one of the five instructions appended (each also asked
  without it, ``--instruction_twins``: the minimal pair that ties the answer's form to the instruction), and
  ``--tool_queries`` long products asked with the ``calculator`` offered (the call, then the answer after the
  tool's result), and ``--small_talk`` greetings, questions about the model, thanks and goodbyes, each in a
  random mode;
* rendered with the chat template as inference sees them, loss on the reply only, packed (the cold start's
  plumbing). The thinking budget is not trained: whether it emerges is measured by the evaluation.

    python train/sft_mode_fusion.py --preset tiny                    # CPU, seconds, after the RL tiny preset
    python train/sft_mode_fusion.py                                  # one GPU, from runs/rl_reasoning/final

Output: ``out_dir/final`` (HF layout, bf16), ``data.json``, ``log.jsonl``, ``loss.png``, ``summary.json``, ``ckpt``.
"""
import json
import os
import random
import sys
import time
from dataclasses import dataclass

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import qwen3mini                                                                  # noqa: E402
from qwen3mini.chat import sampling_settings                                      # noqa: E402
from qwen3mini.evaluation import MODES                                            # noqa: E402
from qwen3mini.training.checkpoints import write_atomic                          # noqa: E402
from qwen3mini.training.distributed import barrier, close_distributed, init_distributed, seed_everything  # noqa: E402
from qwen3mini.tasks import FAMILIES, parse_question, problem_hash               # noqa: E402
from qwen3mini.tasks.instructions import CONSTRAINTS                               # noqa: E402
from qwen3mini.tasks.knowledge import load_knowledge                              # noqa: E402
from qwen3mini.training.fusion_samples import (dialogue_sample, direct_answer,  # noqa: E402
                                               instruction_sample, knowledge_sample, rejection_sampled,
                                               small_talk_sample, split_by_mode, tool_problem,
                                               tool_samples)
from qwen3mini.training.settings import SFTSettings, parse_settings, require_at_least, setting  # noqa: E402
from qwen3mini.training.sft import render_sample, split_samples                   # noqa: E402
from qwen3mini.training.stage import fine_tune, load_start, run_script            # noqa: E402
from qwen3mini.training.task_samples import (SampleStats, cold_start_queries, evaluation_items,  # noqa: E402
                                              flagged_turn, fresh_queries, parse_ranges, switched_by_template)


@dataclass
class Settings(SFTSettings):
    init_from: str = setting("runs/rl_reasoning/final", "the reasoning-RL model (HF layout, with its tokenizer)")
    cold_start_dir: str = setting("runs/sft_cold_start", "the cold start's out_dir: its queries are sampled again")
    per_cell: int = setting(150, "queries per (family, difficulty) for thinking replies (rejection sampling)")
    rl_pool: str = setting("runs/rl_reasoning/pool.json", "stage 2's pool.json: its questions are rejection-sampled "
                                                          "too ('' for none)")
    samples: int = setting(4, "tries per query; the first right reply that passes the filters is kept")
    max_new_tokens: int = setting(2048, "cap on a sampled reply (each also held to twice the solver's + 256)")
    no_think_per_cell: int = setting(100, "queries per (family, difficulty) answered in non-thinking mode")
    direct_past_range: str = setting("add:7-10,mul:4-5,expr:6-8,sort:11-20,countdown:5,chain:6-8",
                                     "cells past the cold start's range whose fresh queries are answered in "
                                     "non-thinking mode too, no_think_per_cell each ('' for none)")
    dialogues: int = setting(3000, "multi-turn samples with random /think and /no_think flags")
    knowledge: int = setting(4000, "knowledge questions from the train split of train/data/knowledge (0: none)")
    instructions_per_cell: int = setting(60, "task questions per (family, difficulty) with an instruction")
    instruction_twins: bool = setting(True, "ask each instructed question again without its instruction")
    tool_queries: int = setting(400, "4- to 6-digit products asked with the calculator offered (two samples each)")
    small_talk: int = setting(600, "greetings, questions about the model, thanks and goodbyes")
    out_dir: str = "runs/sft_mode_fusion"
    steps: int = 200
    lr: float = 2e-4
    min_lr: float = 2e-5

    def __post_init__(self):
        super().__post_init__()
        require_at_least(self, 0, "per_cell", "no_think_per_cell", "dialogues", "knowledge",
                         "instructions_per_cell", "tool_queries", "small_talk")
        require_at_least(self, 1, "samples")
        if self.direct_past_range:
            parse_ranges(self.direct_past_range, "--direct_past_range")


PRESETS = {
    "tiny": dict(init_from="runs/tiny/rl_reasoning/final", cold_start_dir="runs/tiny/sft_cold_start", per_cell=2,
                 rl_pool="runs/tiny/rl_reasoning/pool.json", samples=2, max_new_tokens=24, no_think_per_cell=2,
                 direct_past_range="add:3", dialogues=6, knowledge=4, instructions_per_cell=1, tool_queries=2,
                 small_talk=2, val_share=0.2, seq_len=512, micro_batch=2, steps=6, warmup_steps=1, lr=3e-3,
                 min_lr=3e-4, eval_every=3, eval_batches=1, ckpt_every=3, log_every=2, device="cpu", dtype="float32",
                 progress=False, out_dir="runs/tiny/sft_mode_fusion"),
}


def rl_pool_questions(path: str) -> list:
    """The problems of stage 2's pool (its ``pool.json``), none if ``path`` is empty."""
    if not path:
        return []
    if not os.path.exists(path):
        raise ValueError(f"--rl_pool {path}: no such file (train/rl_reasoning.py writes it; '' for none)")
    with open(path) as f:
        return [parse_question(q) for q in json.load(f)["questions"]]


def conversations(settings, tokenizer, model) -> tuple[list, SampleStats]:
    """Every (messages, reply, kind, cell, tools) of the stage, before rendering."""
    cells = {}
    for problem in cold_start_queries(settings.cold_start_dir):
        cells.setdefault(f"{problem.family}/{problem.difficulty}", []).append(problem)
    thinking, direct, stats = [], [], SampleStats()
    for cell, problems in cells.items():
        random.Random(f"{settings.seed}|fusion|{cell}").shuffle(problems)
        asked_thinking, asked_directly = split_by_mode(problems, settings.per_cell, settings.no_think_per_cell)
        thinking += [(cell, p) for p in asked_thinking]
        direct += [(cell, p) for p in asked_directly]
    thinking += [(f"{p.family}/{p.difficulty}", p) for p in rl_pool_questions(settings.rl_pool)]
    if settings.direct_past_range:
        direct += [(f"{p.family}/{p.difficulty}", p) for p in fresh_queries(
            settings.direct_past_range, settings.no_think_per_cell, settings.seed, evaluation_items(), "fusion-direct")]
    sampling = sampling_settings("think")
    replies = rejection_sampled(model, tokenizer, [p for _, p in thinking], settings.samples, sampling, settings.seed,
                                settings.max_new_tokens) if thinking else []
    rng, items = random.Random(f"{settings.seed}|fusion"), []
    for (cell, problem), reply in zip(thinking, replies):
        if reply is None:
            stats.add(*cell.split("/"), "no_reply_kept")
        else:
            items.append(([flagged_turn(problem.question, "think", rng, settings.unflagged_share)], reply, "think",
                          cell, None))
    items += [([flagged_turn(p.question, "no-think", rng, 0.0)], direct_answer(p), "no-think", cell, None)
              for cell, p in direct]
    pool = [p for problems in cells.values() for p in problems]
    for i in range(settings.dialogues):
        messages, reply = dialogue_sample(random.Random(f"{settings.seed}|dialogue|{i}"), pool)
        items.append((messages, reply, "dialogue", f"dialogue/{len(messages) // 2 + 1}", None))
    for cell, problems in cells.items():
        for problem in problems[-settings.instructions_per_cell:] if settings.instructions_per_cell else []:
            name, mode = rng.choice(list(CONSTRAINTS)), rng.choice(MODES)
            items.append((*instruction_sample(problem, name, mode, rng, settings.unflagged_share),
                          "instruction", f"instruction/{name}", None))
            if settings.instruction_twins:
                items.append((*instruction_sample(problem, None, mode, rng, settings.unflagged_share), "instruction",
                              "instruction/none", None))
    records = load_knowledge(split="train") if settings.knowledge else []
    for item in random.Random(f"{settings.seed}|knowledge").sample(records, min(settings.knowledge, len(records))):
        items.append((*knowledge_sample(item, rng.choice(MODES), rng, settings.unflagged_share), "knowledge",
                      f"knowledge/{item['kind']}", None))
    exclude, tool_rng = evaluation_items(), random.Random(f"{settings.seed}|tools")
    for _ in range(settings.tool_queries):
        problem = tool_problem(tool_rng)
        if problem_hash(FAMILIES["mul"], problem) in exclude:
            continue
        for messages, reply, tools in tool_samples(problem, rng.choice(MODES), rng, settings.unflagged_share):
            items.append((messages, reply, "tool", f"tool/{problem.difficulty}", tools))
    talk_rng = random.Random(f"{settings.seed}|small_talk")
    for _ in range(settings.small_talk):
        items.append((*small_talk_sample(talk_rng.choice(MODES), talk_rng, settings.unflagged_share), "small_talk",
                      "small_talk/all", None))
    return items, stats


def build_samples(settings, tokenizer, model) -> tuple[list, list, SampleStats]:
    """(train, val, stats): the rendered (ids, mask) samples, a ``val_share`` of them held out by index."""
    items, stats = conversations(settings, tokenizer, model)
    rng, rendered = random.Random(f"{settings.seed}|template switch"), []
    for messages, reply, kind, cell, tools in items:
        messages, enable_thinking = switched_by_template(messages, reply, rng, settings.template_switch_share)
        if not enable_thinking:
            stats.add(*cell.split("/"), "template_switch")
        rendered.append((*render_sample(tokenizer, messages + [reply], tools, enable_thinking), cell.split("/"), kind))
    train, val = split_samples(rendered, settings.seq_len, settings.val_share, settings.seed, stats, "sft_mode_fusion")
    return train, val, stats


def main(argv=None):
    settings = parse_settings(Settings, argv, PRESETS, description=__doc__)
    info = init_distributed(settings.device)
    seed_everything(settings.seed)
    if not os.path.isdir(settings.init_from):
        raise ValueError(f"--init_from {settings.init_from}: no such folder (run train/rl_reasoning.py first)")
    tokenizer = qwen3mini.load_tokenizer(settings.init_from)
    model = load_start(settings.init_from, tokenizer.vocab_size, previous_stage="reasoning RL")
    started = time.perf_counter()
    sampler = qwen3mini.load_model(settings.init_from, device=info.device)   # its shipped dtype, as at inference
    train, val, stats = build_samples(settings, tokenizer, sampler)
    del sampler
    data_seconds = round(time.perf_counter() - started, 1)                     # rejection sampling included
    if info.is_main:
        print(stats.table())
        print(f"{len(train)} training samples, {stats.total('tokens') / 1e6:.2f}M tokens; {len(val)} validation")
        os.makedirs(settings.out_dir, exist_ok=True)
        write_atomic(os.path.join(settings.out_dir, "data.json"), json.dumps(stats.cells, indent=1))
    fine_tune("thinking-mode fusion", settings, info, model, settings.init_from,
              tokenizer.token_to_id["<|endoftext|>"], train, val,
              {"samples": len(train), "sample_tokens": stats.total("tokens"), "data_seconds": data_seconds})
    barrier()
    close_distributed()


if __name__ == "__main__":
    run_script(main)
