"""The reference backend: every op of the contract in plain PyTorch.

This file *is* the op contract in executable form. Each function states shapes, dtypes, layouts and numerics;
the C++ and CUDA backends (and any port) must compute the same function within the tolerances stated in
``csrc/README.md`` and are checked against these functions by ``tests/kernels``. The numerics follow
Hugging Face ``transformers`` (the reference implementation of Qwen3), so that a model built on these ops matches
it to rounding (docs/qwen3.md §7).

Conventions used throughout:
    N   number of tokens (all sequences of a batch packed one after another)
    B   number of sequences
    H   hidden size;  D  head dim (128 in every released Qwen3, 64 also supported)
    nH  query heads;  nKV  key/value heads;  query head h reads KV head h // (nH // nKV)  (GQA)
    E   experts;  k  experts per token;  I  expert intermediate size
Dtypes: fp32, bf16 and fp16 activations; weights in the activation dtype (``quantized_linear``: int8). Index tensors are int32 unless
stated. Inputs may be non-contiguous only where stated.
"""
import torch
import torch.nn.functional as F


class ReferenceBackend:
    """Plain PyTorch. Works on every device, supports autograd, and is the ground truth for the others."""

    name = "reference"

    # ---------------------------------------------------------------- normalisation
    def rms_norm(self, x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
        """RMSNorm over the last dim.

        x: [..., H]; weight: [H] (same dtype as x). Returns [..., H] in x.dtype.
        Numerics (HF ``Qwen3RMSNorm``): statistics in fp32, the normalised value rounded to x.dtype *before*
        the multiply by the weight, which is done in x.dtype:  ``w * (x32 * rsqrt(mean(x32²) + eps)).to(dtype)``.
        """
        x32 = x.float()
        normed = x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + eps)
        return weight * normed.to(x.dtype)

    def add_rms_norm(self, x: torch.Tensor, residual: torch.Tensor, weight: torch.Tensor, eps: float):
        """Residual add fused with the next RMSNorm: returns ``(rms_norm(x + residual), x + residual)``.

        x, residual: [..., H], same dtype. The sum is rounded to the dtype first (HF adds residuals in the
        model dtype), and the norm is taken of that rounded sum.
        """
        summed = x + residual
        return self.rms_norm(summed, weight, eps), summed

    # ---------------------------------------------------------------- QK-Norm and rotary embedding
    def qk_norm_rope(self, q, k, q_weight, k_weight, eps: float, cos, sin):
        """QK-Norm then rotary position embedding, for the queries and keys of one layer (docs/qwen3.md §1.3, §1.4).

        q: [N, nH, D]; k: [N, nKV, D]; each may be a strided view (e.g. head slices of one fused q/k/v
        projection) with a contiguous last dim. q_weight, k_weight: [D]. cos, sin: [N, D] in q.dtype (already
        scaled by YaRN's attention factor; each row is ``cat(freqs, freqs)`` for that token's position).
        Returns new tensors (q', k') of shapes [N, nH, D] and [N, nKV, D] in q.dtype:
            q' = rope(rms_norm(q, q_weight, eps)),   k' = rope(rms_norm(k, k_weight, eps))
        with ``rms_norm`` as above (per head, over D) and ``rope`` in the split-halves (NeoX) layout, in
        q.dtype as HF computes it: ``x*cos + rotate_half(x)*sin``, ``rotate_half(x) = cat(-x2, x1)``, element
        j < D/2 pairing with j + D/2. The normalised value is rounded to q.dtype before the rotation.
        """
        return (self._rope(self.rms_norm(q, q_weight, eps), cos, sin),
                self._rope(self.rms_norm(k, k_weight, eps), cos, sin))

    @staticmethod
    def _rope(x, cos, sin):
        half = x.shape[-1] // 2
        rotated = torch.cat((-x[..., half:], x[..., :half]), dim=-1)
        return x * cos[:, None, :] + rotated * sin[:, None, :]

    # ---------------------------------------------------------------- attention
    def attention_prefill(self, q, k, v, cu_seqlens_q, cu_seqlens_k, scale: float) -> torch.Tensor:
        """Causal attention over several packed sequences of different lengths (variable-length prefill).

        q: [N, nH, D]; k, v: [M, nKV, D]; cu_seqlens_q: int32 [B+1], cu_seqlens_k: int32 [B+1] (prefix sums,
        starting at 0). Sequence b owns query rows cu_seqlens_q[b]:cu_seqlens_q[b+1] (Lq of them) and key rows
        cu_seqlens_k[b]:cu_seqlens_k[b+1] (Lk >= Lq). The mask is causal aligned to the *end*: query i of the
        sequence sees keys j <= i + (Lk - Lq), so Lk > Lq means "continue after a cached prefix of Lk - Lq
        tokens". Returns [N, nH, D] in q.dtype.
        Numerics: scores ``q·k * scale`` and softmax in fp32, probabilities rounded to q.dtype before ``@ v``
        (HF eager). Kernels may keep the probabilities in fp32 (within tolerance).
        """
        out = torch.empty_like(q)
        bounds_q, bounds_k = cu_seqlens_q.tolist(), cu_seqlens_k.tolist()
        group = q.shape[1] // k.shape[1]
        for b in range(len(bounds_q) - 1):
            q0, q1, k0, k1 = bounds_q[b], bounds_q[b + 1], bounds_k[b], bounds_k[b + 1]
            lq, lk = q1 - q0, k1 - k0
            if lq == 0:
                continue
            qb = q[q0:q1].transpose(0, 1)                                          # [nH, Lq, D]
            kb = k[k0:k1].transpose(0, 1).repeat_interleave(group, dim=0)          # [nH, Lk, D]
            vb = v[k0:k1].transpose(0, 1).repeat_interleave(group, dim=0)
            scores = torch.matmul(qb, kb.transpose(1, 2)).float() * scale
            visible = torch.ones(lq, lk, dtype=torch.bool, device=q.device).tril(diagonal=lk - lq)
            scores = scores.masked_fill(~visible, float("-inf"))
            probs = torch.softmax(scores, dim=-1).to(q.dtype)
            out[q0:q1] = torch.matmul(probs, vb).transpose(0, 1)
        return out

    def attention_decode(self, q, k_cache, v_cache, cache_seqlens, scale: float) -> torch.Tensor:
        """One new query token per sequence against its KV cache (decode step).

        q: [B, nH, D]; k_cache, v_cache: [B, S, nKV, D] (S = cache capacity; the new token's K/V are already
        written); cache_seqlens: int32 [B], the number of valid positions of each row (1 <= len <= S); the
        query attends to positions 0..len-1 (no mask beyond that). Returns [B, nH, D] in q.dtype.
        Numerics as ``attention_prefill``.
        """
        out = torch.empty_like(q)
        group = q.shape[1] // k_cache.shape[2]
        for b, length in enumerate(cache_seqlens.tolist()):
            kb = k_cache[b, :length].transpose(0, 1).repeat_interleave(group, dim=0)  # [nH, L, D]
            vb = v_cache[b, :length].transpose(0, 1).repeat_interleave(group, dim=0)
            scores = torch.matmul(q[b][:, None, :], kb.transpose(1, 2)).float() * scale  # [nH, 1, L]
            probs = torch.softmax(scores, dim=-1).to(q.dtype)
            out[b] = torch.matmul(probs, vb)[:, 0, :]
        return out

    # ---------------------------------------------------------------- feed-forward
    def linear(self, x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        """``x @ weight.T`` without bias. x: [..., in]; weight: [out, in]. fp32 accumulation, output in x.dtype.

        In decode (a handful of rows) this is the matrix-vector product that bounds speed: it must read each
        weight byte once.
        """
        return F.linear(x, weight)

    def quantized_linear(self, x: torch.Tensor, qweight: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
        """``linear`` with weight-only int8 quantisation (``qwen3mini/quantize.py``): x [..., in] in the activation
        dtype; qweight int8 [out, in]; scale fp32 [out], one per output feature (the weight row is
        ``qweight[n] * scale[n]``). Returns ``(x @ qweight.T) * scale`` in x.dtype: the integer weights times x
        summed in fp32 (at least), times the scale in fp32, rounded to x.dtype once.
        """
        wide = torch.promote_types(x.dtype, torch.float32)
        return (F.linear(x.to(wide), qweight.to(wide)) * scale.to(wide)).to(x.dtype)

    def silu_mul(self, gate_up: torch.Tensor) -> torch.Tensor:
        """SwiGLU's gate (docs/qwen3.md §1.5): gate_up [..., 2I] (the output of the fused gate/up projection, gate in the
        first half) -> ``silu(gate) * up`` [..., I] in gate_up.dtype. Numerics (HF ``Qwen3MLP``): SiLU rounded
        to the dtype, then the product rounded to the dtype. gate_up may be non-contiguous in its leading dims.
        """
        half = gate_up.shape[-1] // 2
        return F.silu(gate_up[..., :half]) * gate_up[..., half:]

    def moe_route(self, logits: torch.Tensor, top_k: int, normalize: bool):
        """The MoE router after its projection (docs/qwen3.md §1.7): choose each token's top-k experts and their weights.

        logits: [N, E] in the model dtype. Returns ``(ids, weights)``: ids int64 [N, k], distinct per row, in
        descending order of probability (ties in any order); weights [N, k] in logits.dtype.
        Numerics (HF ``Qwen3MoeSparseMoeBlock``): softmax over all E experts in fp32, the k largest
        probabilities, divided by their sum when ``normalize`` (``norm_topk_prob``), then rounded to the dtype.
        """
        probs = torch.softmax(logits, dim=-1, dtype=torch.float32)
        weights, ids = torch.topk(probs, top_k, dim=-1)
        if normalize:
            weights = weights / weights.sum(dim=-1, keepdim=True)
        return ids, weights.to(logits.dtype)

    def moe_experts(self, x, topk_ids, topk_weights, w_gate_up, w_down) -> torch.Tensor:
        """Mixture-of-experts dispatch: route each token to its k experts, run each expert's SwiGLU, combine.

        x: [N, H]; topk_ids: int64 [N, k] (distinct per row, each in [0, E)); topk_weights: [N, k] in x.dtype;
        w_gate_up: [E, 2I, H] (rows 0..I-1 are the gate projection, I..2I-1 the up projection);
        w_down: [E, H, I]. Returns [N, H] in x.dtype:
            out[t] = sum_j  topk_weights[t, j] * down_e( silu(gate_e(x[t])) * up_e(x[t]) ),  e = topk_ids[t, j]
        Experts no token chose are never touched. Numerics (HF ``Qwen3MoeSparseMoeBlock``): each expert's
        output is rounded to x.dtype, multiplied by its weight in x.dtype, and accumulated into a zero-initialised
        x.dtype buffer in ascending expert-id order.
        """
        out = torch.zeros_like(x)
        inter = w_down.shape[-1]
        for e in torch.unique(topk_ids).tolist():
            token, slot = torch.where(topk_ids == e)
            gate_up = F.linear(x[token], w_gate_up[e])
            hidden = F.silu(gate_up[:, :inter]) * gate_up[:, inter:]
            y = F.linear(hidden, w_down[e]) * topk_weights[token, slot, None]
            out = out.index_add(0, token, y.to(out.dtype))     # (under autocast y is bf16; HF casts the same)
        return out
