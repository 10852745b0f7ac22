"""Shared by the decode-step tests (test_decoders.py on the CPU, test_decoder_cuda.py on the GPU,
test_model_generation.py)."""
import torch

from qwen3mini import ops
from qwen3mini.generation import KVCache


def prefilled_cache(model, lengths, capacity, seed):
    """A KV cache on the model's device whose rows hold random prompts of the given lengths (0: empty row) and
    whose free positions are NaN, so that an unwritten or misplaced slot shows."""
    cache = KVCache.for_model(model, len(lengths), capacity)
    cache.k.fill_(float("nan"))
    cache.v.fill_(float("nan"))
    rows = [r for r, n in enumerate(lengths) if n]
    g = torch.Generator().manual_seed(seed)
    if rows:
        model.prefill([torch.randint(0, model.config.vocab_size, (lengths[r],), generator=g).tolist()
                       for r in rows], cache, rows)
    return cache


class SyncFreeOps:
    """The reference ops, with decode attention and MoE dispatch rewritten without data-dependent shapes, to
    check that the model's own decode code never synchronises with the host."""

    def __getattr__(self, name):
        return getattr(ops.get_backend("reference"), name)

    def attention_decode(self, q, k_cache, v_cache, cache_seqlens, scale):
        group = q.shape[1] // k_cache.shape[2]
        k = k_cache.repeat_interleave(group, dim=2)                         # [B, S, nH, D]
        v = v_cache.repeat_interleave(group, dim=2)
        scores = torch.einsum("bhd,bshd->bhs", q, k).float() * scale
        hidden = torch.arange(k.shape[1], device=q.device)[None, :] >= cache_seqlens[:, None]
        probs = torch.softmax(scores.masked_fill(hidden[:, None, :], float("-inf")), dim=-1).to(q.dtype)
        return torch.einsum("bhs,bshd->bhd", probs, v)

    def moe_experts(self, x, topk_ids, topk_weights, w_gate_up, w_down):
        out = torch.zeros_like(x)
        inter = w_down.shape[-1]
        for e in range(w_gate_up.shape[0]):
            weight = ((topk_ids == e) * topk_weights).sum(dim=-1, keepdim=True)
            gate_up = torch.nn.functional.linear(x, w_gate_up[e])
            hidden = torch.nn.functional.silu(gate_up[:, :inter]) * gate_up[:, inter:]
            out = out + torch.nn.functional.linear(hidden, w_down[e]) * weight
        return out


def attention_decode_qkv_reference(qkv, q_norm, k_norm, cos, sin, k_cache, v_cache, lengths, n_heads, eps, scale):
    """What ``_cuda.attention_decode_qkv`` computes, in the reference ops (csrc/cuda/attention.cu): the new token's
    fused projection ``qkv`` [B, (nH + 2 nKV) D] split into heads, QK-Norm + RoPE at position ``lengths[b]`` (rows
    of the rotary tables), its K/V written into the caches there, attention over ``lengths[b] + 1`` positions;
    returns [B, nH * D]. The caches are written in place, as the kernel writes them."""
    reference = ops.get_backend("reference")
    rows, n_kv, dim = qkv.shape[0], k_cache.shape[2], k_cache.shape[3]
    q, k, v = qkv.view(rows, n_heads + 2 * n_kv, dim).split([n_heads, n_kv, n_kv], dim=1)
    positions = lengths.long()
    q, k = reference.qk_norm_rope(q, k, q_norm, k_norm, eps, cos[positions], sin[positions])
    every_row = torch.arange(rows, device=qkv.device)
    k_cache[every_row, positions] = k
    v_cache[every_row, positions] = v
    return reference.attention_decode(q, k_cache, v_cache, lengths + 1, scale).reshape(rows, n_heads * dim)
