"""Random-weight Qwen3 checkpoints built with ``transformers`` (the reference), for tests of any component.

    from tests.model.hf_fixtures import make_hf_model, save_hf_checkpoint
    hf = make_hf_model(moe=True, num_experts=8)           # eager attention, fp32, randomised weights
    save_hf_checkpoint(hf, tmp_path / "ckpt", spelling="original", max_shard_size=None)

Every weight is drawn at a scale that keeps activations O(1) and makes the next-token distribution far from
uniform: the default tiny initialisation (std 0.02, all-ones norms) hides bugs such as a missing norm weight or
a wrong RoPE layout, because everything it produces is nearly uniform.
"""
import copy
import json
import os

import torch

DENSE = dict(vocab_size=256, hidden_size=64, intermediate_size=96, num_hidden_layers=2, num_attention_heads=4,
             num_key_value_heads=2, head_dim=16, max_position_embeddings=256, rope_theta=10000.0,
             rms_norm_eps=1e-6, tie_word_embeddings=False, bos_token_id=1, eos_token_id=2)
MOE = dict(DENSE, num_experts=8, num_experts_per_tok=2, moe_intermediate_size=32, norm_topk_prob=True,
           decoder_sparse_step=1, mlp_only_layers=[])


def make_hf_config(moe: bool = False, **overrides):
    """A small transformers ``Qwen3Config`` / ``Qwen3MoeConfig``; ``rope_scaling`` may be passed as in 4.51."""
    from transformers import Qwen3Config, Qwen3MoeConfig
    kwargs = dict(MOE if moe else DENSE, **overrides)
    cls = Qwen3MoeConfig if moe else Qwen3Config
    return cls(**kwargs, attn_implementation="eager")


@torch.no_grad()
def randomize_(model, seed: int = 0):
    """Redraw every parameter: matrices ~ N(0, 1/fan_in), norms ~ U(0.5, 1.5); the router, the head and the
    embedding (the head too when tied) at 3x that scale: decisive routing and peaked next-token distributions."""
    g = torch.Generator().manual_seed(seed)
    for name, p in sorted(model.named_parameters()):
        if name.endswith("norm.weight"):
            value = torch.rand(p.shape, generator=g) + 0.5
        elif "embed_tokens" in name:          # also the head when tied: keep logits peaked but not one-hot
            value = torch.randn(p.shape, generator=g) * 3.0 * p.shape[-1] ** -0.5
        else:
            scale = p.shape[-1] ** -0.5 * (3.0 if name.endswith(("lm_head.weight", "mlp.gate.weight")) else 1.0)
            value = torch.randn(p.shape, generator=g) * scale
        p.copy_(value.to(p.dtype))
    return model


def make_hf_model(moe: bool = False, seed: int = 0, **overrides):
    """A randomised transformers Qwen3 (or Qwen3-MoE) causal LM in fp32 with eager attention, in eval mode."""
    from transformers import Qwen3ForCausalLM, Qwen3MoeForCausalLM
    config = make_hf_config(moe, **overrides)
    torch.manual_seed(seed)
    model = (Qwen3MoeForCausalLM if moe else Qwen3ForCausalLM)(config)
    if config.tie_word_embeddings:
        model.tie_weights()
    return randomize_(model, seed).eval()


def hf_in_float64(hf):
    """A copy of a transformers model in float64 (the same weights, widened): the exact answer that the
    tolerance rule (qwen3mini/ops/tolerance.py) measures both implementations against."""
    exact = copy.deepcopy(hf).double()
    if hasattr(exact, "set_experts_implementation"):   # transformers 5: its grouped-matmul experts take no float64
        exact.set_experts_implementation("eager")
    return exact


def to_original_spelling(config_path) -> dict:
    """Rewrite a config.json saved by transformers 5.x in the spelling the released checkpoints use
    (rope_theta / rope_scaling / torch_dtype / num_experts)."""
    with open(config_path) as f:
        d = json.load(f)
    params = dict(d.pop("rope_parameters", None) or {})
    d["rope_theta"] = params.pop("rope_theta", 10000.0)
    d["rope_scaling"] = params if params.get("rope_type", "default") != "default" else None
    if "dtype" in d:
        d["torch_dtype"] = d.pop("dtype")
    if "num_local_experts" in d:
        d["num_experts"] = d.pop("num_local_experts")
    with open(config_path, "w") as f:
        json.dump(d, f, indent=2)
    return d


def save_hf_checkpoint(model, directory, spelling: str = "new", max_shard_size=None, dtype=None):
    """``save_pretrained`` (optionally sharded and in another dtype); ``spelling="original"`` rewrites
    config.json as the released checkpoints spell it."""
    directory = os.fspath(directory)
    if dtype is not None:
        model = copy.deepcopy(model).to(dtype)
    kwargs = {} if max_shard_size is None else {"max_shard_size": max_shard_size}
    model.save_pretrained(directory, **kwargs)
    if spelling == "original":
        to_original_spelling(os.path.join(directory, "config.json"))
    return directory
