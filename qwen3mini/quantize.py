"""Weight-only int8 quantisation for CPU inference: ``load_model(path, quantize="int8")``.

Every projection of the decoder layers (fused q/k/v, output, fused gate/up, down) and the language-model head
keeps its weight as int8 with one fp32 scale per output feature (symmetric, absmax: ``scale = max|w| / 127``,
``q = round(w / scale)``). The activations stay in the model dtype; ``ops.quantized_linear`` multiplies x by
the integers in fp32 and applies the scale after the sum (the op contract, ``csrc/README.md``). Decode reads
about half the bytes of bf16, and on a CPU decode is bound by reading the weights.

Kept in the model dtype: the embedding (a lookup reads one row a token; a tied head gets an int8 copy of it),
the norms, the MoE router (a near-tied routing decision should not flip on a rounding) and the stacked experts.
"""
import torch
import torch.nn as nn

from . import ops
from .model import Linear

QUANTIZE_CHOICES = ("int8",)
_ROWS_AT_ONCE = 4096                              # rows widened to fp32 at a time (bounds the scratch)


def quantize_rows(weight: torch.Tensor) -> tuple:
    """(int8 [N, K], fp32 scale [N]) with ``weight[n] ≈ q[n] * scale[n]``, symmetric per output feature."""
    q = torch.empty(weight.shape, dtype=torch.int8, device=weight.device)
    scale = torch.empty(weight.shape[0], dtype=torch.float32, device=weight.device)
    for n0 in range(0, weight.shape[0], _ROWS_AT_ONCE):
        rows = weight[n0:n0 + _ROWS_AT_ONCE].detach().float()
        row_scale = (rows.abs().amax(dim=1) / 127).clamp(min=torch.finfo(torch.float32).tiny)   # zero rows: 0
        q[n0:n0 + _ROWS_AT_ONCE] = torch.round(rows / row_scale[:, None]).clamp(-127, 127).to(torch.int8)
        scale[n0:n0 + _ROWS_AT_ONCE] = row_scale
    return q, scale


class QuantizedLinear(nn.Module):
    """A bias-free projection with int8 weights (``qweight`` [out, in]) and fp32 scales (``scale`` [out]),
    both buffers: ``ops.quantized_linear(x, qweight, scale)``. Inference only."""

    def __init__(self, weight: torch.Tensor):
        super().__init__()
        qweight, scale = quantize_rows(weight)
        self.register_buffer("qweight", qweight)
        self.register_buffer("scale", scale)

    def forward(self, x):
        return ops.quantized_linear(x, self.qweight, self.scale)


def check_quantize(quantize) -> None:
    """One clear error for a ``quantize`` argument that names no scheme (None means no quantisation)."""
    if quantize is not None and quantize not in QUANTIZE_CHOICES:
        raise ValueError(f"quantize={quantize!r}: expected one of {', '.join(QUANTIZE_CHOICES)} (or None)")


def quantize_model(model, quantize: str):
    """Replace ``model``'s projections and head by ``QuantizedLinear`` (in place; returns the model)."""
    check_quantize(quantize)
    if isinstance(model.lm_head, QuantizedLinear):
        raise ValueError(f"quantize={quantize!r}: the model's weights are quantised already")
    for name, module in list(model.model.layers.named_modules()):
        if isinstance(module, Linear) and not name.endswith("mlp.gate"):
            parent, _, attr = name.rpartition(".")
            setattr(model.model.layers.get_submodule(parent), attr, QuantizedLinear(module.weight))
    model.lm_head = QuantizedLinear(model.head_weight)
    return model
