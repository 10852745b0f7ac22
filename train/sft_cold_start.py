"""Stage 1 of post-training, the long-CoT cold start (paper §4.1): SFT of the base model on verified
reasoning traces, briefly, so that it learns the pattern and leaves headroom for RL.

The report's strong teacher is replaced by the programmatic solvers of ``qwen3mini.tasks``: their traces
write the steps a careful person would, check the result, and a share of them slips, notices it ("Wait, ...")
and corrects it. The data (qwen3mini/training/task_samples.py):

* queries from every family over a stated cold-start range of difficulties (``--ranges``; the harder end of
  every ladder, longer numbers, larger products, 5-number countdown, is left to RL), the same number per
  (family, difficulty), with a unique answer, none of them an evaluation item, and none that the base model
  already answers without thinking (``--drop_answered``, measured through the chat's generation path);
* replies in thinking mode (``/think`` or no flag) and, a ``--no_think_share`` of them, in non-thinking mode
  (the answer line alone: after ``/no_think``, or a ``--template_switch_share`` of them after no flag and the
  template's empty think block, as ``infer/chat.py --no-think`` asks), each through the response filters;
* rendered with the chat template exactly as inference sees them, the loss on the reply's tokens only, many
  conversations packed per row with attention kept inside each (qwen3mini/training/sft.py).

    python train/sft_cold_start.py --preset tiny                  # CPU, seconds, after S3's tiny preset
    python train/sft_cold_start.py                                # one GPU, from checkpoints/qwen3mini-base
    python train/sft_cold_start.py --steps_scale 4 --out_dir runs/sft_cold_start_4x   # the 4x longer comparison

Output: ``out_dir/final`` (HF layout, bf16, with the tokenizer), ``data.json`` (the data summary),
``log.jsonl``, ``loss.png``, ``summary.json``, and the resumable checkpoint ``out_dir/ckpt``.
"""
import dataclasses
import json
import os
import sys
import time
from dataclasses import dataclass

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import qwen3mini                                                                  # noqa: E402
from qwen3mini.training.checkpoints import write_atomic                          # noqa: E402
from qwen3mini.training.distributed import barrier, close_distributed, init_distributed, seed_everything  # noqa: E402
from qwen3mini.training.settings import TrainSettings, parse_settings, setting    # noqa: E402
from qwen3mini.training.sft import render_sample                                  # noqa: E402
from qwen3mini.training.stage import fine_tune, load_start, run_script            # noqa: E402
from qwen3mini.training.task_samples import (NO_THINK, THINK, SampleStats, answered_directly,  # noqa: E402
                                             cell_rng, draw_queries, evaluation_items, flagged_turn,
                                             parse_ranges, reply_message, response_rejected,
                                             switched_by_template)

# The cold start's share of each ladder (issue 17 §3): RL gets the rest (add 7-10 digits, mul 4x4 and 5x5,
# expr 6-8 operations, sort 11-20 items, countdown with 5 numbers, chain 6-8 steps). Linear's whole ladder
# (1-6) is here: issue 19 asks 97% of it, and the runs that left linear 5-6 to RL ended far below that there
# (bench/RESULTS.md, sessions 10, 12 and 16).
COLD_START_RANGES = "add:1-6,mul:1-3,expr:1-5,linear:1-6,sort:3-10,countdown:3-4,chain:1-5"


@dataclass
class Settings(TrainSettings):
    init_from: str = setting("checkpoints/qwen3mini-base", "the model to fine-tune (HF layout, with its tokenizer)")
    tokenizer: str = setting("", "tokenizer folder saved with the model (empty: the one in --init_from)")
    ranges: str = setting(COLD_START_RANGES, "family:low-high difficulties of the cold start, comma-separated")
    queries_per_cell: int = setting(3500, "training queries per (family, difficulty) before filtering")
    val_per_cell: int = setting(8, "validation queries per (family, difficulty)")
    no_think_share: float = setting(0.2, "share of replies in non-thinking mode")
    template_switch_share: float = setting(0.5, "share of non-thinking replies asked with no flag and the "
                                                "template's empty think block (enable_thinking=False)")
    unflagged_share: float = setting(0.5, "share of thinking queries without /think (thinking is the default)")
    slip_share: float = setting(0.15, "share of thinking traces with a slip that the trace notices and corrects")
    small_cell_replies: int = setting(8, "replies per query, at most, in a cell with fewer training queries than "
                                         "--queries_per_cell (1-digit sums): each its own mode, flag and slip")
    drop_answered: bool = setting(True, "drop queries the start model answers right without thinking (§4.1)")
    steps_scale: float = setting(1.0, "multiply --steps (4: the 4x longer cold start that RL must beat)")
    out_dir: str = "runs/sft_cold_start"
    seq_len: int = 1024                         # the base model's training length; a trace fits in it
    micro_batch: int = 64
    grad_accum: int = 1                         # 64 x 1,024 = 65k tokens per step on one GPU
    steps: int = 1500                           # about 3.5 passes over the data: brief (paper §4.1)
    lr: float = 1e-3
    min_lr: float = 1e-4
    schedule: str = "cosine"
    warmup_steps: int = 30
    eval_every: int = 200
    eval_batches: int = 4
    ckpt_every: int = 200
    compile: bool = False                       # the masked SFT step has not been measured compiled yet

    def __post_init__(self):
        super().__post_init__()
        for name in ("no_think_share", "template_switch_share", "unflagged_share", "slip_share"):
            if not 0 <= getattr(self, name) <= 1:
                raise ValueError(f"--{name} {getattr(self, name)}: expected a share in [0, 1]")
        if not self.steps_scale > 0 or min(self.queries_per_cell, self.val_per_cell, self.small_cell_replies) < 1:
            raise ValueError("--steps_scale, --queries_per_cell, --val_per_cell and --small_cell_replies must be "
                             "positive")
        parse_ranges(self.ranges)


