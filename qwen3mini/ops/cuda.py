"""The CUDA backend of the op layer: thin wrappers around the kernels in ``csrc/cuda`` (module ``qwen3mini._cuda``).

Kernels exist for bf16 and fp16 (the dtypes a GPU model runs in); fp32 inputs, shapes a kernel does not cover
(head_dim other than 64/128 for attention, sizes not a multiple of 8, more than 1024 experts or top-k above 64)
and CPU tensors run the reference ops instead, so every call computes the contract of ``reference.py`` whatever
it is given. Every kernel sizes its launch from shapes alone (no host synchronisation), so a decode step built
from these ops can be captured in a CUDA graph (``qwen3mini/cuda_graphs.py``); attention_prefill is the
exception (it reads the sequence bounds on the host) and never runs inside a graph. ``linear`` of a single row
(batch-1 decode) is a bandwidth-bound GEMV kernel (csrc/cuda/gemv.cu); with more rows it is cuBLAS. Beside the
ops, ``CudaBackend.decode_step`` offers the whole decode step of a dense model fused into 5 kernels a layer
(``CudaDecodeStep``, csrc/cuda/decode_step.cu), which ``cuda_graphs.GraphedDecodeStep`` captures; and
``GumbelSampler``, sampling at a temperature with no filter in one kernel (csrc/cuda/sampling.cu), which
``qwen3mini.sampling.Sampler`` uses where it applies.

Importing this module never fails on a machine without CUDA or without the built extension (``register`` then
registers nothing), except when ``QWEN3MINI_REQUIRE_EXT=1`` and a GPU is present: then a missing extension is
an ImportError, so that CI and the device tests fail instead of silently testing the reference.
"""
import os

import torch
import torch.nn.functional as F

from .decode_step import named_weights, rotary_tables
from .reference import ReferenceBackend

try:
    from qwen3mini import _cuda
    _IMPORT_ERROR = None
except ImportError as error:  # not built (CPU machine, or no nvcc at install time)
    _cuda, _IMPORT_ERROR = None, error

if _cuda is None and os.environ.get("QWEN3MINI_REQUIRE_EXT") == "1" and torch.cuda.is_available():
    raise ImportError(f"qwen3mini._cuda is required (QWEN3MINI_REQUIRE_EXT=1) but failed to import: {_IMPORT_ERROR}")

_KERNEL_DTYPES = (torch.bfloat16, torch.float16)


def _on_gpu(*tensors) -> bool:
    """True when the kernels can take these tensors: all on a CUDA device, in bf16/fp16."""
    return all(t.is_cuda and t.dtype in _KERNEL_DTYPES for t in tensors)


