"""S3, long-context pre-training (Qwen3 technical report §3): continue S2 on long documents at a longer
sequence length, with the RoPE base raised by ABF; YaRN stretches the context four-fold more at inference.

The report: hundreds of billions of tokens at length 32,768 (8x S1's 4,096); the long corpus is 75% documents
of 16,384-32,768 tokens and 25% of 4,096-16,384; RoPE base 10,000 -> 1,000,000 (ABF, "adjusted base
frequency", Xiong et al. 2023); at inference YaRN (factor 4) and Dual Chunk Attention give 4x the context.
Here, scaled down: length 4,096 (4x S1/S2's 1,024); samples start at a document of L/2-L tokens with
probability 75% and of L/8-L/2 with 25% (``TokenShards.long_batch``); RoPE base 10,000 -> 1,000,000. The
saved config has no rope_scaling (YaRN off, as in Qwen3's released configs); ``train/eval_long_context.py``
measures the model with and without YaRN factor 4 (original context = this stage's length).

    python train/pretrain_long_context.py --preset tiny             # CPU, after S2's tiny preset
    python train/pretrain_long_context.py --preset base             # one GPU; torchrun for several
    python train/pretrain_long_context.py --preset student          # a distillation student's, with retrieval
"""
import dataclasses
import functools
import os
import sys
from dataclasses import dataclass

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from qwen3mini.model import Qwen3ForCausalLM                                    # noqa: E402
from qwen3mini.training.settings import TrainSettings, parse_settings, setting  # noqa: E402
from qwen3mini.training.stage import load_start, run_script, run_stage          # noqa: E402
from train.data.batches import stage_batches                                    # noqa: E402


@dataclass
class Settings(TrainSettings):
    init_from: str = setting("runs/s2/final", "the model to continue: S2's out_dir/final (HF layout)")
    data: str = setting("data/shards/s3", "folder with the train.* and val.* token shards")
    tokenizer: str = setting("checkpoints/tokenizer-16k", "tokenizer saved with the model (empty: none)")
    rope_theta: float = setting(1_000_000.0, "ABF: the new RoPE base (at least the previous stage's)")
    retrieval_share: float = setting(0.0, "share of training samples made synthetic retrieval documents (facts "
                                     "hidden far back, questions about them at the end: train/data/retrieval.py)")
    out_dir: str = "runs/s3"
    seq_len: int = 4096
    micro_batch: int = 16                       # 16 x 2 x 4,096 = 131k tokens per step, as in S1/S2
    grad_accum: int = 2
    steps: int = 150
    lr: float = 3e-4
    min_lr: float = 3e-5
    schedule: str = "cosine"
    warmup_steps: int = 20
    compile: bool = True

    def __post_init__(self):
        super().__post_init__()
        if not 0 <= self.retrieval_share <= 1:
            raise ValueError(f"--retrieval_share {self.retrieval_share}: expected a share in [0, 1]")
        if self.retrieval_share and not self.tokenizer:
            raise ValueError("--retrieval_share: retrieval samples need --tokenizer to write their facts")


PRESETS = {
    "base": {},
    # the distillation students' S3 (train/run_distill.sh), shortened, half of it retrieval samples
    "student": dict(init_from="runs/distill/student/s2/final", steps=160, warmup_steps=10, retrieval_share=0.5,
                    micro_batch=32, grad_accum=1, ckpt_every=40, out_dir="runs/distill/student/s3"),
    "tiny": dict(init_from="runs/tiny/s2/final", seq_len=256, micro_batch=2, grad_accum=1, steps=4,
                 warmup_steps=1, lr=1e-3, min_lr=1e-4, eval_every=2, eval_batches=1, ckpt_every=2,
                 log_every=2, device="cpu", dtype="float32", compile=False, out_dir="runs/tiny/s3"),
}


def long_context_config(config, rope_theta: float, seq_len: int):
    """S3's model config: RoPE base raised to ``rope_theta`` (ABF), the context set to ``seq_len``, no YaRN."""
    if rope_theta < config.rope_theta:
        raise ValueError(f"rope_theta {rope_theta} is below the current base {config.rope_theta}: ABF raises it")
    if seq_len <= config.max_position_embeddings // 2:
        print(f"note: S3 length {seq_len} is not longer than the previous stages' "
              f"{config.max_position_embeddings}")
    return dataclasses.replace(config, rope_theta=rope_theta, max_position_embeddings=seq_len, rope_scaling=None)


def build_model(settings, vocab_size):
    previous = load_start(settings.init_from, vocab_size, previous_stage="train/pretrain_reasoning.py")
    config = long_context_config(previous.config, settings.rope_theta, settings.seq_len)
    model = Qwen3ForCausalLM(config)               # rotary frequencies are computed from the new base
    model.load_state_dict(previous.state_dict())
    print(f"ABF: RoPE base {previous.config.rope_theta:g} -> {config.rope_theta:g}; context "
          f"{previous.config.max_position_embeddings} -> {config.max_position_embeddings}")
    return model


def main(argv=None):
    settings = parse_settings(Settings, argv, PRESETS, description=__doc__)
    return run_stage("S3 long context", settings, build_model,
                     functools.partial(stage_batches, long=True, retrieval_share=settings.retrieval_share))


if __name__ == "__main__":
    run_script(main)
