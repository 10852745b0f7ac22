"""Long-context evaluation of the S3 model (Qwen3 technical report §3, docs/qwen3.md §5): validation loss by position
and passkey retrieval at 1x, 2x and 4x the S3 training length, each with plain RoPE and with YaRN factor 4.

* Loss by position: windows of 4x the S3 length from the S3 validation shard, each starting at a document
  (the long-document sampler of S3), cross-entropy at every position, averaged over windows and over buckets
  of positions. Plain RoPE extrapolates past the trained length; YaRN (factor 4, original context = the S3
  length) interpolates the low frequencies so that 4x the length falls inside the trained range of angles.
* Passkey retrieval (``train/data/synthetic.py: passkey_document``): a 5-digit key hidden at a given depth
  in filler text; greedy decoding must reproduce it. Accuracy over depths and seeds per length.
* Retrieval in S3's own form (``train/data/retrieval.py: retrieval_question``): held-out windows with facts
  hidden in their first half and the last question unanswered; greedy decoding must give the code. It tells
  a model that never learned to retrieve (both zero) from one whose retrieval does not carry over to the
  passkey's other wording.

    python train/eval_long_context.py --preset tiny            # CPU smoke run on the tiny S3 output
    python train/eval_long_context.py --model runs/s3/final    # on a GPU

Writes ``out_dir/long_context.json`` and ``out_dir/loss_by_position.png`` and prints a table.
"""
import dataclasses
import json
import os
import re
import sys
from dataclasses import dataclass

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np                                               # noqa: E402
import torch                                                     # noqa: E402
import torch.nn.functional as F                                  # noqa: E402

import qwen3mini                                                 # noqa: E402
from qwen3mini.model import Qwen3ForCausalLM                     # noqa: E402
from qwen3mini.training.settings import parse_settings, setting  # noqa: E402
from qwen3mini.training.stage import run_script                  # noqa: E402
from train.data.retrieval import retrieval_question              # noqa: E402
from train.data.shards import TokenShards                        # noqa: E402
from train.data.synthetic import passkey_document                # noqa: E402


@dataclass
class Settings:
    model: str = setting("runs/s3/final", "the model to evaluate (HF layout): S3's out_dir/final")
    data: str = setting("data/shards/s3/val", "token shard prefix of the long validation documents")
    tokenizer: str = setting("", "tokenizer folder (empty: the model's own folder)")
    out_dir: str = setting("runs/eval", "output folder: long_context.json, loss_by_position.png")
    yarn_factor: float = setting(4.0, "YaRN factor; the longest length evaluated is this times the S3 length")
    windows: int = setting(8, "loss-by-position windows of yarn_factor x the S3 length")
    buckets: int = setting(32, "position buckets in the plot")
    depths: str = setting("0.1,0.3,0.5,0.7,0.9", "passkey depths (comma-separated shares of the prompt)")
    seeds: int = setting(4, "passkey prompts per (length, depth)")
    retrieval_prompts: int = setting(20, "prompts per length of retrieval in S3's own form (0: none)")
    device: str = setting("auto", "where to run (auto: cuda if there is a GPU)", ("auto", "cpu", "cuda"))
    dtype: str = setting("bfloat16", "dtype of the weights", ("bfloat16", "float32"))
    seed: int = setting(0, "seed of the windows and passkeys")


PRESETS = {"tiny": dict(model="runs/tiny/s3/final", data="data/shards/s3/val", windows=2, buckets=8,
                        depths="0.5", seeds=1, retrieval_prompts=1, device="cpu", dtype="float32",
                        out_dir="runs/tiny/eval")}


def variant(model, yarn_factor, trained_len, length):
    """The same weights with the context stretched to ``length``: plain RoPE (extrapolation) when
    ``yarn_factor`` is None, else YaRN with that factor over the trained length (docs/qwen3.md §5)."""
    scaling = None
    if yarn_factor is not None:
        scaling = {"rope_type": "yarn", "factor": yarn_factor, "original_max_position_embeddings": trained_len}
    config = dataclasses.replace(model.config, rope_scaling=scaling, max_position_embeddings=length)
    stretched = Qwen3ForCausalLM(config).to(device=model.device, dtype=model.dtype)
    stretched.load_state_dict(model.state_dict())
    return stretched.eval()


@torch.no_grad()
def loss_by_position(model, shards, length, windows, seed) -> torch.Tensor:
    """Mean cross-entropy at each of ``length`` positions over ``windows`` document-start windows."""
    total = torch.zeros(length, dtype=torch.float64)
    for k in range(windows):
        row = torch.from_numpy(shards.long_window(seed * 1000 + k, length, mix=((1.0, 0.5, 1.0),)))
        row = row.to(model.device)[None]
        logits = model(row[:, :-1])
        total += F.cross_entropy(logits[0].float(), row[0, 1:], reduction="none").double().cpu()
    return total / windows