class CudaBackend(ReferenceBackend):
    """Fused CUDA kernels where they exist; the inherited reference ops everywhere else."""

    name = "cuda"

    def rms_norm(self, x, weight, eps):
        if not (_on_gpu(x, weight) and x.shape[-1] % 8 == 0):
            return super().rms_norm(x, weight, eps)
        return _cuda.add_rms_norm(x, None, weight, eps)[0]

    def add_rms_norm(self, x, residual, weight, eps):
        if not (_on_gpu(x, residual, weight) and x.shape[-1] % 8 == 0 and x.shape == residual.shape):
            return super().add_rms_norm(x, residual, weight, eps)
        normed, summed = _cuda.add_rms_norm(x, residual, weight, eps)
        return normed, summed

    def qk_norm_rope(self, q, k, q_weight, k_weight, eps, cos, sin):
        # One launch for the q and k heads of a layer; strided head slices of the fused qkv output are read in
        # place (only the innermost dim must be dense) and the outputs are contiguous.
        if not (_on_gpu(q, k, q_weight, k_weight, cos, sin) and q.dim() == 3 and k.dim() == 3
                and q.shape[-1] % 2 == 0 and q.shape[-1] <= 256
                and len({t.dtype for t in (q, k, q_weight, k_weight, cos, sin)}) == 1):
            return super().qk_norm_rope(q, k, q_weight, k_weight, eps, cos, sin)
        q_out, k_out = _cuda.qk_norm_rope(q, k, q_weight, k_weight, float(eps), cos, sin)
        return q_out, k_out

    def attention_prefill(self, q, k, v, cu_seqlens_q, cu_seqlens_k, scale):
        if not (_on_gpu(q, k, v) and q.shape[-1] in (64, 128) and q.dtype == k.dtype == v.dtype):
            return super().attention_prefill(q, k, v, cu_seqlens_q, cu_seqlens_k, scale)
        # One small device-to-host copy: the grid size needs the longest query run, and the bounds are
        # validated here because the kernel trusts them. (Prefill is never inside a CUDA graph.)
        if cu_seqlens_q.shape != cu_seqlens_k.shape or cu_seqlens_q.dim() != 1:
            raise ValueError(f"attention_prefill: cu_seqlens_q {tuple(cu_seqlens_q.shape)} and cu_seqlens_k "
                             f"{tuple(cu_seqlens_k.shape)} must both be [B+1]")
        bounds = torch.stack([cu_seqlens_q, cu_seqlens_k]).to(torch.int64).cpu()
        lengths = bounds.diff(dim=1)
        if bounds[0, 0] != 0 or bounds[1, 0] != 0 or (lengths < 0).any():
            raise ValueError("attention_prefill: cu_seqlens_q/k must be non-decreasing prefix sums starting at 0")
        if bounds[0, -1] > q.shape[0] or bounds[1, -1] > k.shape[0]:
            raise ValueError(f"attention_prefill: cu_seqlens end at {bounds[0, -1].item()}/{bounds[1, -1].item()} "
                             f"but q has {q.shape[0]} rows and k {k.shape[0]}")
        if (lengths[1] < lengths[0]).any():
            raise ValueError("attention_prefill: every sequence needs Lk >= Lq (keys = cached prefix + queries)")
        max_q = int(lengths[0].max()) if lengths.numel() else 0
        return _cuda.attention_prefill(q, k, v, cu_seqlens_q.to(torch.int32).contiguous(),
                                       cu_seqlens_k.to(torch.int32).contiguous(), float(scale), max_q)

    def attention_decode(self, q, k_cache, v_cache, cache_seqlens, scale):
        group = q.shape[1] // max(k_cache.shape[2], 1)
        if not (_on_gpu(q, k_cache, v_cache) and q.shape[-1] in (64, 128) and group <= 16
                and q.dtype == k_cache.dtype == v_cache.dtype):
            return super().attention_decode(q, k_cache, v_cache, cache_seqlens, scale)
        # No validation that needs the lengths' values: this runs inside captured CUDA graphs. Lengths above
        # the cache capacity are clamped to it by the kernel.
        return _cuda.attention_decode(q, k_cache, v_cache, cache_seqlens.to(torch.int32), float(scale))

    def linear(self, x, weight):
        k = x.shape[-1]
        rows = x.numel() // k if k else 0
        if (_on_gpu(x, weight) and x.dtype == weight.dtype and weight.dim() == 2 and k % 8 == 0
                and rows == 1 and weight.data_ptr() % 16 == 0):
            return _cuda.gemv(x.reshape(1, k), weight).view(*x.shape[:-1], weight.shape[0])
        return F.linear(x, weight)

    def silu_mul(self, gate_up):
        if not (_on_gpu(gate_up) and gate_up.dim() >= 1 and gate_up.shape[-1] % 2 == 0):
            return super().silu_mul(gate_up)
        return _cuda.silu_mul(gate_up)

    def moe_route(self, logits, top_k, normalize):
        if not (_on_gpu(logits) and logits.dim() == 2 and 1 <= logits.shape[1] <= 1024
                and 1 <= top_k <= min(64, logits.shape[1])):
            return super().moe_route(logits, top_k, normalize)
        ids, weights = _cuda.moe_route(logits, int(top_k), bool(normalize))
        return ids, weights

    def moe_experts(self, x, topk_ids, topk_weights, w_gate_up, w_down):
        hidden, inter, experts = x.shape[-1], w_down.shape[-1], w_gate_up.shape[0]
        if not (_on_gpu(x, topk_weights, w_gate_up, w_down) and x.dim() == 2 and hidden % 8 == 0
                and inter % 8 == 0 and experts <= 1024 and topk_ids.shape[-1] <= 64 and topk_ids.is_cuda):
            return super().moe_experts(x, topk_ids, topk_weights, w_gate_up, w_down)
        # Out-of-range expert ids are dropped by the kernel rather than checked here (a check would need a
        # host sync, which CUDA-graph decode cannot have); the router can only produce valid ids.
        return _cuda.moe_experts(x, topk_ids.to(torch.int64), topk_weights, w_gate_up, w_down)

    def decode_step(self, model, cache):
        """The backend's own decode step for ``model`` over ``cache``, or None where it has none.

        Caches of 1 to ``_cuda.MAX_ROWS`` rows get ``CudaDecodeStep`` (batch-1 decode is what it is for); larger
        ones ``CudaBatchDecodeStep`` (rollouts and evaluation batches: there the projections are matrix products,
        which cuBLAS does better). Both serve dense models in bf16/fp16 on the GPU with head_dim 64 or 128, at
        most 16 query heads per KV head, hidden and intermediate sizes that are multiples of 8. MoE models, fp32
        models, int8 weights and other shapes get None: the op path (``model.decode_step``) runs.
        ``QWEN3MINI_FUSED_STEP=0`` turns both off (for A/B comparisons)."""
        config = model.config
        if (_cuda is None or os.environ.get("QWEN3MINI_FUSED_STEP", "1") == "0" or not cache.k.is_cuda
                or model.dtype not in _KERNEL_DTYPES or cache.k.dtype != model.dtype
                or any(b.dtype == torch.int8 for b in model.buffers())      # int8 weights: the op path
                or any(config.is_moe_layer(layer) for layer in range(config.num_hidden_layers))
                or config.head_dim not in (64, 128)
                or config.num_attention_heads % config.num_key_value_heads != 0
                or config.num_attention_heads // config.num_key_value_heads > 16
                or config.hidden_size % 8 or config.intermediate_size % 8 or cache.batch_size < 1):
            return None
        return CudaDecodeStep(model, cache) if cache.batch_size <= _cuda.MAX_ROWS else CudaBatchDecodeStep(model, cache)


