"""Qwen3 configuration: one dataclass for the dense and the MoE models (docs/qwen3.md §1, §2).

The fields keep the Hugging Face ``config.json`` names, so a config reads like the file it came from.
``Qwen3Config.from_hf_dict`` accepts both spellings found in the wild:

* original (transformers 4.51, what the released checkpoints ship): ``rope_theta``, ``rope_scaling``,
  ``torch_dtype``, ``num_experts``;
* newer (transformers 5.x writes these): ``rope_parameters`` (which holds ``rope_theta`` and the scaling
  fields), ``dtype``, ``num_local_experts``.

``to_hf_dict`` writes the original spelling by default, which every transformers version since 4.51 reads.

Presets (the one table of model shapes): the eight released sizes (values from docs/qwen3.md §2.1,
post-trained checkpoints), small shapes for tests, and the shapes train/ trains from scratch. Change a field
with ``dataclasses.replace(PRESETS["tiny"], vocab_size=4096)``.
"""
import dataclasses
import json
import os
from dataclasses import dataclass, field

import torch

MODEL_TYPES = ("qwen3", "qwen3_moe")

_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


@dataclass
class Qwen3Config:
    vocab_size: int = 151936
    hidden_size: int = 1024
    intermediate_size: int = 3072              # dense MLP width (unused when every layer is MoE)
    num_hidden_layers: int = 28
    num_attention_heads: int = 16
    num_key_value_heads: int = 8
    head_dim: int = 128                         # 128 in every release: nH * D need not equal hidden_size
    rms_norm_eps: float = 1e-6
    rope_theta: float = 1_000_000.0
    rope_scaling: dict | None = None            # e.g. {"rope_type": "yarn", "factor": 4.0,
    #                                                  "original_max_position_embeddings": 32768}
    max_position_embeddings: int = 40960
    tie_word_embeddings: bool = True
    torch_dtype: str = "bfloat16"               # dtype the weights were trained/stored in
    bos_token_id: int | None = 151643
    eos_token_id: int | list | None = 151645
    initializer_range: float = 0.02             # std of the normal init when training from scratch
    # --- mixture of experts (docs/qwen3.md §1.7); num_experts == 0 means a dense model
    num_experts: int = 0
    num_experts_per_tok: int = 8
    moe_intermediate_size: int = 768
    norm_topk_prob: bool = True                 # the released configs say true; HF's class default is false
    decoder_sparse_step: int = 1
    mlp_only_layers: list = field(default_factory=list)
    router_aux_loss_coef: float = 0.001

    def __post_init__(self):
        if self.num_attention_heads % self.num_key_value_heads:
            raise ValueError(f"num_attention_heads={self.num_attention_heads} is not a multiple of "
                             f"num_key_value_heads={self.num_key_value_heads}")
        if self.head_dim % 2:
            raise ValueError(f"head_dim={self.head_dim} must be even (RoPE rotates pairs of dims)")
        if self.torch_dtype not in _DTYPES:
            raise ValueError(f"torch_dtype={self.torch_dtype!r} is not one of {sorted(_DTYPES)}")
        if self.is_moe and not 0 < self.num_experts_per_tok <= self.num_experts:
            raise ValueError(f"num_experts_per_tok={self.num_experts_per_tok} must be in 1..num_experts="
                             f"{self.num_experts}")

    # ------------------------------------------------------------------ derived facts
    @property
    def model_type(self) -> str:
        return "qwen3_moe" if self.is_moe else "qwen3"

    @property
    def is_moe(self) -> bool:
        return self.num_experts > 0

    @property
    def dtype(self) -> torch.dtype:
        return _DTYPES[self.torch_dtype]

    def is_moe_layer(self, layer: int) -> bool:
        """docs/qwen3.md §1.7: layer l is sparse iff it is not in mlp_only_layers and
        (l+1) % decoder_sparse_step == 0."""
        return (self.is_moe and layer not in self.mlp_only_layers
                and (layer + 1) % self.decoder_sparse_step == 0)

    @property
    def eos_token_ids(self) -> list:
        if self.eos_token_id is None:
            return []
        return list(self.eos_token_id) if isinstance(self.eos_token_id, (list, tuple)) else [self.eos_token_id]

    # ------------------------------------------------------------------ size reports
    def num_parameters(self) -> dict:
        """Parameter counts: ``total``, ``active`` (per token, MoE) and ``non_embedding`` (docs/qwen3.md §2.1
        table)."""
        H, D, L = self.hidden_size, self.head_dim, self.num_hidden_layers
        attn = H * D * (2 * self.num_attention_heads + 2 * self.num_key_value_heads) + 2 * D
        norms = 2 * H
        dense_mlp = 3 * H * self.intermediate_size
        expert = 3 * H * self.moe_intermediate_size
        total = active = 0
        for layer in range(L):
            if self.is_moe_layer(layer):
                router = self.num_experts * H
                total += attn + norms + router + self.num_experts * expert
                active += attn + norms + router + self.num_experts_per_tok * expert
            else:
                total += attn + norms + dense_mlp
                active += attn + norms + dense_mlp
        embed = self.vocab_size * H
        head = 0 if self.tie_word_embeddings else embed
        non_embedding = total + H                                  # + final norm
        return {"total": non_embedding + embed + head, "active": active + H + embed + head,
                "non_embedding": non_embedding}

    def training_flops_per_token(self, seq_len: int) -> float:
        """Training FLOPs per token: 6·N (N = active matrix parameters, lm_head included, the embedding lookup
        not) + 12·L·nH·D·T for attention scores and values (PaLM appendix B; causal masking not discounted)."""
        embedding = self.vocab_size * self.hidden_size
        matrix_params = self.num_parameters()["active"] - embedding * (1 if self.tie_word_embeddings else 2)
        matrix_params += embedding                                             # lm_head is a matmul
        attention = 12 * self.num_hidden_layers * self.num_attention_heads * self.head_dim * seq_len
        return 6 * matrix_params + attention

    def kv_cache_bytes_per_token(self, dtype: torch.dtype = torch.bfloat16) -> int:
        """K and V of one token over all layers: 2 * L * nKV * D * bytes (docs/qwen3.md §2.1)."""
        element = torch.empty((), dtype=dtype).element_size()
        return 2 * self.num_hidden_layers * self.num_key_value_heads * self.head_dim * element

    def describe(self, kv_dtype: torch.dtype = torch.bfloat16) -> str:
        """One line: shape, parameter counts and the KV cache's bytes per token in ``kv_dtype``."""
        n = self.num_parameters()
        kv = self.kv_cache_bytes_per_token(kv_dtype)
        text = (f"{self.model_type}: {self.num_hidden_layers} layers, hidden {self.hidden_size}, heads "
                f"{self.num_attention_heads}/{self.num_key_value_heads} x {self.head_dim}, params "
                f"{_count(n['total'])} (non-embedding {_count(n['non_embedding'])}")
        if self.is_moe:
            text += (f", active {_count(n['active'])}; {self.num_experts} experts, top-"
                     f"{self.num_experts_per_tok}")
        return text + f"), KV cache {kv / 1024:.1f} KiB/token in {str(kv_dtype).removeprefix('torch.')}"

    # ------------------------------------------------------------------ config.json
    @classmethod
    def from_hf_dict(cls, d: dict, source: str = "config") -> "Qwen3Config":
        """Build from a parsed HF ``config.json`` (either spelling). ``source`` names the file in errors."""
        model_type = d.get("model_type")
        if model_type not in MODEL_TYPES:
            raise ValueError(f"{source}: unsupported model_type {model_type!r}; qwen3mini loads {MODEL_TYPES}")
        rope_theta, rope_scaling = _read_rope(d, source)
        kwargs = {f.name: d[f.name] for f in dataclasses.fields(cls)
                  if f.name in d and f.name not in ("rope_theta", "rope_scaling", "torch_dtype", "num_experts")}
        kwargs["rope_theta"], kwargs["rope_scaling"] = rope_theta, rope_scaling
        dtype = d.get("dtype") or d.get("torch_dtype")
        if dtype is not None:
            kwargs["torch_dtype"] = str(dtype).replace("torch.", "")
        if model_type == "qwen3_moe":
            kwargs["num_experts"] = d.get("num_experts", d.get("num_local_experts"))
            if not kwargs["num_experts"]:
                raise ValueError(f"{source}: model_type qwen3_moe needs num_experts (or num_local_experts)")
            kwargs.setdefault("norm_topk_prob", False)             # HF's class default (docs/qwen3.md §2.3)
            kwargs.setdefault("mlp_only_layers", [])
        else:
            kwargs["num_experts"] = 0
        if d.get("num_key_value_heads") is None:                  # HF: absent means plain multi-head
            kwargs["num_key_value_heads"] = d["num_attention_heads"]
        if d.get("head_dim") is None:
            kwargs["head_dim"] = d["hidden_size"] // d["num_attention_heads"]
        if d.get("use_sliding_window"):
            raise ValueError(f"{source}: use_sliding_window=true is not supported (no released Qwen3 uses it)")
        return cls(**kwargs)

    def to_hf_dict(self, spelling: str = "original") -> dict:
        """The ``config.json`` dict; ``spelling`` is ``"original"`` (4.51 names) or ``"new"`` (5.x names)."""
        if spelling not in ("original", "new"):
            raise ValueError(f"spelling must be 'original' or 'new', got {spelling!r}")
        d = {"architectures": ["Qwen3MoeForCausalLM" if self.is_moe else "Qwen3ForCausalLM"],
             "model_type": self.model_type}
        skip = {"rope_theta", "rope_scaling", "torch_dtype"}
        moe_only = {"num_experts", "num_experts_per_tok", "moe_intermediate_size", "norm_topk_prob",
                    "decoder_sparse_step", "mlp_only_layers", "router_aux_loss_coef"}
        for f in dataclasses.fields(self):
            if f.name in skip or (f.name in moe_only and not self.is_moe):
                continue
            d[f.name] = getattr(self, f.name)
        d.update(attention_bias=False, attention_dropout=0.0, hidden_act="silu", use_sliding_window=False,
                 sliding_window=None, max_window_layers=self.num_hidden_layers)
        if spelling == "original":
            d.update(rope_theta=self.rope_theta, rope_scaling=self.rope_scaling, torch_dtype=self.torch_dtype)
        else:
            d["rope_parameters"] = {"rope_type": "default", "rope_theta": self.rope_theta,
                                    **(self.rope_scaling or {})}
            d["dtype"] = self.torch_dtype
            if self.is_moe:
                d["num_local_experts"] = d.pop("num_experts")
        return d

    @classmethod
    def load(cls, path) -> "Qwen3Config":
        """Read ``config.json`` (``path`` is the file or its directory)."""
        if os.path.isdir(path):
            path = os.path.join(path, "config.json")
        if not os.path.isfile(path):
            raise FileNotFoundError(f"missing config file {path}")
        with open(path, encoding="utf-8") as f:
            try:
                d = json.load(f)
            except (json.JSONDecodeError, UnicodeDecodeError) as error:
                raise ValueError(f"{path} is not valid JSON ({error})") from None
        if not isinstance(d, dict):
            raise ValueError(f"{path}: expected a JSON object, got {type(d).__name__}")
        return cls.from_hf_dict(d, source=path)

    def save(self, path, spelling: str = "original") -> None:
        """Write ``config.json`` (``path`` is the file or its directory)."""
        if os.path.isdir(path):
            path = os.path.join(path, "config.json")
        with open(path, "w") as f:
            json.dump(self.to_hf_dict(spelling), f, indent=2)
            f.write("\n")


