"""S1, general pre-training (Qwen3 technical report §3): a model from scratch on the general corpus.

The report trains on >30T tokens at sequence length 4,096 with RoPE base 10,000; here the general mix of
train/data (Debian documentation, manuals, dictionaries, Python source, a little synthetic text) at length
1,024, with a warmup-stable-decay schedule so that S2 can continue the run with its faster decay.

    python train/pretrain_general.py --preset tiny                       # CPU, seconds (tiny shapes)
    python train/pretrain_general.py --preset base                       # the shipped model's S1, one GPU
    torchrun --nproc_per_node 8 train/pretrain_general.py --preset base  # the same on 8 GPUs (DDP)
    python train/pretrain_general.py --preset base --model base-moe --out_dir runs/s1-moe   # the MoE

Any setting below can be overridden: ``--steps 500 --lr 1e-3``. Output: ``out_dir/final`` (HF layout),
``log.jsonl``, ``loss.png``, ``summary.json`` and the resumable checkpoint ``out_dir/ckpt``.
"""
import os
import sys
from dataclasses import dataclass

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from qwen3mini.model import Qwen3ForCausalLM                                    # noqa: E402
from qwen3mini.training.settings import TrainSettings, parse_settings, setting  # noqa: E402
from qwen3mini.training.stage import run_script, run_stage, scratch_config      # noqa: E402
from train.data.batches import stage_batches                                    # noqa: E402


@dataclass
class Settings(TrainSettings):
    model: str = setting("base", "model shape: a preset of qwen3mini/config.py's PRESETS")
    data: str = setting("data/shards/s1", "folder with the train.* and val.* token shards")
    tokenizer: str = setting("checkpoints/tokenizer-16k", "tokenizer saved with the model (empty: none)")
    out_dir: str = "runs/s1"
    seq_len: int = 1024
    micro_batch: int = 64
    grad_accum: int = 2                         # 64 x 2 x 1,024 = 131k tokens per step on one GPU
    steps: int = 2000
    lr: float = 3e-3
    min_lr: float = 3e-4
    schedule: str = "wsd"
    warmup_steps: int = 100
    decay_frac: float = 0.1
    compile: bool = True


PRESETS = {
    "base": {},
    # a distillation student (paper §4.5; train/run_distill.sh), shortened; --model student-moe for the MoE.
    # One micro-batch a step: an MoE's global-batch expert counts then come from the training pass itself.
    "student": dict(model="student", steps=800, warmup_steps=50, micro_batch=128, grad_accum=1, ckpt_every=200,
                    out_dir="runs/distill/student/s1"),
    # CPU smoke run: tiny shapes, a few steps, fp32
    "tiny": dict(model="tiny", seq_len=64, micro_batch=4, grad_accum=1, steps=8, warmup_steps=2, lr=1e-2,
                 min_lr=1e-3, eval_every=4, eval_batches=2, ckpt_every=4, log_every=2, device="cpu",
                 dtype="float32", compile=False, out_dir="runs/tiny/s1"),
}


def build_model(settings, vocab_size):
    return Qwen3ForCausalLM(scratch_config(settings.model, vocab_size, settings.seq_len))


def main(argv=None):
    settings = parse_settings(Settings, argv, PRESETS, description=__doc__)
    return run_stage("S1 general", settings, build_model, stage_batches)


if __name__ == "__main__":
    run_script(main)