class CudaDecodeStep:
    """The whole decode step of a dense model in compiled code (a ``DecodeStep``): 5 kernels a layer + the LM head
    (csrc/cuda/decode_step.cu).

    ``step(tokens)`` does what ``model.decode_step(tokens, cache)`` does -- embed, every layer with its KV write at
    position ``cache.lengths[b]``, final norm, LM head, ``cache.lengths += 1`` -- fusing across op boundaries: the
    RMSNorms run as prologues of the projections after them, the residual adds as epilogues of the ones before,
    SiLU*up as the epilogue of gate_up, QK-Norm + RoPE + the KV write + split-KV attention + its combine as one
    kernel. The rounding to the model dtype after each op is the reference's. No host sync: capturable in a CUDA
    graph (``cuda_graphs.GraphedDecodeStep`` does). The logits are a buffer that the next ``step`` overwrites.

    The weights (``named_weights``) are held by reference (in-place updates are seen); the cache's k/v/lengths are
    used in place; the rotary tables are the model's own (``rotary_tables``). ``max_rows``: the cache's rows.
    """

    def __init__(self, model, cache, min_chunk: int = 512):
        """``min_chunk``: the fewest cache positions per attention split (a tuning knob for
        bench/bench_cuda_decode_step.py; rounded up to whole rounds of the block's 6 tiles of 64, 384 positions)."""
        config = model.config
        self.cos, self.sin = rotary_tables(model, cache)
        self.cache = cache
        self.max_rows = cache.batch_size
        self._impl = _cuda.DecodeStep(named_weights(model), cache.k, cache.v, cache.lengths, self.cos, self.sin,
                                      config.num_attention_heads, config.num_key_value_heads,
                                      float(config.rms_norm_eps), min_chunk)

    @torch.no_grad()
    def step(self, tokens: torch.Tensor, next_tokens: torch.Tensor | None = None) -> torch.Tensor:
        """tokens LongTensor [n] (one per cache row 0..n-1, on the GPU) -> logits [n, vocab]; advances
        cache.lengths[:n].

        ``next_tokens`` (LongTensor [n] on the GPU, may be ``tokens`` itself): receives ``logits.argmax(-1)``,
        picked inside the LM head kernel, which spares a greedy loop the argmax and copy kernels after the step."""
        _check_step_ids(self, tokens, next_tokens)
        if next_tokens is not None and not next_tokens.is_contiguous():  # (tokens are made contiguous if need be)
            raise ValueError("CudaDecodeStep.step: next_tokens must be contiguous: the LM head kernel writes it in "
                             "place")
        return self._impl.step(tokens, next_tokens)


