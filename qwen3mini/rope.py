"""Rotary position embedding (technical report §2; docs/qwen3.md §1.4) with YaRN for long context (§5):
the inverse frequencies and the cos / sin tables that model.py's attention rotates queries and keys with."""
import math

import torch
import torch.nn as nn

from .config import Qwen3Config


def rope_inv_freq(config: Qwen3Config) -> tuple[torch.Tensor, float]:
    """Inverse frequencies [D/2] (fp32) and the attention factor that scales cos and sin (docs/qwen3.md §1.4, §5).

    Plain RoPE: ``inv_freq[i] = theta^(-2i/D)``. YaRN ("NTK-by-parts") keeps the high-frequency dims (which
    rotate many times within the original context), divides the low-frequency ones by ``factor`` (position
    interpolation) and blends linearly in between; cos and sin are multiplied by ``0.1 ln(factor) + 1``.

    ``factor`` is read as the current transformers (5.x) does: ``rope_scaling["factor"]``, and only when that
    is absent ``max_position_embeddings / original_max_position_embeddings``. transformers 4.51–4.55 always
    used that ratio when ``original_max_position_embeddings`` was present (huggingface/transformers#38224),
    which is why Qwen's docs ask to set ``max_position_embeddings = factor * 32768`` alongside YaRN: with that
    setting both readings agree.
    """
    dim, base = config.head_dim, config.rope_theta
    wavelength_ratio = base ** (torch.arange(0, dim, 2, dtype=torch.int64, device="cpu").float() / dim)
    inv_freq = 1.0 / wavelength_ratio
    scaling = config.rope_scaling
    if scaling is None:
        return inv_freq, 1.0

    original = scaling.get("original_max_position_embeddings", config.max_position_embeddings)
    factor = scaling.get("factor") or config.max_position_embeddings / original
    attention_factor = scaling.get("attention_factor")
    if attention_factor is None:
        def mscale(scale, m=1.0):
            return 1.0 if scale <= 1 else 0.1 * m * math.log(scale) + 1.0
        m, m_all = scaling.get("mscale"), scaling.get("mscale_all_dim")
        attention_factor = mscale(factor, m) / mscale(factor, m_all) if m and m_all else mscale(factor)

    # Dimension index at which a frequency completes `rotations` turns over the original context.
    def correction_dim(rotations):
        return dim * math.log(original / (rotations * 2 * math.pi)) / (2 * math.log(base))

    low, high = correction_dim(scaling.get("beta_fast") or 32), correction_dim(scaling.get("beta_slow") or 1)
    if scaling.get("truncate", True):
        low, high = math.floor(low), math.ceil(high)
    low, high = max(low, 0), min(high, dim - 1)
    if low == high:
        high += 0.001
    ramp = ((torch.arange(dim // 2, dtype=torch.float32, device="cpu") - low) / (high - low)).clamp(0, 1)
    keep = 1 - ramp                         # 1 for high-frequency dims (kept), 0 for low ones (interpolated)
    interpolated = 1.0 / (factor * wavelength_ratio)
    # (written in transformers' order of operations, so that inv_freq agrees to the last bit)
    inv_freq = interpolated * (1 - keep) + inv_freq * keep
    return inv_freq, float(attention_factor)


class RotaryEmbedding(nn.Module):
    """cos and sin [N, D] for the given positions: fp32 angles, scaled, then cast to the model dtype."""

    def __init__(self, config: Qwen3Config):
        super().__init__()
        inv_freq, self.attention_factor = rope_inv_freq(config)
        self.register_buffer("inv_freq", inv_freq, persistent=False)

    def forward(self, positions: torch.Tensor, dtype: torch.dtype):
        freqs = positions.float()[:, None] * self.inv_freq[None, :]          # [N, D/2]
        angles = torch.cat((freqs, freqs), dim=-1)                            # split-halves layout
        cos = angles.cos() * self.attention_factor
        sin = angles.sin() * self.attention_factor
        return cos.to(dtype), sin.to(dtype)
