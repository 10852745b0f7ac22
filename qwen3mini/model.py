"""The Qwen3 model, dense and MoE (technical report §2; docs/qwen3.md §1 and the numerics checklist §7).

Read it top to bottom beside the paper: RMSNorm, rotary embedding (with YaRN), grouped-query attention with
QK-Norm, the SwiGLU MLP, the mixture-of-experts block with its router, the decoder layer, the model and the
language-model head.

Every tensor inside the model is *packed*: the tokens of all sequences of a batch lie one after another,
``[N, hidden]``, and an attention context says where each sequence starts (``cu_seqlens``, as in
FlashAttention's varlen API). One code path thus serves training on equal-length rows, batched prefill of
prompts of unequal length, and single-token decode against a KV cache. The few operations whose speed matters
go through the op layer (``qwen3mini.ops``: reference PyTorch, C++ or CUDA backends, same contract), so
swapping kernels never touches this file.

Numerics follow Hugging Face ``transformers`` (the reference implementation): parameters and activations in
the model dtype, fp32 only where HF uses it (norm statistics, RoPE angles, attention softmax, router softmax).
"""
import torch
import torch.nn as nn
import torch.nn.functional as F

from . import ops
from .config import Qwen3Config
from .generation import check_context, generate
from .rope import RotaryEmbedding

try:                        # torch's FlashAttention over packed sequences (CUDA, fp16/bf16, with a backward)
    from torch.nn.attention.varlen import varlen_attn
except ImportError:
    varlen_attn = None


# Modules allocate their parameters with torch.empty and leave initialisation to
# Qwen3ForCausalLM.init_weights: the checkpoint loader builds the model on the meta device, where random init
# would be wasted work (and, on meta, pulls in torch's compiler stack at import time).
class Linear(nn.Module):
    """A bias-free projection (Qwen3 has no biases, docs/qwen3.md §1): ``x @ weight.T`` via ``ops.linear``."""

    def __init__(self, in_features: int, out_features: int):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(out_features, in_features))

    def forward(self, x):
        return ops.linear(x, self.weight)


class Embedding(nn.Module):
    """Token id -> row of the embedding matrix [vocab, hidden] (no scaling, docs/qwen3.md §1.6)."""

    def __init__(self, vocab_size: int, hidden_size: int):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(vocab_size, hidden_size))

    def forward(self, tokens):
        return F.embedding(tokens, self.weight)


class RMSNorm(nn.Module):
    """RMSNorm (docs/qwen3.md §1.2): fp32 statistics, rounded to the model dtype *before* the weight multiply."""

    def __init__(self, size: int, eps: float):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(size))
        self.eps = eps

    def forward(self, x):
        return ops.rms_norm(x, self.weight, self.eps)