def _check_step_ids(step, tokens, next_tokens):
    """One line naming the argument at fault, where a step's tokens or next_tokens are not LongTensors [n] on the
    cache's device for rows 0..n-1 (1 <= n <= step.max_rows)."""
    device, who = step.cache.k.device, f"{type(step).__name__}.step"
    rows = tokens.shape[0] if tokens.dim() == 1 and 1 <= tokens.shape[0] <= step.max_rows else step.max_rows
    for name, t in (("tokens", tokens), ("next_tokens", next_tokens)):
        if t is not None and (t.shape != (rows,) or t.dtype != torch.long or t.device != device):
            raise ValueError(f"{who}: {name} must be a LongTensor [{rows}] on {device} (1 to {step.max_rows} ids, "
                             f"one per cache row), got {tuple(t.shape)} {t.dtype} on {t.device}")


class CudaBatchDecodeStep:
    """The decode step of a dense model over a batch of rows (a ``DecodeStep``): what ``model.decode_step`` does,
    in 8 kernels a layer where the op path launches 12, and with none of its per-step position work.

    A layer: RMSNorm (fused with the residual add), the qkv projection (cuBLAS), ``attention_decode_qkv`` (QK-Norm +
    RoPE of the new token at position ``lengths[b]``, its K/V written into the cache, attention over the row's
    ``lengths[b] + 1`` positions: csrc/cuda/attention.cu), the output projection, RMSNorm + residual add, gate_up,
    SiLU * up, down. The rotary rows come from the model's own tables (``rotary_tables``) by position inside the
    attention kernel, so a step needs no positions, slots or cos/sin of its own; the lengths advance at its end.
    Every op rounds to the model dtype where the op path does, with the same kernels but the attention, whose
    QK-Norm + RoPE is qk_norm_rope_kernel's arithmetic. No host sync: ``cuda_graphs.GraphedDecodeStep`` captures
    it. The weights are held by reference (in-place updates are seen)."""

    def __init__(self, model, cache):
        config = model.config
        weights = named_weights(model)
        self.cache, self.max_rows = cache, cache.batch_size
        self.cos, self.sin = rotary_tables(model, cache)
        self.heads, self.eps = config.num_attention_heads, float(config.rms_norm_eps)
        self.scale = config.head_dim ** -0.5
        self.embed, self.final_norm, self.head = (weights[name] for name in
                                                  ("model.embed_tokens.weight", "model.norm.weight", "lm_head.weight"))
        names = ("input_layernorm", "self_attn.qkv_proj", "self_attn.q_norm", "self_attn.k_norm", "self_attn.o_proj",
                 "post_attention_layernorm", "mlp.gate_up_proj", "mlp.down_proj")
        self.layers = [[weights[f"model.layers.{layer}.{name}.weight"] for name in names]
                       for layer in range(config.num_hidden_layers)]

    @torch.no_grad()
    def step(self, tokens: torch.Tensor, next_tokens: torch.Tensor | None = None) -> torch.Tensor:
        """tokens LongTensor [n] (cache rows 0..n-1, n <= max_rows) -> logits [n, vocab]; advances cache.lengths[:n].
        ``next_tokens`` (LongTensor [n]), if given, receives ``logits.argmax(-1)``."""
        _check_step_ids(self, tokens, next_tokens)
        n, cache = tokens.shape[0], self.cache
        lengths = cache.lengths[:n]
        x, residual = F.embedding(tokens, self.embed), None
        for layer, (w_in, w_qkv, w_qn, w_kn, w_o, w_post, w_gate_up, w_down) in enumerate(self.layers):
            if residual is None:                                        # layer 0: the stream is the embedding
                residual, h = x, _cuda.add_rms_norm(x, None, w_in, self.eps)[0]
            else:
                h, residual = _cuda.add_rms_norm(x, residual, w_in, self.eps)
            attn = _cuda.attention_decode_qkv(F.linear(h, w_qkv), w_qn, w_kn, self.cos, self.sin, cache.k[layer, :n],
                                              cache.v[layer, :n], lengths, self.heads, self.eps, self.scale)
            h, residual = _cuda.add_rms_norm(F.linear(attn, w_o), residual, w_post, self.eps)
            x = F.linear(_cuda.silu_mul(F.linear(h, w_gate_up)), w_down)
        logits = F.linear(_cuda.add_rms_norm(x, residual, self.final_norm, self.eps)[0], self.head)
        lengths += 1
        if next_tokens is not None:
            next_tokens.copy_(logits.argmax(-1))
        return logits


