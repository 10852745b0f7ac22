"""Off-policy distillation (paper §4.5): the student learns, by SFT, from the teacher's own replies in both modes.

The data, all of it sampled from the teacher (a post-trained chat model) and kept only when a check accepts it:

* thinking samples: fresh task queries (``--per_cell`` per family and difficulty of ``--ranges``, none an
  evaluation item), ``--samples`` tries each in thinking mode at the paper's thinking settings, the first
  right reply that passes the response filters kept (rejection sampling, qwen3mini/training/fusion_samples.py);
  a ``--unflagged_share`` of them without a flag (thinking is the default), the rest with ``/think``;
* non-thinking samples: other queries of the same cells (``--no_think_per_cell``), asked in non-thinking mode
  at the paper's non-thinking settings, kept the same way, trained under ``/no_think`` or, a
  ``--template_switch_share`` of them, after no flag and the template's empty think block (``--no-think``);
* ``--general`` queries of general RL's other kinds (``--general_mix``: multi-turn dialogues with random flags,
  instructions, calculator calls; qwen3mini/training/general_rl.py), the first reply that earns general RL's
  reward kept (a tool's replies are prompt, not trained);
* rendered with the chat template as inference sees them, loss on the reply only, packed, trained with the
  shared SFT run (``stage.fine_tune``).

    python train/distill_off_policy.py --preset tiny     # CPU, seconds, after the tiny S3 and general-RL presets
    python train/distill_off_policy.py                   # one GPU, from runs/distill/student/s3/final
    python train/distill_off_policy.py --init_from runs/distill/student-moe/s3/final \
        --out_dir runs/distill/student-moe/off_policy    # the MoE student
    python train/distill_off_policy.py --init_from checkpoints/qwen3mini-chat --sample_only true \
        --teacher_samples runs/distill/teacher_samples.pt   # the teacher's samples alone (beside pre-training)

Output: ``out_dir/final`` (HF layout, bf16), ``teacher_samples.pt`` (unless ``--teacher_samples`` puts it
elsewhere), ``data.json``, ``log.jsonl``, ``loss.png``, ``summary.json``, ``ckpt``.
"""
import json
import os
import random
import sys
from dataclasses import dataclass

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import torch                                                                      # noqa: E402

import qwen3mini                                                                  # noqa: E402
from qwen3mini.chat import sampling_settings                                      # noqa: E402
from qwen3mini.sampling import SamplingParams                                     # noqa: E402
from qwen3mini.training.checkpoints import write_atomic                          # noqa: E402
from qwen3mini.training.distill import DISTILL_RANGES, load_teacher, rewarded_replies  # noqa: E402
from qwen3mini.training.distributed import barrier, close_distributed, init_distributed, seed_everything  # noqa: E402
from qwen3mini.training.fusion_samples import rejection_sampled, split_by_mode  # noqa: E402
from qwen3mini.training.general_rl import GeneralEnvironment, parse_mix, query_pool  # noqa: E402
from qwen3mini.training.settings import SFTSettings, parse_settings, require_at_least, setting  # noqa: E402
from qwen3mini.training.sft import render_sample, split_samples                   # noqa: E402
from qwen3mini.training.stage import fine_tune, load_start, run_script            # noqa: E402
from qwen3mini.training.task_samples import (SampleStats, evaluation_items, flagged_turn, fresh_queries,  # noqa: E402
                                              parse_ranges, switched_by_template)


@dataclass
class Settings(SFTSettings):
    init_from: str = setting("runs/distill/student/s3/final", "the student's pre-trained model (HF layout, with "
                             "its tokenizer): S3's out_dir/final")
    teacher: str = setting("checkpoints/qwen3mini-chat", "the post-trained teacher (HF layout, the same tokenizer)")
    ranges: str = setting(DISTILL_RANGES, "family:low-high difficulties of the task queries")
    per_cell: int = setting(150, "queries per (family, difficulty) answered in thinking mode")
    no_think_per_cell: int = setting(100, "queries per (family, difficulty) answered in non-thinking mode")
    samples: int = setting(4, "tries per query; the first reply that passes the checks is kept")
    max_new_tokens: int = setting(2048, "cap on a sampled reply (each also held to twice the solver's + 256)")
    general: int = setting(3000, "queries of general RL's other kinds answered by the teacher")
    general_mix: str = setting("dialogue:0.3,instruction:0.4,tool:0.3", "kind:share of those queries")
    rollout_rows: int = setting(2048, "rows per generation call")
    teacher_samples: str = setting("", "file of the teacher's kept samples: read when it was written with the same "
                                   "sampling settings (a resumed run, another student), else written after "
                                   "sampling (empty: out_dir/teacher_samples.pt)")
    sample_only: bool = setting(False, "sample the teacher into --teacher_samples and stop (no student is loaded: "
                                "--init_from only lends its tokenizer), so sampling can run beside pre-training")
    out_dir: str = "runs/distill/student/off_policy"
    steps: int = 300
    lr: float = 5e-4
    min_lr: float = 5e-5

    def __post_init__(self):
        super().__post_init__()
        parse_ranges(self.ranges)
        parse_mix(self.general_mix, "--general_mix")
        require_at_least(self, 0, "per_cell", "no_think_per_cell", "general")
        require_at_least(self, 1, "samples", "max_new_tokens", "rollout_rows")


