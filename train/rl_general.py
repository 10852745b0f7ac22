"""Stage 4 of post-training, general RL (paper §4.4): the GRPO of stage 2 with rule-based rewards over a mix of
tasks, from the thinking-mode fusion model (qwen3mini/training/general_rl.py has the tasks and the rewards):

* reasoning with a random ``/think``, ``/no_think`` or no flag, and multi-turn dialogues whose last flag decides
  the mode (format following; the reasoning slice that keeps accuracy from falling away);
* instruction following: a task question with one of the five constraints appended;
* tool use: 4- to 6-digit products with the ``calculator`` tool offered; calls answered by the safe evaluator.

A completion earns 1 when every rule of its kind holds (it ends by itself, in the mode asked for, with the right
answer, the constraint kept, only valid tool calls), else 0. The loop, logs and checkpoints are stage 2's
(qwen3mini/training/rl.py).

    python train/rl_general.py --preset tiny                         # CPU, seconds, after the fusion tiny preset
    python train/rl_general.py                                       # one GPU, from runs/sft_mode_fusion/final
    torchrun --standalone --nproc_per_node 8 train/rl_general.py

Output in ``out_dir``: ``final`` (HF layout, bf16), ``log.jsonl``, ``samples.jsonl``, ``curves.png``,
``summary.json`` and the resumable ``ckpt``.
"""
import os
import random
import sys
from dataclasses import dataclass

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from qwen3mini.training.general_rl import KINDS, GeneralEnvironment, make_query  # noqa: E402
from qwen3mini.training.rl import RLSettings, run_rl                               # noqa: E402
from qwen3mini.training.settings import parse_settings, setting                   # noqa: E402
from qwen3mini.training.stage import run_script                                   # noqa: E402
from qwen3mini.training.task_samples import evaluation_items, parse_ranges, rl_candidates  # noqa: E402

MIX = "reasoning:0.3,dialogue:0.2,instruction:0.3,tool:0.2"
RANGES = "add:1-7,mul:1-3,expr:1-5,linear:1-5,sort:3-11,countdown:3-4,chain:1-6"


@dataclass
class Settings(RLSettings):
    init_from: str = "runs/sft_mode_fusion/final"
    mix: str = setting(MIX, "kind:share of each kind of query in the pool (kinds: " + ", ".join(KINDS) + ")")
    ranges: str = setting(RANGES, "family:low-high difficulties of the task problems the queries are built on")
    per_cell: int = setting(40, "task problems per (family, difficulty)")
    pool_size: int = setting(4000, "queries in the pool")
    out_dir: str = "runs/rl_general"

    def __post_init__(self):
        super().__post_init__()
        parse_ranges(self.ranges)
        shares = parse_mix(self.mix)
        if not shares or abs(sum(shares.values()) - 1) > 1e-6:
            raise ValueError(f"--mix {self.mix}: expected shares of {', '.join(KINDS)} that sum to 1")


PRESETS = {
    "tiny": dict(init_from="runs/tiny/sft_mode_fusion/final", ranges="add:1-2,sort:3", per_cell=3, pool_size=8,
                 queries=4, group=2, max_new_tokens=24, rollout_rows=64, seq_len=256, micro_batch=2, steps=2,
                 warmup_steps=1, lr=1e-3, min_lr=1e-3, ckpt_every=2, samples_logged=1, device="cpu",
                 dtype="float32", progress=False, out_dir="runs/tiny/rl_general"),
}


def parse_mix(text: str) -> dict[str, float]:
    """``"reasoning:0.5,tool:0.5"`` -> {"reasoning": 0.5, "tool": 0.5}; ValueError naming a bad part."""
    shares = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        kind, _, share = part.partition(":")
        try:
            shares[kind] = float(share)
        except ValueError:
            shares[kind] = -1.0
        if kind not in KINDS or not 0 <= shares[kind] <= 1:
            raise ValueError(f"--mix {part!r}: expected kind:share with a kind of {', '.join(KINDS)}")
    return shares


def make_pool(settings):
    """The queries: ``pool_size`` of them in the mix's shares, over fresh training problems (no evaluation item)."""
    problems = rl_candidates(settings.ranges, settings.per_cell, settings.seed, evaluation_items(), "general")
    rng, queries, counts = random.Random(f"{settings.seed}|general"), [], {}
    for kind, share in parse_mix(settings.mix).items():
        counts[kind] = round(share * settings.pool_size)
        queries += [make_query(kind, rng, problems) for _ in range(counts[kind])]
    return queries, {"problems": len(problems), "queries": counts}


def main(argv=None):
    settings = parse_settings(Settings, argv, PRESETS, description=__doc__)
    run_rl("RL (general)", settings, lambda tokenizer: GeneralEnvironment(tokenizer, settings.max_new_tokens),
           lambda generator, tokenizer, info: make_pool(settings), previous_stage="the thinking-mode fusion")


if __name__ == "__main__":
    run_script(main)
