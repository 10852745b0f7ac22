"""The C++ CPU backend: the op contract (``reference.py``) on the kernels of ``csrc/cpu`` (``qwen3mini._C``).

Importing this module raises ImportError when the extension was not built; ``qwen3mini.ops`` then prints a
one-line notice and keeps the reference backend. ``register()`` makes it the default for CPU tensors.

Layout of the work: this file allocates every output with ``torch.empty`` and the C++ op fills it (the
conformance suite poisons those allocations with NaN, so an element a kernel forgets is caught), and it keeps
the cases the kernels do not serve on the reference or on torch:
  * fp16 (and any other dtype) runs the reference ops;
  * ``linear`` and ``quantized_linear`` with many rows (prefill) run torch's GEMM: in bf16 itself where the
    CPU has native bf16 dot products (AVX512-BF16 or AMX: oneDNN's bf16 GEMM, several times faster than fp32),
    else in fp32 on the weights widened a slab at a time (without native bf16, torch's bf16 path is several
    times slower than that); the matrix-vector kernel of ``_C`` is only the better choice while the weights
    dominate the traffic.
The kernels are compiled once per instruction set and the best one the CPU executes is used;
``QWEN3MINI_CPU_ISA=<name>`` (``avx512``, ``avx2``, ``baseline``: ``qwen3mini._C.isas()`` lists what this CPU
runs) forces one, e.g. to test the AVX2 and portable kernels on one machine as CI machines of either kind would
run them.
"""
import os

import torch

from .decode_step import named_weights, rotary_tables
from .reference import ReferenceBackend

try:
    from .. import _C
except ImportError as error:  # the dispatcher turns this into its one-line notice
    raise ImportError(f"qwen3mini._C is not built ({error}); pip install --no-build-isolation -e .") from error

_KERNEL_DTYPES = (torch.float32, torch.bfloat16)
# Rows of x up to which the C++ kernel is at least as fast as widening W to fp32 + torch's GEMM (measured on
# Zen 3, one thread, W [192, 1024] bf16: bench/RESULTS.md, "cpu kernels").
_LINEAR_MAX_ROWS = 32
_WIDEN_SLAB = 4096                                  # weight rows widened to fp32 at a time (bounds the scratch)


def _native_bf16_gemm() -> bool:
    """Whether this CPU has native bf16 dot products (Linux's flags avx512_bf16 or amx_bf16), which torch's
    bf16 GEMM uses. A forced ``QWEN3MINI_CPU_ISA`` other than avx512 (which needs them) acts as the older machine
    would: no."""
    if (os.environ.get("QWEN3MINI_CPU_ISA") or "avx512") != "avx512":
        return False
    try:
        with open("/proc/cpuinfo") as f:
            flags = next((line.split(":", 1)[1].split() for line in f if line.startswith("flags")), [])
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


_BF16_GEMM = _native_bf16_gemm()


def _kernel_ok(*tensors) -> bool:
    """True when the C++ kernels serve these tensors: CPU, one kernel dtype shared by all.

    Called on every op of every decode step (a few hundred a token): a plain loop over cheap attributes
    (``is_cpu``, not ``device.type``, which builds a device object) keeps it cheap."""
    dtype = tensors[0].dtype
    if dtype not in _KERNEL_DTYPES:
        return False
    for t in tensors:
        if t.dtype != dtype or not t.is_cpu:
            return False
    return True


