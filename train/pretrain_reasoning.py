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

import torch                                                     # noqa: E402

import qwen3mini                                                 # noqa: E402
from qwen3mini import training                                   # noqa: E402
from train.data.shards import TokenShards                        # noqa: E402


@dataclass
class Settings(training.TrainSettings):
    init_from: str = "runs/s1/final"            # S1's output (HF layout)
    data: str = "data/shards/s2"
    tokenizer: str = "checkpoints/tokenizer-16k"
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
    "tiny": dict(init_from="runs/tiny/s1/final", seq_len=64, micro_batch=4, grad_accum=1, steps=6,
                 warmup_steps=1, lr=5e-3, min_lr=5e-4, eval_every=3, eval_batches=2, ckpt_every=3,
                 log_every=2, device="cpu", dtype="float32", compile=False, out_dir="runs/tiny/s2"),
}


def main(argv=None):
    settings = training.parse_settings(Settings, argv, PRESETS, description=__doc__)
    info = training.init_distributed(settings.device)
    training.seed_everything(settings.seed)

    train_shards = TokenShards(os.path.join(settings.data, "train"), seed=settings.seed)
    val_shards = TokenShards(os.path.join(settings.data, "val"), seed=settings.seed)
    train_data = training.ShardBatches(train_shards, settings.micro_batch, settings.seq_len, info)
    val_data = training.ShardBatches(val_shards, settings.micro_batch, settings.seq_len, info)

    model = qwen3mini.load_model(settings.init_from, dtype=torch.float32)
    if model.config.vocab_size != train_shards.vocab_size:
        raise ValueError(f"{settings.init_from} has vocab_size {model.config.vocab_size}, the shards in "
                         f"{settings.data} {train_shards.vocab_size}")
    model.train()
    training.run_stage(model, settings, info, train_data, val_data, name="S2 reasoning",
                       tokenizer_dir=settings.tokenizer or None)
    training.close_distributed()


if __name__ == "__main__":
    main()