PRESETS = {
    "tiny": dict(init_from="runs/tiny/s3/final", ranges="add:1-2,sort:3-4,linear:1", queries_per_cell=12,
                 val_per_cell=2, seq_len=256,
                 micro_batch=2, steps=8, warmup_steps=1, lr=3e-3, min_lr=3e-4, eval_every=4, eval_batches=1,
                 ckpt_every=4, log_every=2, drop_answered=False, device="cpu", dtype="float32", compile=False,
                 progress=False, out_dir="runs/tiny/sft_cold_start"),
}


def build_samples(settings, tokenizer, judge=None):
    """(train samples, val samples, stats): rendered (ids, mask) pairs of the filtered queries and replies;
    ``judge``: the start model that drops the queries it answers without thinking (None: keep them)."""
    exclude = evaluation_items()
    stats, train, val = SampleStats(), [], []
    for family, levels in parse_ranges(settings.ranges).items():
        for difficulty in levels:
            rng = cell_rng(settings.seed, family, difficulty)
            queries = draw_queries(family, difficulty, settings.queries_per_cell + settings.val_per_cell, rng,
                                   exclude)
            stats.add(family, difficulty, "drawn", len(queries))
            if judge is not None:
                answered = answered_directly(judge, tokenizer, queries)
                stats.add(family, difficulty, "answered_directly", sum(answered))
                queries = [q for q, a in zip(queries, answered) if not a]
            # A small space (111 one-digit sums against 3,500 of every other cell) would weigh 30 times less:
            # its training queries get several replies each, so its rules (7 - 8 below zero) are seen enough;
            # and it gives validation at most a quarter of its queries (1x1 products: 11 outside the test set).
            held = min(settings.val_per_cell, len(queries) // 4)
            repeats = min(settings.small_cell_replies, max(1, settings.queries_per_cell // max(1, len(queries) - held)))
            for n, problem in enumerate(queries):
                split = val if n < held else train
                for _ in range(1 if split is val else repeats):
                    mode = NO_THINK if rng.random() < settings.no_think_share else THINK
                    reply = reply_message(problem, mode, rng, settings.slip_share)
                    if response_rejected(problem, reply):
                        stats.add(family, difficulty, "rejected_reply")
                        continue
                    user = flagged_turn(problem.question, mode, rng, settings.unflagged_share)
                    messages, enable_thinking = switched_by_template([user], reply, rng,
                                                                     settings.template_switch_share)
                    ids, mask = render_sample(tokenizer, messages + [reply], enable_thinking=enable_thinking)
                    if len(ids) > settings.seq_len:
                        stats.add(family, difficulty, "longer_than_row")
                        continue
                    split.append((ids, mask))
                    if split is train:
                        stats.add(family, difficulty, mode)
                        if not enable_thinking:
                            stats.add(family, difficulty, "template_switch")
                        stats.add(family, difficulty, "tokens", len(ids))
                        stats.add(family, difficulty, "reply_tokens", sum(mask))
    if not train:
        raise ValueError(f"--ranges {settings.ranges}: no training sample survived the filters")
    return train, val or train[:1], stats


def main(argv=None):
    settings = parse_settings(Settings, argv, PRESETS, description=__doc__)
    settings = dataclasses.replace(settings, steps=max(1, round(settings.steps * settings.steps_scale)))
    tokenizer_dir = settings.tokenizer or settings.init_from
    info = init_distributed(settings.device)
    seed_everything(settings.seed)
    if not os.path.isdir(tokenizer_dir):
        option = "--tokenizer" if settings.tokenizer else "--init_from"
        raise ValueError(f"{option} {tokenizer_dir}: no such folder (the tiny preset starts from S3's tiny run)")
    tokenizer = qwen3mini.load_tokenizer(tokenizer_dir)
    model = load_start(settings.init_from, tokenizer.vocab_size, previous_stage="the pre-training stages")
    started = time.perf_counter()
    # The query filter asks the start model as inference would: in its shipped dtype, through generation.
    judge = qwen3mini.load_model(settings.init_from, device=info.device) if settings.drop_answered else None
    train, val, stats = build_samples(settings, tokenizer, judge)
    del judge
    data_seconds = round(time.perf_counter() - started, 1)
    if info.is_main:
        print(stats.table())
        print(f"{len(train)} training samples, {stats.total('tokens') / 1e6:.2f}M tokens "
              f"({stats.total('reply_tokens') / 1e6:.2f}M trained); {len(val)} validation samples")
        os.makedirs(settings.out_dir, exist_ok=True)
        write_atomic(os.path.join(settings.out_dir, "data.json"), json.dumps(stats.cells, indent=1))
    fine_tune("SFT cold start", settings, info, model, tokenizer_dir, tokenizer.token_to_id["<|endoftext|>"], train,
              val, {"samples": len(train), "sample_tokens": stats.total("tokens"), "data_seconds": data_seconds})
    barrier()
    close_distributed()


if __name__ == "__main__":
    run_script(main)
