"""The MoE experts' training path: grouped GEMMs forward and backward (the reference dispatch's function).

The reference ``moe_experts`` loops over the experts: per expert a ``torch.where``, which waits on the host, and
two small matrix products, so a training step of an MoE spends its time launching and waiting. Here every
(token, slot) assignment is sorted by expert once, each expert's rows padded to a multiple of ``ALIGN`` (the
alignment the grouped kernel wants), and the two projections of all experts run as two grouped GEMMs
(``torch._grouped_mm``: one kernel per projection for every expert, differentiable), then each token's k rows
are weighted and summed:

    rows[row(t, j)] = x[t]                          for each token t and slot j    [M, H]   (M = N·k plus padding)
    gate_up   = grouped_mm(rows, W_gate_up[e]ᵀ per group)                          [M, 2I]
    hidden    = silu(gate) · up                                                     [M, I]
    out[t]    = Σ_j weight[t, j] · grouped_mm(hidden, W_down[e]ᵀ per group)[row(t, j)]   [N, H]

The backward pass is autograd's through the same ops, so it is grouped too. The reference rounds each expert's
output to the model dtype before weighting and accumulates in ascending expert order; this path rounds the
same way and sums a token's k outputs in slot order, so the two agree within the conformance tolerance, not bit for bit
(tests/model/test_grouped_moe.py). ``grouped_mm`` uses ``torch._grouped_mm`` on a GPU that has it and a loop of
per-group products elsewhere (the CPU test's stand-in: same arithmetic, one product per expert).
"""
import torch
import torch.nn.functional as F

ALIGN = 16      # rows per expert group rounded up to this (the grouped kernel's alignment of bf16 rows)


def grouped_mm_available(device: torch.device) -> bool:
    """Whether ``torch._grouped_mm`` serves ``device`` (a CUDA GPU of compute capability 9.0 or newer)."""
    return (device.type == "cuda" and hasattr(torch, "_grouped_mm")
            and torch.cuda.get_device_capability(device)[0] >= 9)


def computes_in(x: torch.Tensor) -> torch.dtype:
    """The dtype the experts' products run in: autocast's on x's device when it is on (the reference's F.linear
    computes in it), else x's."""
    kind = x.device.type
    return torch.get_autocast_dtype(kind) if torch.is_autocast_enabled(kind) else x.dtype


def serves(x: torch.Tensor) -> bool:
    """Whether this path trains the experts on ``x``: a GPU with ``torch._grouped_mm``, whose grouped GEMM takes
    bf16 operands only (a float32 step keeps the reference dispatch)."""
    return grouped_mm_available(x.device) and computes_in(x) == torch.bfloat16


def grouped_mm(rows: torch.Tensor, weights: torch.Tensor, ends: torch.Tensor) -> torch.Tensor:
    """rows [M, K] split into groups at ``ends`` (int32 [G], the cumulative row counts), group g times
    weights[g] [K, N] -> [M, N]; the rows past ``ends[-1]`` are not computed (nothing may read them)."""
    if grouped_mm_available(rows.device):
        return torch._grouped_mm(rows, weights, offs=ends)
    out, start = rows.new_zeros(rows.shape[0], weights.shape[-1]), 0
    for g, end in enumerate(ends.tolist()):
        out[start:end] = rows[start:end] @ weights[g]
        start = end
    return out


def moe_experts(x, topk_ids, topk_weights, w_gate_up, w_down) -> torch.Tensor:
    """``ops.moe_experts``'s contract (reference.py), computed with two grouped GEMMs."""
    experts, inter, top_k = w_gate_up.shape[0], w_down.shape[-1], topk_ids.shape[1]
    flat = topk_ids.flatten()                       # assignment j = (token j // k, slot j % k)
    order = torch.argsort(flat, stable=True)
    counts = torch.zeros(experts, dtype=flat.dtype, device=flat.device).index_add_(0, flat, torch.ones_like(flat))
    padded = (counts + ALIGN - 1) // ALIGN * ALIGN
    ends = padded.cumsum(0)
    # the row of each assignment: its expert's group start plus its rank inside the expert (in token order)
    expert = flat[order]
    rank_in_expert = torch.arange(flat.numel(), device=x.device) - (counts.cumsum(0) - counts)[expert]
    row = torch.empty_like(flat).index_copy_(0, order, (ends - padded)[expert] + rank_in_expert)
    dtype = computes_in(x)      # (under autocast the grouped GEMM's operands are cast by hand)
    # Every shape is known before the routing is (the padded total is at most this bound; the grouped GEMM leaves
    # the rows past the last group alone and nothing reads them), so nothing waits on the host and the step
    # compiles into one graph.
    bound = flat.numel() + experts * (ALIGN - 1)
    # Data moves in assignment order, where every row is one token's copy: the rows are scattered in (index_copy,
    # whose gradient is a gather) and gathered out (index_select); a token's k outputs are then a sum over a
    # dimension. No gradient adds into a row that another assignment shares, so the backward has no sorting
    # index_put and no contended atomic add (bench_moe_training.py --explain shows the kernels).
    # (copied before the cast, so that the gradient's sum over a token's copies is taken in x's dtype)
    copies = x.repeat_interleave(top_k, dim=0).to(dtype)
    rows = x.new_zeros(bound, x.shape[1], dtype=dtype).index_copy(0, row, copies)
    ends32 = ends.to(torch.int32)
    gate_up = grouped_mm(rows, w_gate_up.transpose(1, 2).to(dtype), ends32)
    hidden = F.silu(gate_up[:, :inter]) * gate_up[:, inter:]
    y = grouped_mm(hidden, w_down.transpose(1, 2).to(dtype), ends32).index_select(0, row)
    # weighted in the product's promoted dtype and then cast, as the reference does (bf16 weights: a bf16 product)
    return (y.view(-1, top_k, x.shape[1]) * topk_weights[..., None]).to(x.dtype).sum(1)
