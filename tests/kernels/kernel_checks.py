"""Helpers of the conformance suite: the oracle, output poisoning, random inputs. The tolerance rule
(csrc/README.md, "Tolerances") is ``qwen3mini/ops/tolerance.py``: each op's output is held to the reference op
run on the same inputs widened to float64 (``exact``) and run in the test dtype (``rounded``).
"""
import os
from contextlib import contextmanager

import torch
from hypothesis import HealthCheck, settings

from qwen3mini import ops
from qwen3mini.ops.tolerance import assert_within_tolerance

EXAMPLES = int(os.environ.get("QWEN3MINI_KERNEL_EXAMPLES", "40"))
SETTINGS = settings(max_examples=EXAMPLES, deadline=None, derandomize=EXAMPLES <= 40, print_blob=True,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

DTYPES = [torch.float32, torch.bfloat16, torch.float16]
REFERENCE = ops.get_backend("reference")


COMPILED = {"cpp": "cpu", "cuda": "cuda"}               # compiled backends and the device they serve


def built_cuda_module():
    """``qwen3mini.ops.cuda`` when its extension is built; otherwise the test skips (fails under
    QWEN3MINI_REQUIRE_EXT=1, as in CI on a GPU machine)."""
    import pytest
    from qwen3mini.ops import cuda
    if cuda._cuda is None:
        if os.environ.get("QWEN3MINI_REQUIRE_EXT") == "1":
            pytest.fail(f"qwen3mini._cuda missing: {cuda._IMPORT_ERROR}")
        pytest.skip(f"qwen3mini._cuda not built: {cuda._IMPORT_ERROR}")
    return cuda


def backend_device(name: str) -> str:
    """The device type whose tensors a backend is tested on (the reference: CPU)."""
    devices = ops.backend_device_types(name)
    return COMPILED.get(name) or (devices[0] if devices else "cpu")


# ---------------------------------------------------------------- poisoning
def _poison(t):
    if isinstance(t, torch.Tensor) and (t.is_floating_point()):
        t.fill_(float("nan"))
    return t


@contextmanager
def poisoned_allocations():
    """Every ``torch.empty*`` allocation inside the block comes back filled with NaN.

    Backends allocate their outputs with ``torch.empty``/``empty_like`` and let the kernel write them
    (csrc/README.md); an element the kernel forgets to write then stays NaN and fails the tolerance check."""
    saved = torch.empty, torch.empty_like, torch.Tensor.new_empty
    torch.empty = lambda *a, **k: _poison(saved[0](*a, **k))
    torch.empty_like = lambda *a, **k: _poison(saved[1](*a, **k))
    torch.Tensor.new_empty = lambda self, *a, **k: _poison(saved[2](self, *a, **k))
    try:
        yield
    finally:
        torch.empty, torch.empty_like, torch.Tensor.new_empty = saved


def run_backend(backend: str, op: str, *args):
    """Call ``op`` of ``backend`` with NaN-poisoned output allocations; results moved to the CPU."""
    with poisoned_allocations():
        result = getattr(ops.get_backend(backend), op)(*args)
    return tuple(r.cpu() for r in result) if isinstance(result, tuple) else result.cpu()


# ---------------------------------------------------------------- oracle and tolerance
def _widen(a):
    return a.cpu().double() if isinstance(a, torch.Tensor) and a.is_floating_point() else (
        a.cpu() if isinstance(a, torch.Tensor) else a)


def _cpu(a):
    return a.cpu() if isinstance(a, torch.Tensor) else a


def check_op(backend: str, op: str, *args):
    """Run ``op`` on ``backend`` and check every output against the reference by the tolerance rule."""
    got = run_backend(backend, op, *args)
    exact = getattr(REFERENCE, op)(*map(_widen, args))
    rounded = getattr(REFERENCE, op)(*map(_cpu, args))
    if not isinstance(got, tuple):
        got, exact, rounded = (got,), (exact,), (rounded,)
    dtype = next(a.dtype for a in args if isinstance(a, torch.Tensor) and a.is_floating_point())
    for i, (g, e, r) in enumerate(zip(got, exact, rounded)):
        assert g.shape == e.shape, f"{op} output {i}: shape {tuple(g.shape)}, expected {tuple(e.shape)}"
        assert g.dtype == dtype, f"{op} output {i}: dtype {g.dtype}, expected {dtype}"
        assert_within_tolerance(g, e, r, f"{backend}.{op} output {i} ({dtype})")


# ---------------------------------------------------------------- inputs
def randn(generator, *shape, dtype, device, scale=1.0):
    return (torch.randn(*shape, generator=generator) * scale).to(dtype=dtype, device=device)
