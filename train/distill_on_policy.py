"""On-policy distillation (paper §4.5): the student samples, the teacher scores the same tokens, and the student
minimises the reverse KL to the teacher on its own samples.

1. The queries: general RL's mix over fresh task problems (qwen3mini/training/general_rl.py): reasoning with a
   random ``/think``, ``/no_think``, no flag or the hard switch, multi-turn dialogues whose last flag decides the mode,
   instructions and calculator calls, so the student samples in both modes.
2. Every step: ``--queries`` queries, ``--group`` completions of each sampled by the student through the one
   generation path (a bf16 copy of the student that gets the fp32 master weights first) at temperature 1,
   a tool's replies answered by the environment and left out of the loss.
3. The loss (qwen3mini/training/distill.py): Σ over the sampled tokens of KL(student ‖ teacher) over the
   whole vocabulary (``--divergence forward``: KL(teacher ‖ student)), the teacher's logits computed on the
   same packed rows, divided by the count of those tokens over every micro-batch and rank. The samples'
   rewards (general RL's rules) are logged for information; nothing is rewarded.

The loop, logs (``log.jsonl`` with the KL, the teacher's NLL of the samples, reward and accuracy per kind,
lengths, generation vs update time; ``samples.jsonl``; ``curves.png``), checkpoints and ``torchrun`` behaviour are
the RL stage's (qwen3mini/training/rl.py).

    python train/distill_on_policy.py --preset tiny      # CPU, seconds, after off-policy distillation's tiny preset
    python train/distill_on_policy.py --teacher checkpoints/qwen3mini-chat      # one GPU, after off-policy
    torchrun --standalone --nproc_per_node 8 train/distill_on_policy.py        # each rank owns whole groups

Output in ``out_dir``: ``final`` (HF layout, bf16), ``log.jsonl``, ``samples.jsonl``, ``curves.png``,
``summary.json`` and the resumable ``ckpt``.
"""
import os
import sys
from dataclasses import dataclass

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from qwen3mini.training.distill import DISTILL_RANGES, check_divergence, distill_objective  # noqa: E402
from qwen3mini.training.general_rl import GeneralEnvironment, GeneralRLSettings  # noqa: E402
from qwen3mini.training.rl import run_rl                                           # noqa: E402
from qwen3mini.training.settings import parse_settings, setting                   # noqa: E402
from qwen3mini.training.stage import run_script                                   # noqa: E402

MIX = "reasoning:0.6,dialogue:0.1,instruction:0.15,tool:0.15"


@dataclass
class Settings(GeneralRLSettings):
    init_from: str = "runs/distill/student/off_policy/final"
    teacher: str = setting("checkpoints/qwen3mini-chat", "the post-trained teacher (HF layout, the same tokenizer)")
    mix: str = MIX
    ranges: str = DISTILL_RANGES
    out_dir: str = "runs/distill/student/on_policy"
    divergence: str = setting("reverse", "reverse: KL(student ‖ teacher), mode-seeking; forward: "
                              "KL(teacher ‖ student) on the same samples (qwen3mini/training/distill.py)")
    lr: float = 5e-5
    min_lr: float = 5e-5

    def __post_init__(self):
        super().__post_init__()
        check_divergence(self.divergence)


PRESETS = {
    "tiny": dict(init_from="runs/tiny/distill_off_policy/final", teacher="runs/tiny/rl_general/final",
                 ranges="add:1-2,sort:3", per_cell=3, pool_size=8, queries=4, group=2, max_new_tokens=24,
                 rollout_rows=64, seq_len=256, micro_batch=2, steps=2, warmup_steps=1, lr=1e-3, min_lr=1e-3,
                 ckpt_every=2, samples_logged=1, device="cpu", dtype="float32", progress=False,
                 out_dir="runs/tiny/distill_on_policy"),
}


def main(argv=None):
    settings = parse_settings(Settings, argv, PRESETS, description=__doc__)
    run_rl("on-policy distillation", settings,
           lambda tokenizer: GeneralEnvironment(tokenizer, settings.max_new_tokens),
           lambda generator, tokenizer, info: settings.pool("distill"),
           previous_stage="train/distill_off_policy.py", make_objective=distill_objective)


if __name__ == "__main__":
    run_script(main)