# ---------------------------------------------------------------------------------------------- attention
class PrefillContext:
    """Attention over packed sequences, optionally appending to a KV cache (prefill / training).

    Without a cache every sequence attends to its own tokens (causal). With a cache, row ``rows[b]`` already
    holds ``starts[b]`` tokens: the new keys/values are written after them and the new queries attend to the
    whole row (``Lk = start + Lq``, causal aligned to the end; see ``ops.attention_prefill``).
    """

    def __init__(self, cu_seqlens, cache=None, rows=None, starts=None, equal_rows=None, row_mask=None):
        self.cu_seqlens_q = self.cu_seqlens_k = cu_seqlens
        self.equal_rows = equal_rows            # (B, T) when the packed tokens are B full rows of T tokens
        self.row_mask = row_mask                # [B, 1, T, T] bool when those rows hold several sequences
        self.longest = None                     # the longest sequence, when an attention kernel needs it
        self.cache = cache
        if cache is None:
            return
        bounds = cu_seqlens.tolist()
        # per sequence: (cache row, its first new position, number of new tokens, their slice of the pack)
        self.writes = [(row, start, b - a, slice(a, b))
                       for row, start, a, b in zip(rows, starts, bounds[:-1], bounds[1:])]
        self.continues = any(starts)
        if self.continues:                      # keys: each row's whole history, packed
            lengths = [start + n for _, start, n, _ in self.writes]
            cu_k = torch.tensor([0] + lengths, dtype=torch.int64).cumsum(0)
            self.cu_seqlens_k = cu_k.to(device=cu_seqlens.device, dtype=torch.int32)

    def attend(self, layer: int, q, k, v, scale: float):
        if self.cache is None:
            if self.equal_rows is not None and torch.is_grad_enabled() and q.requires_grad:
                return self._sdpa(q, k, v, scale)
            return ops.attention_prefill(q, k, v, self.cu_seqlens_q, self.cu_seqlens_k, scale)
        cache_k, cache_v = self.cache.k[layer], self.cache.v[layer]
        for row, start, n, span in self.writes:
            cache_k[row, start:start + n] = k[span]
            cache_v[row, start:start + n] = v[span]
        if self.continues:
            k = torch.cat([cache_k[row, :start + n] for row, start, n, _ in self.writes])
            v = torch.cat([cache_v[row, :start + n] for row, start, n, _ in self.writes])
        return ops.attention_prefill(q, k, v, self.cu_seqlens_q, self.cu_seqlens_k, scale)

    def _sdpa(self, q, k, v, scale):
        """Training fast path. Autograd would run the reference op anyway (kernels are forward-only), which
        loops over rows and keeps every [heads, T, T] score matrix for the backward pass; for full rows of
        equal length torch's fused causal attention computes the same function (up to fp32 rounding) faster and
        without materialising the scores (bench/RESULTS.md)."""
        if self.row_mask is not None and varlen_attn is not None and q.is_cuda:
            # Under autocast q and k arrive in fp32 (QK-Norm's fp32 weight promotes them): the kernel takes
            # them in the autocast dtype, as autocast itself would hand them to SDPA.
            dtype = torch.get_autocast_dtype("cuda") if torch.is_autocast_enabled("cuda") else q.dtype
            if dtype != torch.float32:
                return self._varlen(q.to(dtype), k.to(dtype), v.to(dtype), scale)
        (batch, time), heads, kv_heads, dim = self.equal_rows, q.shape[1], k.shape[1], q.shape[2]
        q, k, v = (t.view(batch, time, t.shape[1], dim).transpose(1, 2) for t in (q, k, v))
        if self.row_mask is None:
            out = F.scaled_dot_product_attention(q, k, v, is_causal=True, scale=scale,
                                                 enable_gqa=heads != kv_heads)
        else:
            # Packed rows: the block-diagonal causal mask keeps each sequence to itself. A mask rules out
            # the flash kernel; KV heads are repeated so that the memory-efficient one (which takes masks
            # but not grouped heads) serves it rather than the math fallback that stores the scores.
            k, v = (t.repeat_interleave(heads // kv_heads, dim=1) for t in (k, v))
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=self.row_mask, scale=scale)
        return out.transpose(1, 2).reshape(batch * time, heads, dim)

    def _varlen(self, q, k, v, scale):
        """Packed rows on a GPU: FlashAttention over the sequences themselves (causal inside each, window
        (-1, 0)), so neither the mask nor the work on the masked-out blocks; KV heads repeated as above."""
        if self.longest is None:                # one host sync a forward pass, not one a layer
            self.longest = int((self.cu_seqlens_q[1:] - self.cu_seqlens_q[:-1]).max())
        k, v = (t.repeat_interleave(q.shape[1] // k.shape[1], dim=1) for t in (k, v))
        return varlen_attn(q.contiguous(), k, v, self.cu_seqlens_q, self.cu_seqlens_k, self.longest, self.longest,
                           scale=scale, window_size=(-1, 0))


class DecodeContext:
    """One new token per cache row: write its K/V at position ``lengths[b]``, attend to ``lengths[b] + 1``.

    Positions stay on the device (no ``.item()``), so a decode step can be captured in a CUDA graph. The
    writes address each layer's cache as one [rows * capacity, nKV, D] table: one ``index_copy_`` (a single
    kernel) per tensor, where indexing by (row, position) pairs costs several."""

    def __init__(self, cache):
        self.cache = cache
        rows = torch.arange(cache.lengths.shape[0], device=cache.lengths.device)
        self.slots = rows * cache.max_seq_len + cache.lengths.long()
        self.seqlens = cache.lengths + 1

    def attend(self, layer: int, q, k, v, scale: float):
        cache_k, cache_v = self.cache.k[layer], self.cache.v[layer]
        cache_k.view(-1, *k.shape[1:]).index_copy_(0, self.slots, k)
        cache_v.view(-1, *v.shape[1:]).index_copy_(0, self.slots, v)
        return ops.attention_decode(q, cache_k, cache_v, self.seqlens, scale)


class Attention(nn.Module):
    """Grouped-query attention with QK-Norm (docs/qwen3.md §1.3).

    q, k, v projections -> per-head RMSNorm of q and k (QK-Norm, *before* RoPE) -> RoPE -> causal attention,
    query head h reading KV head h // (nH / nKV) -> output projection. Scale 1/sqrt(head_dim).

    The three input projections are one matrix, ``qkv_proj`` [(nH + 2 nKV) D, H]: the checkpoint's q_proj,
    k_proj and v_proj stacked by rows (``checkpoint.py`` maps the names). One matrix-vector product instead
    of three per token is what decode speed asks for (bench/RESULTS.md); the arithmetic is the same.
    """

    def __init__(self, config: Qwen3Config, layer: int):
        super().__init__()
        H, D = config.hidden_size, config.head_dim
        self.layer, self.head_dim = layer, D
        self.num_heads, self.num_kv_heads = config.num_attention_heads, config.num_key_value_heads
        self.scale = D ** -0.5
        self.qkv_proj = Linear(H, (self.num_heads + 2 * self.num_kv_heads) * D)
        self.o_proj = Linear(self.num_heads * D, H)
        self.q_norm = RMSNorm(D, config.rms_norm_eps)
        self.k_norm = RMSNorm(D, config.rms_norm_eps)

    def forward(self, x, cos, sin, context):
        n = x.shape[0]
        qkv = self.qkv_proj(x).view(n, self.num_heads + 2 * self.num_kv_heads, self.head_dim)
        q, k, v = qkv.split([self.num_heads, self.num_kv_heads, self.num_kv_heads], dim=1)
        q, k = ops.qk_norm_rope(q, k, self.q_norm.weight, self.k_norm.weight, self.q_norm.eps, cos, sin)
        out = context.attend(self.layer, q, k, v, self.scale)
        return self.o_proj(out.reshape(n, self.num_heads * self.head_dim))


# ---------------------------------------------------------------------------------------------- feed-forward
class MLP(nn.Module):
    """SwiGLU feed-forward (docs/qwen3.md §1.5): ``down(silu(gate(x)) * up(x))``.

    gate and up are one matrix, ``gate_up_proj`` [2I, H] (gate rows first), for the same reason as
    ``qkv_proj``; ``ops.silu_mul`` splits its output."""

    def __init__(self, hidden_size: int, intermediate_size: int):
        super().__init__()
        self.gate_up_proj = Linear(hidden_size, 2 * intermediate_size)
        self.down_proj = Linear(intermediate_size, hidden_size)

    def forward(self, x):
        return self.down_proj(ops.silu_mul(self.gate_up_proj(x)))


class Experts(nn.Module):
    """E SwiGLU experts with their weights stacked: ``gate_up_proj`` [E, 2I, H] (gate rows first) and
    ``down_proj`` [E, H, I]; the checkpoint stores them per expert (``checkpoint.py`` stacks them)."""

    def __init__(self, num_experts: int, hidden_size: int, intermediate_size: int):
        super().__init__()
        self.gate_up_proj = nn.Parameter(torch.empty(num_experts, 2 * intermediate_size, hidden_size))
        self.down_proj = nn.Parameter(torch.empty(num_experts, hidden_size, intermediate_size))

    def forward(self, x, topk_ids, topk_weights):
        return ops.moe_experts(x, topk_ids, topk_weights, self.gate_up_proj, self.down_proj)


class MoE(nn.Module):
    """Sparse mixture-of-experts block (docs/qwen3.md §1.7), no shared expert (paper §2).

    Router: ``logits = x W_g^T`` (model dtype) -> softmax in fp32 over all experts -> top-k -> renormalise
    if ``norm_topk_prob`` -> cast to the model dtype. Each token's output is the weighted sum of its k experts.
    The router logits [N, E] are returned for the load-balancing loss (paper §2, docs/qwen3.md §1.8).
    """

    def __init__(self, config: Qwen3Config):
        super().__init__()
        self.top_k, self.norm_topk_prob = config.num_experts_per_tok, config.norm_topk_prob
        self.gate = Linear(config.hidden_size, config.num_experts)
        self.experts = Experts(config.num_experts, config.hidden_size, config.moe_intermediate_size)

    def route(self, x):
        """(router logits [N, E], top-k expert ids int64 [N, k], their weights [N, k] in x.dtype)."""
        logits = self.gate(x)
        ids, weights = ops.moe_route(logits, self.top_k, self.norm_topk_prob)
        return logits, ids, weights

    def forward(self, x):
        logits, ids, weights = self.route(x)
        return self.experts(x, ids, weights), logits


# ---------------------------------------------------------------------------------------------- layers
class DecoderLayer(nn.Module):
    """Pre-norm block (docs/qwen3.md §1.6): ``h = x + Attn(norm(x)); y = h + MLP(norm(h))``.

    The residual add is fused with the norm that follows it (``ops.add_rms_norm``), so a layer takes and
    returns the pair (normalised input of this block's attention, residual stream) in the style of
    nano-vllm; the sums are rounded to the model dtype exactly as in HF.
    """

    def __init__(self, config: Qwen3Config, layer: int):
        super().__init__()
        self.input_layernorm = RMSNorm(config.hidden_size, config.rms_norm_eps)
        self.self_attn = Attention(config, layer)
        self.post_attention_layernorm = RMSNorm(config.hidden_size, config.rms_norm_eps)
        self.is_moe = config.is_moe_layer(layer)
        self.mlp = MoE(config) if self.is_moe else MLP(config.hidden_size, config.intermediate_size)

    def forward(self, x, residual, cos, sin, context):
        """x: this layer's input; residual: the stream still to be added to it (None in the first layer).

        Returns (mlp output, stream before it, router logits or None); the caller adds the two."""
        if residual is None:
            residual, h = x, self.input_layernorm(x)
        else:
            h, residual = ops.add_rms_norm(x, residual, self.input_layernorm.weight, self.input_layernorm.eps)
        h = self.self_attn(h, cos, sin, context)
        h, residual = ops.add_rms_norm(h, residual, self.post_attention_layernorm.weight,
                                       self.post_attention_layernorm.eps)
        router_logits = None
        if self.is_moe:
            h, router_logits = self.mlp(h)
        else:
            h = self.mlp(h)
        return h, residual, router_logits


class Qwen3Model(nn.Module):
    """Embedding -> decoder layers -> final RMSNorm (no embedding scaling, no soft-capping; docs/qwen3.md §1.6)."""

    def __init__(self, config: Qwen3Config):
        super().__init__()
        self.embed_tokens = Embedding(config.vocab_size, config.hidden_size)
        self.layers = nn.ModuleList(DecoderLayer(config, layer) for layer in range(config.num_hidden_layers))
        self.norm = RMSNorm(config.hidden_size, config.rms_norm_eps)
        self.rotary = RotaryEmbedding(config)

    def forward(self, tokens, positions, context):
        """tokens, positions: [N] (packed). Returns (final hidden states [N, H], router logits per MoE layer)."""
        x = self.embed_tokens(tokens)
        cos, sin = self.rotary(positions, x.dtype)
        residual, router_logits = None, []
        for layer in self.layers:
            x, residual, logits = layer(x, residual, cos, sin, context)
            if logits is not None:
                router_logits.append(logits)
        x, _ = ops.add_rms_norm(x, residual, self.norm.weight, self.norm.eps)
        return x, router_logits


def packed_sequences(position_ids: torch.Tensor, shape) -> tuple:
    """Rows [B, T] holding several sequences each, described by their positions (0 where one starts):
    (positions [B*T], cu_seqlens of the sequences, block-diagonal causal mask [B, 1, T, T])."""
    if position_ids.shape != shape:
        raise ValueError(f"position_ids has shape {tuple(position_ids.shape)}, input_ids {tuple(shape)}")
    previous = F.pad(position_ids[:, :-1], (1, 0), value=-1)
    starts = position_ids == 0
    if not bool((starts | (position_ids == previous + 1)).all()):
        raise ValueError("position_ids: every row must start at 0 and count up by 1 until the next 0")
    sequence = starts.cumsum(dim=1)                                     # [B, T]: which sequence of its row
    time = torch.arange(shape[1], device=position_ids.device)
    causal = time[:, None] >= time[None, :]
    row_mask = (sequence[:, :, None] == sequence[:, None, :]) & causal  # [B, T, T]
    first = starts.reshape(-1).nonzero().flatten()
    cu_seqlens = F.pad(first, (0, 1), value=position_ids.numel()).to(torch.int32)
    return position_ids.reshape(-1), cu_seqlens, row_mask[:, None]


class Qwen3ForCausalLM(nn.Module):
    """The causal language model: ``Qwen3Model`` plus the head (tied to the embedding or separate).

    Entry points: ``forward`` (no cache; training and scoring), ``prefill`` and ``decode_step`` (against a
    ``generation.KVCache``) and ``generate``.
    """

    def __init__(self, config: Qwen3Config):
        super().__init__()
        self.config = config
        self.model = Qwen3Model(config)
        self.lm_head = None if config.tie_word_embeddings else Linear(config.hidden_size, config.vocab_size)
        if self.model.embed_tokens.weight.device.type != "meta":
            self.init_weights()

    # -------------------------------------------------------------- weights
    @property
    def head_weight(self) -> torch.Tensor:
        """The head's weight in the model dtype (the embedding when tied; not for a quantised head)."""
        return self.model.embed_tokens.weight if self.lm_head is None else self.lm_head.weight

    @torch.no_grad()
    def init_weights(self):
        """Training from scratch: normal(0, initializer_range) matrices, ones for norms (as HF does)."""
        std = self.config.initializer_range
        for name, p in self.named_parameters():
            if name.endswith("norm.weight"):
                p.fill_(1.0)
            else:
                p.normal_(0.0, std)

    @property
    def device(self) -> torch.device:
        return self.model.embed_tokens.weight.device

    @property
    def dtype(self) -> torch.dtype:
        return self.model.embed_tokens.weight.dtype

    def logits(self, hidden):
        return ops.linear(hidden, self.model.embed_tokens.weight) if self.lm_head is None else self.lm_head(hidden)

    # -------------------------------------------------------------- no-cache forward
    def forward(self, input_ids: torch.Tensor, return_router_logits: bool = False, position_ids=None):
        """input_ids LongTensor [B, T] (all rows the same length, no padding) -> logits [B, T, vocab].

        With ``return_router_logits`` also returns the router logits of every MoE layer, each [B*T, E]
        (an empty list for a dense model) for the load-balancing loss.

        ``position_ids`` [B, T] packs several sequences into a row (SFT on conversations): a sequence starts
        wherever the position is 0, its positions count up from there, and its tokens attend only to its
        own (transformers reads packed position_ids the same way for its varlen attention).
        """
        if input_ids.dim() != 2:
            raise ValueError(f"input_ids must be [batch, time], got shape {tuple(input_ids.shape)}")
        batch, time = input_ids.shape
        check_context(self.config, time, "sequence length")
        device = input_ids.device
        if position_ids is None:
            positions = torch.arange(time, device=device).repeat(batch)
            cu_seqlens = torch.arange(0, batch + 1, device=device, dtype=torch.int32) * time
            context = PrefillContext(cu_seqlens, equal_rows=(batch, time))
        else:
            positions, cu_seqlens, row_mask = packed_sequences(position_ids, input_ids.shape)
            context = PrefillContext(cu_seqlens, equal_rows=(batch, time), row_mask=row_mask)
        hidden, router_logits = self.model(input_ids.reshape(-1), positions, context)
        logits = self.logits(hidden).view(batch, time, -1)
        return (logits, router_logits) if return_router_logits else logits

    # -------------------------------------------------------------- cached inference
    @torch.no_grad()
    def prefill(self, sequences, cache, rows=None) -> torch.Tensor:
        """Append token sequences (unequal lengths) to cache rows in one packed pass.

        sequences: list of lists of ints / 1-D LongTensors, one per entry of ``rows`` (default: rows 0..n-1),
        each non-empty. Row r continues after the ``cache.lengths[r]`` tokens it already holds.
        Returns the logits of each sequence's last token, [len(rows), vocab]. ``cache.lengths`` is advanced
        only after the whole pass succeeded.
        """
        rows = list(range(len(sequences))) if rows is None else list(rows)
        if len(rows) != len(sequences):
            raise ValueError(f"prefill got {len(sequences)} sequences for {len(rows)} rows")
        device = self.device
        seqs = [torch.as_tensor(s, dtype=torch.long).reshape(-1) for s in sequences]
        lengths = [len(s) for s in seqs]
        if any(n == 0 for n in lengths):
            raise ValueError("prefill: every sequence needs at least one token")
        starts = cache.lengths[rows].tolist()
        for row, start, n in zip(rows, starts, lengths):
            if start + n > cache.max_seq_len:
                raise ValueError(f"prefill: row {row} would hold {start + n} tokens; the KV cache holds "
                                 f"{cache.max_seq_len} (max_seq_len)")
        check_context(self.config, max(s + n for s, n in zip(starts, lengths)), "sequence length")
        tokens = torch.cat(seqs).to(device)
        positions = torch.cat([torch.arange(s, s + n) for s, n in zip(starts, lengths)]).to(device)
        cu_seqlens = torch.tensor([0] + lengths, dtype=torch.int64).cumsum(0).to(device, torch.int32)
        context = PrefillContext(cu_seqlens, cache, rows, starts)
        hidden, _ = self.model(tokens, positions, context)
        logits = self.logits(hidden[cu_seqlens[1:].long() - 1])
        cache.lengths[rows] += torch.tensor(lengths, dtype=torch.int32, device=cache.lengths.device)
        return logits

    @torch.no_grad()
    def decode_step(self, tokens: torch.Tensor, cache) -> torch.Tensor:
        """One token per cache row: tokens LongTensor [B] -> next-token logits [B, vocab].

        Positions come from ``cache.lengths`` on the device and the lengths are advanced in place at the end,
        with no host synchronisation, so the step can be captured in a CUDA graph. The caller makes sure no
        row is full (``Generator`` checks on the host)."""
        positions = cache.lengths.long()
        hidden, _ = self.model(tokens.reshape(-1), positions, DecodeContext(cache))
        logits = self.logits(hidden)
        cache.lengths += 1
        return logits

    def generate(self, input_ids, max_new_tokens: int, temperature: float = 0.0, **kwargs):
        """Greedy or sampled continuation; see ``qwen3mini.generation.generate`` for the options."""
        return generate(self, input_ids, max_new_tokens, temperature=temperature, **kwargs)
