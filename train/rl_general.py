"""Stage 4 of post-training, general RL (paper §4.4): the GRPO of stage 2 with rule-based rewards over a mix of
tasks, from the thinking-mode fusion model (qwen3mini/training/general_rl.py has the tasks and the rewards):

* reasoning with a random ``/think``, ``/no_think``, no flag or the hard switch (``enable_thinking=False``), and
  multi-turn dialogues whose last flag decides the mode (format following; the reasoning slice that keeps
  accuracy from falling away);
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
import sys
from dataclasses import dataclass

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from qwen3mini.training.general_rl import GeneralEnvironment, GeneralRLSettings  # noqa: E402
from qwen3mini.training.rl import run_rl                                           # noqa: E402
from qwen3mini.training.settings import parse_settings                            # noqa: E402
from qwen3mini.training.stage import run_script                                   # noqa: E402


@dataclass
class Settings(GeneralRLSettings):
    init_from: str = "runs/sft_mode_fusion/final"
    out_dir: str = "runs/rl_general"


PRESETS = {
    "tiny": dict(init_from="runs/tiny/sft_mode_fusion/final", ranges="add:1-2,sort:3", per_cell=3, pool_size=8,
                 queries=4, group=2, max_new_tokens=24, rollout_rows=64, seq_len=256, micro_batch=2, steps=2,
                 warmup_steps=1, lr=1e-3, min_lr=1e-3, ckpt_every=2, samples_logged=1, device="cpu",
                 dtype="float32", progress=False, out_dir="runs/tiny/rl_general"),
}


def main(argv=None):
    settings = parse_settings(Settings, argv, PRESETS, description=__doc__)
    run_rl("RL (general)", settings, lambda tokenizer: GeneralEnvironment(tokenizer, settings.max_new_tokens),
           lambda generator, tokenizer, info: settings.pool("general"),
           previous_stage="the thinking-mode fusion")


if __name__ == "__main__":
    run_script(main)