class GumbelSampler:
    """Draws one token per row of logits [B, V] (fp32, bf16 or fp16) from softmax(logits / temperature) in one
    kernel (csrc/cuda/sampling.cu): the Gumbel-max trick over Philox noise, one pass over the logits in their own
    dtype. Its state (seed, calls so far) is a device tensor that the kernel advances, so a call never waits for
    the host, can be captured in a CUDA graph, and every call (or replay) draws fresh noise. ``seed``: the same
    seed gives the same draws (a stream of its own, not the PyTorch sampler's); None draws one from torch's
    generator of the device, so ``torch.manual_seed`` makes it reproducible too."""

    def __init__(self, temperature: float, seed: int | None, device):
        if not temperature > 0:
            raise ValueError(f"GumbelSampler: temperature must be > 0, got {temperature}")
        self.temperature = float(temperature)
        if seed is None:
            first = torch.randint(0, 2**63 - 1, (1,), device=device)
        else:
            first = torch.tensor([(seed + 2**63) % 2**64 - 2**63], device=device)   # any int, as int64 bits
        self.rng = torch.cat([first, first.new_zeros(2)])            # seed, calls so far, blocks done (kernel's)

    def __call__(self, logits: torch.Tensor) -> torch.Tensor:
        if logits.stride(-1) != 1:
            logits = logits.contiguous()
        return _cuda.gumbel_sample(logits, self.temperature, self.rng)


def gumbel_sampler_available(device) -> bool:
    """Can ``GumbelSampler`` run on ``device``: a CUDA device with the extension built, not switched off by
    ``QWEN3MINI_FUSED_SAMPLER=0`` (for A/B comparisons)."""
    return (_cuda is not None and torch.device(device).type == "cuda"
            and os.environ.get("QWEN3MINI_FUSED_SAMPLER", "1") != "0")


def register():
    """Register the backend for device type "cuda" when both a GPU and the built extension are present."""
    if _cuda is None or not torch.cuda.is_available():
        return
    from . import register_backend
    register_backend("cuda", CudaBackend(), ["cuda"])