def _count(n: int) -> str:
    return f"{n / 1e9:.3f}B" if n >= 1e9 else f"{n / 1e6:.2f}M"


def _read_rope(d: dict, source: str):
    """(rope_theta, rope_scaling or None) from either spelling; rope_scaling keeps only non-default types."""
    params = d.get("rope_parameters")
    if params:
        params = dict(params)
        theta = params.pop("rope_theta", d.get("rope_theta", 10000.0))
        scaling = params
    else:
        theta = d.get("rope_theta", 10000.0)
        scaling = dict(d["rope_scaling"]) if d.get("rope_scaling") else {}
    if "type" in scaling:                                   # the older alias of rope_type
        scaling.setdefault("rope_type", scaling.pop("type"))
    if scaling.pop("partial_rotary_factor", d.get("partial_rotary_factor", 1.0)) != 1.0:
        raise ValueError(f"{source}: partial_rotary_factor != 1 is not supported")
    rope_type = scaling.get("rope_type", "default")
    if rope_type == "default":
        if set(scaling) - {"rope_type"}:
            raise ValueError(f"{source}: rope type 'default' with unexpected fields {sorted(scaling)}")
        return float(theta), None
    if rope_type != "yarn":
        raise ValueError(f"{source}: unsupported rope_type {rope_type!r} (qwen3mini supports default and yarn)")
    return float(theta), scaling


