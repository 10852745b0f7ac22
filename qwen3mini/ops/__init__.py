"""The op layer: the few operations whose speed matters, behind one small contract.

The model calls ``ops.rms_norm``, ``ops.attention_prefill`` and friends; this module picks the backend that
runs them, and offers the backend's whole decode step where it has one (``ops.decode_step``). The contract
(shapes, dtypes, numerics) is written once, in ``reference.py``, its tolerance rule in ``tolerance.py``; the
porting guide is ``csrc/README.md``.

Backend choice, per call:
  * ``QWEN3MINI_BACKEND=<name>`` (environment) or ``ops.use_backend(name)`` forces one backend everywhere
    (the environment may name a backend that registers itself after this module is imported, e.g. a port
    loaded as a pytest plugin: it takes effect when registered, and an op that runs before then is an error);
  * otherwise the fastest backend registered for the tensor's device type that imported cleanly;
  * anything that needs gradients (training) runs the reference ops (kernels are forward-only), except the
    MoE experts in bf16 on a GPU with grouped GEMMs: they train through ``grouped_moe.py`` (unless a backend is
    forced)."""
import os
import sys
from contextlib import contextmanager

import torch

from . import grouped_moe
from .decode_step import DecodeStep
from .reference import ReferenceBackend

_REFERENCE = ReferenceBackend()
_BACKENDS = {"reference": _REFERENCE}           # name -> backend object
_PREFERRED = {}                                 # device type -> backend names, best first
_forced = None
_pending = None                                 # QWEN3MINI_BACKEND naming a backend not registered yet


def register_backend(name: str, backend, device_types) -> None:
    """Make ``backend`` available as ``name`` and prefer it on ``device_types`` (latest registration wins)."""
    global _pending
    _BACKENDS[name] = backend
    for device_type in device_types:
        _PREFERRED.setdefault(device_type, []).insert(0, name)
    if name == _pending:
        _pending = None
        use_backend(name)


def available_backends() -> list:
    return list(_BACKENDS)


def backend_device_types(name: str) -> list:
    """Device types ``name`` was registered for (empty for the reference, which runs everywhere)."""
    return [device_type for device_type, names in _PREFERRED.items() if name in names]


def get_backend(name: str):
    if name not in _BACKENDS:
        raise ValueError(f"unknown op backend {name!r}; available: {available_backends()}")
    return _BACKENDS[name]


def use_backend(name):
    """Force backend ``name`` for every op (``None`` returns to automatic choice)."""
    global _forced
    _forced = None if name is None else get_backend(name)


@contextmanager
def backend(name):
    """``with ops.backend("cpp"): ...`` runs the block on one backend."""
    global _forced
    previous = _forced
    use_backend(name)
    try:
        yield
    finally:
        _forced = previous


def _needs_grad(*tensors) -> bool:
    return torch.is_grad_enabled() and any(t.requires_grad for t in tensors if t is not None)


def _select(tensor, *more):
    if _needs_grad(tensor, *more):
        return _REFERENCE
    if _pending is not None:
        raise ValueError(f"QWEN3MINI_BACKEND={_pending} names no registered op backend; available: "
                         f"{available_backends()}")
    if _forced is not None:
        return _forced
    for name in _PREFERRED.get(tensor.device.type, ()):
        return _BACKENDS[name]
    return _REFERENCE


def backend_name(tensor) -> str:
    """The registered name of the backend that runs ops on ``tensor`` (outside autograd)."""
    chosen = _select(tensor)
    return next(name for name, backend in _BACKENDS.items() if backend is chosen)


def rms_norm(x, weight, eps):
    return _select(x, weight).rms_norm(x, weight, eps)


def add_rms_norm(x, residual, weight, eps):
    return _select(x, residual, weight).add_rms_norm(x, residual, weight, eps)


def qk_norm_rope(q, k, q_weight, k_weight, eps, cos, sin):
    return _select(q, k, q_weight, k_weight).qk_norm_rope(q, k, q_weight, k_weight, eps, cos, sin)


def attention_prefill(q, k, v, cu_seqlens_q, cu_seqlens_k, scale):
    return _select(q, k, v).attention_prefill(q, k, v, cu_seqlens_q, cu_seqlens_k, scale)


def attention_decode(q, k_cache, v_cache, cache_seqlens, scale):
    return _select(q, k_cache, v_cache).attention_decode(q, k_cache, v_cache, cache_seqlens, scale)


def linear(x, weight):
    return _select(x, weight).linear(x, weight)


def quantized_linear(x, qweight, scale):
    """``linear`` with int8 weights and per-output-feature scales. Optional for a backend: one without it runs
    the reference."""
    chosen = _select(x, scale)
    return getattr(chosen, "quantized_linear", _REFERENCE.quantized_linear)(x, qweight, scale)


def silu_mul(gate_up):
    return _select(gate_up).silu_mul(gate_up)


def moe_route(logits, top_k, normalize):
    return _select(logits).moe_route(logits, top_k, normalize)


def moe_experts(x, topk_ids, topk_weights, w_gate_up, w_down):
    tensors = (x, topk_weights, w_gate_up, w_down)
    if _needs_grad(*tensors) and _forced is None and grouped_moe.serves(x):
        return grouped_moe.moe_experts(x, topk_ids, topk_weights, w_gate_up, w_down)
    return _select(*tensors).moe_experts(x, topk_ids, topk_weights, w_gate_up, w_down)


def decode_step(model, cache) -> DecodeStep | None:
    """The backend's own whole decode step for ``model`` over ``cache`` (a ``DecodeStep``), or None.

    Beside the nine ops, a backend may offer ``decode_step(model, cache)``: an object whose ``step(tokens)`` does
    exactly what ``model.decode_step(tokens, cache)`` does, in compiled code instead of one Python call per op
    (``decode_step.py`` defines the interface and hands every backend the model's weights by name). It is
    optional (a port needs only the nine ops), it may return None for a model it does not serve, and
    tests/model/test_decoders.py holds it to the op path's logits.
    """
    make = getattr(_select(cache.k), "decode_step", None)
    return None if make is None else make(model, cache)


def _register_builtin_backends():
    """Import the compiled backends if they were built; say so in one line if they were not.

    A backend module raises ImportError only when its extension should exist and does not (``cuda`` on a
    machine without CUDA imports cleanly and registers nothing)."""
    missing = []
    for module_name in ("cpp", "cuda"):
        try:
            module = __import__(f"{__name__}.{module_name}", fromlist=["register"])
        except ImportError as error:
            missing.append(f"{module_name} ({error})")
            continue
        module.register()
    global _pending
    wanted = os.environ.get("QWEN3MINI_BACKEND")
    if missing:
        print(f"qwen3mini.ops: compiled backends unavailable: {'; '.join(missing)}", file=sys.stderr)
    if wanted in _BACKENDS:
        use_backend(wanted)
    elif wanted:
        _pending = wanted


_register_builtin_backends()
