"""S2, reasoning pre-training (Qwen3 technical report §3): continue S1 on a mix with a larger share of STEM,
code, reasoning and synthetic data, with faster learning-rate decay.

The report's S2 is ~5T higher-quality tokens at length 4,096. Here: train/data's S2 mix (all STEM manuals,
all code, all synthetic worked problems, a rehearsed quarter of the prose) at S1's length, starting from S1's
final weights with a fresh optimizer, a short warmup and a cosine decay to a tenth of the peak over a run
a quarter of S1's length (S1's WSD schedule stayed at its peak until its last 10%).

    python train/pretrain_reasoning.py --preset tiny                  # CPU, after S1's tiny preset
    python train/pretrain_reasoning.py --preset base                  # one GPU; torchrun for several
"""
import os
import sys
from dataclasses import dataclass

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from qwen3mini.training.settings import TrainSettings, parse_settings, setting  # noqa: E402
from qwen3mini.training.stage import load_start, run_script, run_stage          # noqa: E402
from train.data.batches import stage_batches                                    # noqa: E402


@dataclass
class Settings(TrainSettings):
    init_from: str = setting("runs/s1/final", "the model to continue: S1's out_dir/final (HF layout)")
    data: str = setting("data/shards/s2", "folder with the train.* and val.* token shards")
    tokenizer: str = setting("checkpoints/tokenizer-16k", "tokenizer saved with the model (empty: none)")
    out_dir: str = "runs/s2"
    seq_len: int = 1024
    micro_batch: int = 64
    grad_accum: int = 2
    steps: int = 500
    lr: float = 1.5e-3                          # half of S1's peak
    min_lr: float = 1.5e-4
    schedule: str = "cosine"                    # decays from the first step after warmup: the fast decay
    warmup_steps: int = 20
    compile: bool = True


PRESETS = {
    "base": {},
    "student": dict(init_from="runs/distill/student/s1/final", steps=250, micro_batch=128, grad_accum=1,
                    ckpt_every=100, out_dir="runs/distill/student/s2"),       # (as S1's student preset)
    "tiny": dict(init_from="runs/tiny/s1/final", seq_len=64, micro_batch=4, grad_accum=1, steps=6,
                 warmup_steps=1, lr=5e-3, min_lr=5e-4, eval_every=3, eval_batches=2, ckpt_every=3,
                 log_every=2, device="cpu", dtype="float32", compile=False, out_dir="runs/tiny/s2"),
}


def build_model(settings, vocab_size):
    return load_start(settings.init_from, vocab_size, previous_stage="train/pretrain_general.py")


def main(argv=None):
    settings = parse_settings(Settings, argv, PRESETS, description=__doc__)
    return run_stage("S2 reasoning", settings, build_model, stage_batches)


if __name__ == "__main__":
    run_script(main)