PRESETS = {
    "tiny": dict(init_from="runs/tiny/s3/final", teacher="runs/tiny/rl_general/final", ranges="add:1-2,sort:3",
                 per_cell=2, no_think_per_cell=2, samples=2, max_new_tokens=24, general=4, rollout_rows=64,
                 val_share=0.2, seq_len=256, micro_batch=2, steps=4, warmup_steps=1, lr=3e-3, min_lr=3e-4,
                 eval_every=2, eval_batches=1, ckpt_every=2, log_every=2, device="cpu", dtype="float32",
                 progress=False, out_dir="runs/tiny/distill_off_policy"),
}


def teacher_samples(settings, tokenizer, teacher) -> tuple[list, SampleStats]:
    """Every kept (ids, mask, cell, kind) of the teacher's, and what was kept and dropped by cell."""
    stats, rng, samples = SampleStats(), random.Random(f"{settings.seed}|off-policy"), []
    per_cell = settings.per_cell + settings.no_think_per_cell
    cells = {}
    for problem in fresh_queries(settings.ranges, per_cell, settings.seed, evaluation_items(), "distill-off"):
        cells.setdefault((problem.family, problem.difficulty), []).append(problem)
    split = [split_by_mode(drawn, settings.per_cell, settings.no_think_per_cell) for drawn in cells.values()]
    asked = {"think": [p for thinking, _ in split for p in thinking],
             "no-think": [p for _, directly in split for p in directly]}
    for n, (mode, queries) in enumerate(asked.items()):
        replies = rejection_sampled(teacher, tokenizer, queries, settings.samples, sampling_settings(mode),
                                    settings.seed + n, settings.max_new_tokens, settings.rollout_rows,
                                    mode) if queries else []
        for problem, reply in zip(queries, replies):
            cell = (problem.family, problem.difficulty)
            if reply is None:
                stats.add(*cell, f"{mode}_rejected")
                continue
            turn = flagged_turn(problem.question, mode, rng, settings.unflagged_share if mode == "think" else 0.0)
            messages, enable_thinking = switched_by_template([turn], reply, rng, settings.template_switch_share)
            samples.append((*render_sample(tokenizer, messages + [reply], enable_thinking=enable_thinking), cell,
                            mode))
    queries, _ = query_pool(settings.general_mix, settings.ranges, max(1, settings.per_cell), settings.general,
                            settings.seed, "distill-off-general") if settings.general else ([], {})
    kept = rewarded_replies(GeneralEnvironment(tokenizer, settings.max_new_tokens), teacher, queries,
                            settings.samples, SamplingParams(**sampling_settings("think")), settings.seed + 2,
                            settings.rollout_rows) if queries else []
    for query, sample in zip(queries, kept):
        cell = (query.kind, query.mode)
        if sample is None:
            stats.add(*cell, f"{query.kind}_rejected")
        else:
            samples.append((*sample, cell, query.kind))
    return samples, stats


SAMPLED_BY = ("teacher", "ranges", "per_cell", "no_think_per_cell", "samples", "max_new_tokens", "general",
              "general_mix", "unflagged_share", "template_switch_share", "seed")   # what decides the teacher's samples


def sampled_once(settings, tokenizer, device, is_main) -> tuple[list, SampleStats]:
    """``teacher_samples``, read back from ``--teacher_samples`` when that file holds the same sampling settings,
    else sampled and written there (whole or not at all), so that sampling is never paid twice."""
    path = settings.teacher_samples or os.path.join(settings.out_dir, "teacher_samples.pt")
    sampled_by = {name: getattr(settings, name) for name in SAMPLED_BY}
    if os.path.exists(path):
        saved = torch.load(path, weights_only=True)
        if saved["sampled_by"] == sampled_by:
            print(f"teacher samples read from {path}")
            return [(ids, mask, tuple(cell), kind) for ids, mask, cell, kind in saved["samples"]], \
                SampleStats(saved["cells"])
        print(f"note: {path} holds samples of other settings; sampling again")
    teacher = load_teacher(settings.teacher, tokenizer, device)      # its shipped dtype, as at inference
    samples, stats = teacher_samples(settings, tokenizer, teacher)
    if is_main:
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        torch.save({"sampled_by": sampled_by, "samples": samples, "cells": stats.cells}, path + ".tmp")
        os.replace(path + ".tmp", path)
    return samples, stats


def main(argv=None):
    settings = parse_settings(Settings, argv, PRESETS, description=__doc__)
    info = init_distributed(settings.device)
    seed_everything(settings.seed)
    if not os.path.isdir(settings.init_from):
        raise ValueError(f"--init_from {settings.init_from}: no such folder (pre-train the student first: "
                         f"train/run_distill.sh)")
    tokenizer = qwen3mini.load_tokenizer(settings.init_from)
    samples, stats = sampled_once(settings, tokenizer, info.device, info.is_main)
    if settings.sample_only:
        close_distributed()
        return
    model = load_start(settings.init_from, tokenizer.vocab_size, previous_stage="the student's pre-training")
    train, val = split_samples(samples, settings.seq_len, settings.val_share, settings.seed, stats,
                               "distill_off_policy")
    if info.is_main:
        print(stats.table())
        print(f"{len(train)} training samples, {stats.total('tokens') / 1e6:.2f}M tokens; {len(val)} validation")
        os.makedirs(settings.out_dir, exist_ok=True)
        write_atomic(os.path.join(settings.out_dir, "data.json"), json.dumps(stats.cells, indent=1))
    fine_tune("off-policy distillation", settings, info, model, settings.init_from,
              tokenizer.token_to_id["<|endoftext|>"], train, val,
              {"samples": len(train), "sample_tokens": stats.total("tokens"), "teacher": settings.teacher})
    barrier()
    close_distributed()


if __name__ == "__main__":
    run_script(main)
