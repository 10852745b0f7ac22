"""Helpers of the conformance suite: the oracle, the tolerance rule, output poisoning, random inputs.

The tolerance rule (csrc/README.md, "Tolerances"): for an output ``out`` of a backend in dtype T,

    |out - ref64|  <=  2 * max|ref_T - ref64|  +  TOL[T] * max(max|ref64|, 1)        (every element)

where ref64 is the reference op run on the same inputs widened to float64 (the exact answer for those inputs,
up to the reference's own fp32 softmax) and ref_T is the reference op run in T (the rounding the contract
allows). A kernel may round differently from the reference, but not be more than twice as far from the truth,
plus a floor of about one unit in the last place of the largest output. The floor never goes below TOL[T]
absolute: the test inputs are scaled so that every op's outputs are of order 1, and an output that is small
only through cancellation (a dot product of large terms) carries the rounding error of its terms, not of
itself. NaN or inf where ref64 is finite always fails.
"""
import os
from contextlib import contextmanager

import torch
from hypothesis import HealthCheck, settings

from qwen3mini import ops

EXAMPLES = int(os.environ.get("QWEN3MINI_KERNEL_EXAMPLES", "40"))
SETTINGS = settings(max_examples=EXAMPLES, deadline=None, derandomize=EXAMPLES <= 40, print_blob=True,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

TOL = {torch.float32: 1e-5, torch.bfloat16: 2 ** -7, torch.float16: 2 ** -10}
DTYPES = [torch.float32, torch.bfloat16, torch.float16]
REFERENCE = ops.get_backend("reference")


COMPILED = {"cpp": "cpu", "cuda": "cuda"}               # compiled backends and the device they serve


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


def assert_within_tolerance(got, exact, rounded, what):
    exact = exact.double()
    allowed_ref = (rounded.double() - exact).abs().max().item() if exact.numel() else 0.0
    scale = max(exact.abs().max().item() if exact.numel() else 0.0, 1.0)
    bound = 2 * allowed_ref + TOL[got.dtype] * scale
    error = (got.double() - exact).abs()
    bad = ~(error <= bound)                                 # NaN counts as bad
    if bad.any():
        index = tuple(bad.nonzero()[0].tolist())
        raise AssertionError(f"{what}: {int(bad.sum())}/{got.numel()} elements off; first at {index}: "
                             f"got {got[index].item()!r}, exact {exact[index].item()!r}, "
                             f"bound {bound:.3g} (reference's own error {allowed_ref:.3g}, scale {scale:.3g})")


# ---------------------------------------------------------------- inputs
def randn(generator, *shape, dtype, device, scale=1.0):
    return (torch.randn(*shape, generator=generator) * scale).to(dtype=dtype, device=device)
