"""The whole decode step as one interface, and the one place that hands a model's weights to a backend's step.

Beside the nine ops, a backend may run a model's whole decode step in compiled code (the per-op route costs a
small model's decode step more in Python calls than in arithmetic). Such a step is a ``DecodeStep``;
``ops.decode_step(model, cache)`` asks the backend of the cache's device for one. Every backend's step reads
the model's weights through ``named_weights`` (their names in the model: Hugging Face's, with q/k/v fused into
``self_attn.qkv_proj`` and gate/up into ``mlp.gate_up_proj``) and the rotary tables through ``rotary_tables``,
so a new backend learns one format.
"""
from typing import Protocol

import torch


class DecodeStep(Protocol):
    """``model.decode_step(tokens, cache)`` in one call: what every backend's step (``CppDecodeStep``,
    ``CudaDecodeStep``, ``CudaBatchDecodeStep``) and the CUDA-graph replay of one
    (``cuda_graphs.GraphedDecodeStep``) offer.

    ``step(tokens)``: tokens LongTensor [n], one per cache row 0..n-1 (1 <= n <= ``max_rows``). Writes each
    row's K/V at position ``cache.lengths[b]``, advances ``cache.lengths[:n]`` by one, returns the next-token
    logits [n, vocab]. The logits may live in a buffer that the next ``step`` overwrites (clone to keep them).
    """

    max_rows: int

    def step(self, tokens: torch.Tensor) -> torch.Tensor: ...


def named_weights(model) -> dict:
    """Every weight of ``model`` by its name in the model (``model.layers.3.self_attn.qkv_proj.weight``, ...),
    detached, plus the head as ``lm_head.weight`` (the embedding when the head is tied). A projection quantised to
    int8 (``qwen3mini/quantize.py``) comes as ``<name>.qweight`` (int8) and ``<name>.scale`` (fp32) instead of
    ``<name>.weight``, the head as ``lm_head.qweight`` and ``lm_head.scale``.

    The tensors are the model's own (not copies): a step sees weights loaded in place, not a replaced
    parameter (build a new step then)."""
    weights = {name: p.detach() for name, p in model.named_parameters()}
    weights.update((name, b) for name, b in model.named_buffers() if name.endswith((".qweight", ".scale")))
    if model.lm_head is None:
        weights["lm_head.weight"] = model.model.embed_tokens.weight.detach()
    return weights


@torch.no_grad()
def rotary_tables(model, cache):
    """cos, sin [cache capacity, head_dim] in the model's dtype on the cache's device, by the model's own
    ``RotaryEmbedding``: bit for bit the values the op path computes for each position."""
    positions = torch.arange(cache.max_seq_len, device=cache.k.device)
    cos, sin = model.model.rotary(positions, model.dtype)
    return cos.contiguous(), sin.contiguous()