def answers_with(model, tok, ids: list[int], key: str) -> bool:
    """Whether greedy decoding continues ``ids`` with the number ``key``."""
    out = model.generate(torch.tensor([ids], device=model.device), max_new_tokens=8, temperature=0.0)
    digits = re.match(r"\s*(\d+)", tok.decode(out[0, len(ids):].tolist()))
    return bool(digits) and digits.group(1) == key


@torch.no_grad()
def passkey_accuracy(model, tok, length, depths, seeds) -> float:
    hits = 0
    for depth in depths:
        for seed in range(seeds):
            prompt, key = passkey_document(tok.encode, length - 32, depth, seed)
            hits += answers_with(model, tok, tok.encode(prompt), key)
    return hits / (len(depths) * seeds)


@torch.no_grad()
def retrieval_accuracy(model, tok, shards, length, prompts, seed) -> float:
    """Share of ``prompts`` held-out retrieval questions of ``length`` tokens answered right (windows and
    facts drawn from seeds that S3's sampler never uses: it draws with seed lists of three or four numbers)."""
    hits = 0
    for k in range(prompts):
        window = shards.long_window(seed * 1000 + 500 + k, length, mix=((1.0, 0.5, 1.0),))
        prompt, code = retrieval_question(window, tok.encode, np.random.default_rng([seed, k, length, 17, 0]))
        hits += answers_with(model, tok, prompt.tolist(), code)
    return hits / prompts


def main(argv=None):
    s = parse_settings(Settings, argv, PRESETS, description=__doc__)
    device = ("cuda" if torch.cuda.is_available() else "cpu") if s.device == "auto" else s.device
    dtype = getattr(torch, s.dtype)
    if not os.path.isdir(s.model):
        raise ValueError(f"--model {s.model}: no such folder (train/pretrain_long_context.py writes out_dir/final)")
    base = qwen3mini.load_model(s.model, device=device, dtype=dtype)
    tok = qwen3mini.load_tokenizer(s.tokenizer or s.model)
    trained = base.config.max_position_embeddings           # S3 wrote its sequence length here
    longest = int(trained * s.yarn_factor)
    shards = TokenShards(s.data, seed=s.seed)
    try:
        depths = [float(d) for d in s.depths.split(",")]
    except ValueError:
        raise ValueError(f"--depths {s.depths!r}: expected comma-separated numbers in [0, 1]") from None
    multiples = [m for m in (1, 2, 4) if m <= s.yarn_factor]
    os.makedirs(s.out_dir, exist_ok=True)

    results = {"model": s.model, "trained_len": trained, "rope_theta": base.config.rope_theta,
               "yarn_factor": s.yarn_factor, "windows": s.windows, "passkey_prompts_per_length":
               len(depths) * s.seeds, "retrieval_prompts_per_length": s.retrieval_prompts, "variants": {}}
    curves = {}
    for name, factor in (("RoPE (no YaRN)", None), (f"YaRN x{s.yarn_factor:g}", s.yarn_factor)):
        model = variant(base, factor, trained, longest)
        losses = loss_by_position(model, shards, longest, s.windows, s.seed)
        curves[name] = losses
        spans = {f"{m}x": losses[(m // 2) * trained if m > 1 else 0:m * trained].mean().item()
                 for m in multiples}
        passkey = {f"{m}x": passkey_accuracy(model, tok, m * trained, depths, s.seeds) for m in multiples}
        retrieval = {f"{m}x": retrieval_accuracy(model, tok, shards, m * trained - 16, s.retrieval_prompts, s.seed)
                     for m in multiples} if s.retrieval_prompts else {}
        results["variants"][name] = {"val_loss_by_span": spans, "passkey_accuracy": passkey,
                                     "retrieval_accuracy": retrieval}
        print(f"{name}: loss in [0,L) [L,2L) [2L,4L): {spans}; passkey accuracy: {passkey}; retrieval in S3's "
              f"form: {retrieval}", flush=True)
        del model

    plot_loss_by_position(curves, trained, s.buckets, os.path.join(s.out_dir, "loss_by_position.png"))
    with open(os.path.join(s.out_dir, "long_context.json"), "w") as f:
        json.dump(results, f, indent=2)
    return results


def plot_loss_by_position(curves: dict, trained: int, buckets: int, png: str):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for name, losses in curves.items():
        per_bucket = losses[: len(losses) // buckets * buckets].view(buckets, -1).mean(dim=1)
        centres = (torch.arange(buckets) + 0.5) * (len(losses) // buckets)
        ax.plot(centres.numpy(), per_bucket.numpy(), marker="o", markersize=3, label=name)
    ax.axvline(trained, color="grey", linestyle="--", label=f"S3 length {trained}")
    ax.set_xlabel("position")
    ax.set_ylabel("validation loss")
    ax.set_title("S3 validation loss by position")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(png, dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    run_script(main)
