"""The op contract's tolerance rule (csrc/README.md, "Tolerances"): how far from the exact answer a result may be.

A result ``got`` in dtype T is compared with ``exact``, the same computation on the same inputs in float64, and
with ``rounded``, the reference computation in T (the roundings the contract prescribes, summed in the
reference's order). Element by element:

    |got - exact|  <=  SLACK * max|rounded - exact|  +  TOL[T] * max(max|exact|, 1)

The contract fixes where a value is rounded to T but lets a kernel sum in any order (in fp32) and round
differently in between, so the reference's own distance from the exact answer is the yardstick: a result may
be at most SLACK times as far, plus a floor. That adapts by itself to the dtype, to the length of each
reduction and to the depth of a chain of ops, on any CPU or GPU, with no constant tuned to a machine. The floor
is about one unit in the last place of the largest output for bf16 (8 significant bits: 2^-7 relative is one
ulp at worst) and fp16 (2^-10); for fp32 it is 1e-5, room for an fp32 sum taken in another order, whose error
grows with the number of terms (up to about one ulp of the largest partial sum per term). It is absolute below
1: inputs of order 1 give outputs of order 1, and an output small only by cancellation carries the rounding
error of its terms, not of itself. NaN or inf where the exact answer is finite never passes.

The same rule holds a single op (the conformance suite, tests/kernels) and a whole model (a cached decode against
the full forward, a backend's decode step against the op path: ``exact`` is the model run in float64).
"""
import torch

TOL = {torch.float32: 1e-5, torch.bfloat16: 2 ** -7, torch.float16: 2 ** -10}
SLACK = 2


def allowed_error(reference_error: float, scale: float, dtype: torch.dtype) -> float:
    """The rule's bound: SLACK * reference_error + TOL[dtype] * max(scale, 1)."""
    return SLACK * reference_error + TOL[dtype] * max(scale, 1.0)


def assert_within_tolerance(got: torch.Tensor, exact: torch.Tensor, rounded: torch.Tensor, what: str):
    """Every element of ``got`` within the rule of ``exact`` (float64) given the reference result ``rounded``."""
    exact = exact.detach().cpu().double()
    got, rounded = got.detach().cpu(), rounded.detach().cpu()
    if got.shape != exact.shape or rounded.shape != exact.shape:
        raise AssertionError(f"{what}: shapes {tuple(got.shape)} (got), {tuple(rounded.shape)} (reference), "
                             f"{tuple(exact.shape)} (exact) differ")
    reference_error = (rounded.double() - exact).abs().max().item() if exact.numel() else 0.0
    scale = exact.abs().max().item() if exact.numel() else 0.0
    bound = allowed_error(reference_error, scale, got.dtype)
    error = (got.double() - exact).abs()
    bad = ~(error <= bound)                                 # NaN counts as bad
    if bad.any():
        index = tuple(bad.nonzero()[0].tolist())
        raise AssertionError(f"{what}: {int(bad.sum())}/{got.numel()} elements off; first at {index}: "
                             f"got {got[index].item()!r}, exact {exact[index].item()!r}, bound {bound:.3g} "
                             f"(reference's own error {reference_error:.3g}, scale {scale:.3g})")


def row_errors(t: torch.Tensor, exact: torch.Tensor) -> torch.Tensor:
    """Each row's relative L2 error over the last dim (e.g. per token, of its logit vector), in float64."""
    exact = exact.detach().double().reshape(-1, exact.shape[-1])
    difference = t.detach().double().reshape(exact.shape) - exact
    return (difference.norm(dim=-1) / exact.norm(dim=-1)).cpu()


def assert_rows_within_tolerance(got, exact, rounded, what: str, quantiles=(1.0,)):
    """The rule on the rows' relative L2 errors (scale 1), at each quantile over the rows: the q-quantile of
    ``got``'s row errors at most SLACK times the reference's plus TOL. For whole-model logits, where two valid
    computations may take different branches on a few rows (a near-tied MoE routing flips with the last bit),
    quantiles below 1 hold the typical row to the rule without holding every row."""
    ours, reference = row_errors(got, exact), row_errors(rounded, exact)
    for q in quantiles:
        mine, theirs = ours.quantile(q).item(), reference.quantile(q).item()
        bound = allowed_error(theirs, 1.0, got.dtype)
        if not mine <= bound:
            raise AssertionError(f"{what}: the {q:.0%} quantile of the rows' relative errors is {mine:.3g}, above "
                                 f"{bound:.3g} (the reference's {theirs:.3g}); per row: {ours.tolist()}")