class CppBackend:
    """Forward-only CPU kernels: AVX-512 (with BF16) or AVX2+FMA where the CPU has them, a portable build
    otherwise, OpenMP threads."""

    name = "cpp"

    def __init__(self):
        self._reference = ReferenceBackend()

    # ---------------------------------------------------------------- normalisation
    def rms_norm(self, x, weight, eps):
        if not _kernel_ok(x, weight):
            return self._reference.rms_norm(x, weight, eps)
        x = x.contiguous()
        out = torch.empty_like(x)
        _C.rms_norm(x, weight.contiguous(), float(eps), out)
        return out

    def add_rms_norm(self, x, residual, weight, eps):
        if not _kernel_ok(x, residual, weight):
            return self._reference.add_rms_norm(x, residual, weight, eps)
        x, residual = x.contiguous(), residual.contiguous()
        out, summed = torch.empty_like(x), torch.empty_like(x)
        _C.add_rms_norm(x, residual, weight.contiguous(), float(eps), out, summed)
        return out, summed

    # ---------------------------------------------------------------- QK-Norm and rotary embedding
    def qk_norm_rope(self, q, k, q_weight, k_weight, eps, cos, sin):
        if not _kernel_ok(q, k, q_weight, k_weight, cos, sin):
            return self._reference.qk_norm_rope(q, k, q_weight, k_weight, eps, cos, sin)
        q = q if q.dim() != 3 or q.stride(-1) == 1 else q.contiguous()        # heads may stay strided
        k = k if k.dim() != 3 or k.stride(-1) == 1 else k.contiguous()
        q_out, k_out = torch.empty(q.shape, dtype=q.dtype), torch.empty(k.shape, dtype=k.dtype)
        _C.qk_norm_rope(q, k, q_weight.contiguous(), k_weight.contiguous(), eps, cos.contiguous(), sin.contiguous(),
                        q_out, k_out)
        return q_out, k_out

    # ---------------------------------------------------------------- attention
    def attention_prefill(self, q, k, v, cu_seqlens_q, cu_seqlens_k, scale):
        if not _kernel_ok(q, k, v):
            return self._reference.attention_prefill(q, k, v, cu_seqlens_q, cu_seqlens_k, scale)
        q, k, v = (t if t.dim() != 3 or t.stride(-1) == 1 else t.contiguous() for t in (q, k, v))
        out = torch.empty(q.shape, dtype=q.dtype)
        _C.attention_prefill(q, k, v, cu_seqlens_q, cu_seqlens_k, float(scale), out)
        return out

    def attention_decode(self, q, k_cache, v_cache, cache_seqlens, scale):
        if not _kernel_ok(q, k_cache, v_cache):
            return self._reference.attention_decode(q, k_cache, v_cache, cache_seqlens, scale)
        q = q if q.dim() != 3 or q.stride(-1) == 1 else q.contiguous()
        out = torch.empty(q.shape, dtype=q.dtype)
        _C.attention_decode(q, k_cache, v_cache, cache_seqlens, float(scale), out)
        return out

    # ---------------------------------------------------------------- feed-forward
    def linear(self, x, weight):
        if not _kernel_ok(x, weight):
            return self._reference.linear(x, weight)
        if x.dim() == 2 and x.shape[0] <= _LINEAR_MAX_ROWS and x.is_contiguous() and weight.is_contiguous():
            out = torch.empty(x.shape[0], weight.shape[0], dtype=x.dtype)    # decode: the short path
            _C.linear(x, weight, out)
            return out
        weight = weight.contiguous()
        x2 = x.reshape(-1, x.shape[-1]).contiguous()
        out = torch.empty(x2.shape[0], weight.shape[0], dtype=x.dtype)
        if x2.shape[0] <= _LINEAR_MAX_ROWS:
            _C.linear(x2, weight, out)
        elif x.dtype == torch.float32 or _BF16_GEMM:
            torch.mm(x2, weight.t(), out=out)
        else:
            x32 = x2.float()
            for n0 in range(0, weight.shape[0], _WIDEN_SLAB):
                out[:, n0:n0 + _WIDEN_SLAB] = x32 @ weight[n0:n0 + _WIDEN_SLAB].float().t()
        return out.view(*x.shape[:-1], weight.shape[0])

    def quantized_linear(self, x, qweight, scale):
        if not (_kernel_ok(x) and qweight.dtype == torch.int8 and scale.dtype == torch.float32
                and qweight.is_cpu and scale.is_cpu):
            return self._reference.quantized_linear(x, qweight, scale)
        qweight, scale = qweight.contiguous(), scale.contiguous()
        x2 = x.reshape(-1, x.shape[-1]).contiguous()
        out = torch.empty(x2.shape[0], qweight.shape[0], dtype=x.dtype)
        if x2.shape[0] <= _LINEAR_MAX_ROWS:
            _C.quantized_linear(x2, qweight, scale, out)
        else:       # prefill: torch's GEMM on int8 rows widened a slab at a time (exact: |q| <= 127), then scaled
            gemm_dtype = x.dtype if x.dtype == torch.float32 or _BF16_GEMM else torch.float32
            x_gemm = x2.to(gemm_dtype)
            for n0 in range(0, qweight.shape[0], _WIDEN_SLAB):
                rows = slice(n0, n0 + _WIDEN_SLAB)
                out[:, rows] = (x_gemm @ qweight[rows].to(gemm_dtype).t()) * scale[rows]
        return out.view(*x.shape[:-1], qweight.shape[0])

    def silu_mul(self, gate_up):
        if not _kernel_ok(gate_up):
            return self._reference.silu_mul(gate_up)
        if gate_up.dim() == 2 and gate_up.stride(-1) == 1:                  # decode and prefill: the short path
            out = torch.empty(gate_up.shape[0], gate_up.shape[1] // 2, dtype=gate_up.dtype)
            _C.silu_mul(gate_up, out)
            return out
        rows = gate_up.reshape(-1, gate_up.shape[-1])       # a view when only the last dim was sliced
        rows = rows if rows.stride(-1) == 1 else rows.contiguous()
        out = torch.empty(*gate_up.shape[:-1], gate_up.shape[-1] // 2, dtype=gate_up.dtype)
        _C.silu_mul(rows, out.view(rows.shape[0], -1))
        return out

    def moe_route(self, logits, top_k, normalize):
        if not _kernel_ok(logits):
            return self._reference.moe_route(logits, top_k, normalize)
        logits = logits.contiguous()
        ids = torch.empty(logits.shape[0], top_k, dtype=torch.int64)
        weights = torch.empty(logits.shape[0], top_k, dtype=logits.dtype)
        _C.moe_route(logits, int(top_k), bool(normalize), ids, weights)
        return ids, weights

    def moe_experts(self, x, topk_ids, topk_weights, w_gate_up, w_down):
        if not _kernel_ok(x, topk_weights, w_gate_up, w_down):
            return self._reference.moe_experts(x, topk_ids, topk_weights, w_gate_up, w_down)
        x = x.contiguous()
        out = torch.empty_like(x)
        _C.moe_experts(x, topk_ids.long().contiguous(), topk_weights.contiguous(), w_gate_up.contiguous(),
                       w_down.contiguous(), out)
        return out

    # ---------------------------------------------------------------- the whole decode step
    def decode_step(self, model, cache):
        """``CppDecodeStep`` for a model and cache in fp32 or bf16 on the CPU (``ops.decode_step``); None otherwise."""
        if not (_kernel_ok(cache.k) and model.dtype == cache.k.dtype
                and model.config.head_dim <= 512):
            return None
        return CppDecodeStep(model, cache)


class CppDecodeStep:
    """``model.decode_step`` as one call into ``csrc/cpu/decode.cpp`` (a ``DecodeStep``): the same kernels in the
    same order, without the Python call of every op in between (bench/RESULTS.md, "cpu kernels").

    It holds the model's weights (``named_weights``) and the cache by reference, not copies. ``max_rows`` is the
    cache's row count.
    """

    def __init__(self, model, cache):
        cfg = model.config
        cos, sin = rotary_tables(model, cache)
        self._step = _C.DecodeStep(
            named_weights(model), cache.k, cache.v, cache.lengths, cos, sin, cfg.num_attention_heads,
            cfg.num_key_value_heads, cfg.rms_norm_eps, cfg.head_dim ** -0.5,
            cfg.num_experts_per_tok if cfg.is_moe else 0, bool(cfg.norm_topk_prob))
        self.max_rows = self._step.max_rows

    def step(self, tokens: torch.Tensor) -> torch.Tensor:
        """tokens LongTensor [n] for cache rows 0..n-1 -> logits [n, vocab] (overwritten by the next step);
        advances cache.lengths[:n]."""
        return self._step.step(tokens.contiguous())


def register():
    """Make the C++ kernels the default backend for CPU tensors, on the ISA ``QWEN3MINI_CPU_ISA`` names if set."""
    from . import register_backend
    isa = os.environ.get("QWEN3MINI_CPU_ISA")
    if isa:
        if isa not in _C.isas():
            raise ValueError(f"QWEN3MINI_CPU_ISA={isa}: this CPU runs the kernels of {', '.join(_C.isas())}")
        _C.set_isa(isa)
    register_backend("cpp", CppBackend(), ["cpu"])