def _released(hidden, inter, layers, heads, kv_heads, tie, **moe) -> Qwen3Config:
    return Qwen3Config(hidden_size=hidden, intermediate_size=inter, num_hidden_layers=layers,
                       num_attention_heads=heads, num_key_value_heads=kv_heads, tie_word_embeddings=tie, **moe)


def _scratch(**shape) -> Qwen3Config:
    return Qwen3Config(vocab_size=16384, head_dim=64, max_position_embeddings=4096, rope_theta=10_000.0,
                       torch_dtype="float32", bos_token_id=None, eos_token_id=None, **shape)


# docs/qwen3.md §2.1: the April-2025 post-trained checkpoints (the -Base ones use max_position_embeddings=32768).
PRESETS = {
    "Qwen3-0.6B": _released(1024, 3072, 28, 16, 8, True),
    "Qwen3-1.7B": _released(2048, 6144, 28, 16, 8, True),
    "Qwen3-4B": _released(2560, 9728, 36, 32, 8, True),
    "Qwen3-8B": _released(4096, 12288, 36, 32, 8, False),
    "Qwen3-14B": _released(5120, 17408, 40, 40, 8, False),
    "Qwen3-32B": _released(5120, 25600, 64, 64, 8, False),
    "Qwen3-30B-A3B": _released(2048, 6144, 48, 32, 4, False, num_experts=128, num_experts_per_tok=8,
                               moe_intermediate_size=768),
    "Qwen3-235B-A22B": _released(4096, 12288, 94, 64, 4, False, num_experts=128, num_experts_per_tok=8,
                                 moe_intermediate_size=1536),
    # Small shapes (Qwen3's vocabulary, so the real tokenizer works; replace vocab_size for a trained one).
    # "tiny*" are for tests; "small*" train from scratch on one GPU.
    "tiny": Qwen3Config(vocab_size=512, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                        num_attention_heads=4, num_key_value_heads=2, head_dim=16,
                        max_position_embeddings=512, torch_dtype="float32"),
    "tiny-moe": Qwen3Config(vocab_size=512, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                            num_attention_heads=4, num_key_value_heads=2, head_dim=16,
                            max_position_embeddings=512, torch_dtype="float32", num_experts=8,
                            num_experts_per_tok=2, moe_intermediate_size=32),
    # Shapes trained from scratch by train/ (our 16,384-id tokenizer; head_dim 64 instead of 128 keeps a few
    # heads in a narrow model). "base" is the shipped dense model; "base-moe" has the same active parameters
    # per token (top-2 of 8 experts of half the dense MLP width); "100m" is the training benchmark's largest.
    "base": _scratch(hidden_size=384, intermediate_size=1024, num_hidden_layers=8, num_attention_heads=6,
                     num_key_value_heads=2),
    "base-moe": _scratch(hidden_size=384, intermediate_size=1024, num_hidden_layers=8, num_attention_heads=6,
                         num_key_value_heads=2, num_experts=8, num_experts_per_tok=2, moe_intermediate_size=512),
    # The distillation students (paper §4.5): "student" has about a quarter of "base"'s parameters (the 0.6B
    # analogue), "student-moe" the same active parameters in top-2 of 8 experts of half its MLP width (the
    # 30B-A3B analogue).
    "student": _scratch(hidden_size=160, intermediate_size=512, num_hidden_layers=6, num_attention_heads=3,
                        num_key_value_heads=1),
    "student-moe": _scratch(hidden_size=160, intermediate_size=512, num_hidden_layers=6, num_attention_heads=3,
                            num_key_value_heads=1, num_experts=8, num_experts_per_tok=2, moe_intermediate_size=256),
    "100m": _scratch(hidden_size=768, intermediate_size=2560, num_hidden_layers=12, num_attention_heads=12,
                     num_key_value_heads=4),
    "small": Qwen3Config(hidden_size=512, intermediate_size=1536, num_hidden_layers=8, num_attention_heads=8,
                         num_key_value_heads=4, head_dim=64, max_position_embeddings=4096),
    "small-moe": Qwen3Config(hidden_size=512, intermediate_size=1536, num_hidden_layers=8,
                             num_attention_heads=8, num_key_value_heads=4, head_dim=64,
                             max_position_embeddings=4096, tie_word_embeddings=False, num_experts=16,
                             num_experts_per_tok=4, moe_intermediate_size=256),
}
