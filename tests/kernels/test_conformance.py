"""The op contract (qwen3mini/ops/reference.py, csrc/README.md) checked for every backend, on random shapes.

Each test draws shapes with hypothesis and values from a seeded torch generator, runs the backend with
NaN-poisoned output allocations, and compares with the reference in float64 by the rule of kernel_checks.py.
Inputs a kernel must not read (cache slots past a row's length, weights of experts nobody chose) are NaN too.
"""
import os

import pytest
import torch
from hypothesis import given, strategies as st

from qwen3mini import ops

from kernel_checks import (COMPILED, DTYPES, SETTINGS, assert_within_tolerance, backend_device, check_op,
                           poisoned_allocations, randn, run_backend)

dtypes = st.sampled_from(DTYPES)
seeds = st.integers(0, 2 ** 31 - 1)
head_dims = st.sampled_from([64, 128, 20])              # the contract's 64 and 128, plus a vector-tail size
hidden_sizes = st.one_of(st.integers(1, 160), st.sampled_from([256, 1024]))
gqa = st.tuples(st.integers(1, 3), st.sampled_from([1, 2, 3, 4, 8]))   # (KV heads, query heads per KV head)
gqa_heads = st.one_of(gqa, st.just((8, 2)), st.just((4, 16)))          # + Qwen3-0.6B and -235B's head counts


def setup(backend, seed):
    return torch.Generator().manual_seed(seed), backend_device(backend)


def test_required_extensions_built():
    """CI builds the extensions; a silent fallback to the reference would make the whole suite vacuous."""
    if os.environ.get("QWEN3MINI_REQUIRE_EXT") != "1":
        pytest.skip("QWEN3MINI_REQUIRE_EXT is not set")
    wanted = [name for name, device in COMPILED.items() if device == "cpu" or torch.cuda.is_available()]
    missing = [name for name in wanted if name not in ops.available_backends()]
    assert not missing, f"compiled backends missing: {missing}"


# ---------------------------------------------------------------- normalisation
@SETTINGS
@given(dtype=dtypes, lead=st.lists(st.integers(1, 5), min_size=1, max_size=3), hidden=hidden_sizes,
       eps=st.sampled_from([1e-6, 1e-5]), seed=seeds)
def test_rms_norm(backend, dtype, lead, hidden, eps, seed):
    g, dev = setup(backend, seed)
    x = randn(g, *lead, hidden, dtype=dtype, device=dev, scale=3.0)
    w = randn(g, hidden, dtype=dtype, device=dev, scale=0.5) + 1
    check_op(backend, "rms_norm", x, w, eps)


@SETTINGS
@given(dtype=dtypes, lead=st.lists(st.integers(1, 5), min_size=1, max_size=3), hidden=hidden_sizes, seed=seeds)
def test_add_rms_norm(backend, dtype, lead, hidden, seed):
    g, dev = setup(backend, seed)
    x = randn(g, *lead, hidden, dtype=dtype, device=dev)
    residual = randn(g, *lead, hidden, dtype=dtype, device=dev, scale=4.0)
    w = randn(g, hidden, dtype=dtype, device=dev, scale=0.5) + 1
    check_op(backend, "add_rms_norm", x, residual, w, 1e-6)


# ---------------------------------------------------------------- QK-Norm and rotary embedding
@SETTINGS
@given(dtype=dtypes, tokens=st.integers(1, 9), heads=gqa_heads, head_dim=head_dims, fused=st.booleans(),
       factor=st.sampled_from([1.0, 1.2]), seed=seeds)
def test_qk_norm_rope(backend, dtype, tokens, heads, head_dim, fused, factor, seed):
    """Real rotary tables (YaRN-style attention factor too) at positions up to 40k; q and k either separate
    tensors or head slices of one fused q/k/v projection (strided rows, as the model passes them)."""
    g, dev = setup(backend, seed)
    n_kv, group = heads
    n_h = n_kv * group
    positions = torch.randint(0, 40000, (tokens,), generator=g).double()
    inv_freq = 1e6 ** (-torch.arange(0, head_dim, 2, dtype=torch.float64) / head_dim)
    angles = torch.cat([positions[:, None] * inv_freq] * 2, dim=-1)
    cos, sin = ((f(angles) * factor).to(dtype=dtype, device=dev) for f in (torch.cos, torch.sin))
    if fused:
        qkv = randn(g, tokens, n_h + 2 * n_kv, head_dim, dtype=dtype, device=dev, scale=3.0)
        q, k = qkv[:, :n_h], qkv[:, n_h:n_h + n_kv]
    else:
        q = randn(g, tokens, n_h, head_dim, dtype=dtype, device=dev, scale=3.0)
        k = randn(g, tokens, n_kv, head_dim, dtype=dtype, device=dev, scale=0.2)
    q_weight = randn(g, head_dim, dtype=dtype, device=dev, scale=0.5) + 1
    k_weight = randn(g, head_dim, dtype=dtype, device=dev, scale=0.5) + 1
    check_op(backend, "qk_norm_rope", q, k, q_weight, k_weight, 1e-6, cos, sin)


# ---------------------------------------------------------------- attention


@SETTINGS
@given(dtype=dtypes, q_lens=st.lists(st.one_of(st.integers(0, 9), st.integers(10, 140)), min_size=1, max_size=4),
       prefixes=st.lists(st.one_of(st.just(0), st.integers(1, 80)), min_size=4, max_size=4), heads=gqa,
       head_dim=head_dims, fused=st.booleans(), sharpness=st.sampled_from([1.0, 4.0]), seed=seeds)
def test_attention_prefill(backend, dtype, q_lens, prefixes, heads, head_dim, fused, sharpness, seed):
    """Packed sequences of different lengths (incl. 0, 1, odd, beyond one key block), optionally continuing
    after a cached prefix (Lk > Lq), any GQA ratio; q/k/v possibly slices of one fused projection."""
    g, dev = setup(backend, seed)
    n_kv, group = heads
    n_h = n_kv * group
    k_lens = [lq + p for lq, p in zip(q_lens, prefixes)]
    if sum(k_lens) == 0:
        k_lens[0] = q_lens[0] = 1
    n, m = sum(q_lens), sum(k_lens)
    if fused:   # one [N, (nH + 2 nKV) D] projection split into q, k, v (needs Lk == Lq)
        k_lens = q_lens
        m = n
        qkv = randn(g, n, n_h + 2 * n_kv, head_dim, dtype=dtype, device=dev)
        q, k, v = qkv[:, :n_h], qkv[:, n_h:n_h + n_kv], qkv[:, n_h + n_kv:]
    else:
        q = randn(g, n, n_h, head_dim, dtype=dtype, device=dev)
        k = randn(g, m, n_kv, head_dim, dtype=dtype, device=dev)
        v = randn(g, m, n_kv, head_dim, dtype=dtype, device=dev)
    cu_q = torch.tensor([0] + q_lens, dtype=torch.int64).cumsum(0).to(dtype=torch.int32, device=dev)
    cu_k = torch.tensor([0] + k_lens, dtype=torch.int64).cumsum(0).to(dtype=torch.int32, device=dev)
    check_op(backend, "attention_prefill", q, k, v, cu_q, cu_k, sharpness * head_dim ** -0.5)


@SETTINGS
@given(dtype=dtypes, batch=st.integers(1, 4),
       capacity=st.one_of(st.integers(1, 9), st.integers(10, 200), st.integers(201, 700)),
       heads=gqa, head_dim=head_dims, sharpness=st.sampled_from([1.0, 4.0]), seed=seeds, data=st.data())
def test_attention_decode(backend, dtype, batch, capacity, heads, head_dim, sharpness, seed, data):
    """Rows of different lengths (1 ... capacity; up to several key blocks, long enough for the C++ kernel's
    threaded path); cache slots past a row's length hold NaN (must not be read)."""
    g, dev = setup(backend, seed)
    n_kv, group = heads
    lengths = data.draw(st.lists(st.integers(1, capacity), min_size=batch, max_size=batch), label="lengths")
    q = randn(g, batch, n_kv * group, head_dim, dtype=dtype, device=dev)
    k_cache = randn(g, batch, capacity, n_kv, head_dim, dtype=dtype, device=dev)
    v_cache = randn(g, batch, capacity, n_kv, head_dim, dtype=dtype, device=dev)
    for b, length in enumerate(lengths):
        k_cache[b, length:] = float("nan")
        v_cache[b, length:] = float("nan")
    seqlens = torch.tensor(lengths, dtype=torch.int32, device=dev)
    check_op(backend, "attention_decode", q, k_cache, v_cache, seqlens, sharpness * head_dim ** -0.5)


# ---------------------------------------------------------------- feed-forward
@SETTINGS
@given(dtype=dtypes, lead=st.lists(st.integers(1, 12), min_size=1, max_size=2), features_in=hidden_sizes,
       features_out=st.one_of(st.integers(1, 70), st.just(4099)), seed=seeds)
def test_linear(backend, dtype, lead, features_in, features_out, seed):
    """Decode shapes (a few rows) and prefill shapes (more rows than the matrix-vector kernels take)."""
    g, dev = setup(backend, seed)
    x = randn(g, *lead, features_in, dtype=dtype, device=dev)
    w = randn(g, features_out, features_in, dtype=dtype, device=dev, scale=features_in ** -0.5)
    check_op(backend, "linear", x, w)


@pytest.mark.parametrize("bf16_gemm", [False, True], ids=["widened-fp32-gemm", "bf16-gemm"])
@SETTINGS
@given(rows=st.integers(33, 300), features_in=hidden_sizes, features_out=st.integers(1, 300), seed=seeds)
def test_linear_prefill_gemm_paths(backend, bf16_gemm, rows, features_in, features_out, seed):
    """The C++ backend's prefill GEMM in bf16 (chosen on CPUs with native bf16 dot products) and in fp32 on
    widened weights (the others): both meet the contract whichever CPU runs the suite."""
    if not backend.startswith("cpp"):
        pytest.skip("the choice of GEMM is the C++ backend's")
    from qwen3mini.ops import cpp
    saved, cpp._BF16_GEMM = cpp._BF16_GEMM, bf16_gemm
    try:
        g, dev = setup(backend, seed)
        x = randn(g, rows, features_in, dtype=torch.bfloat16, device=dev)
        w = randn(g, features_out, features_in, dtype=torch.bfloat16, device=dev, scale=features_in ** -0.5)
        check_op(backend, "linear", x, w)
    finally:
        cpp._BF16_GEMM = saved


@SETTINGS
@given(dtype=dtypes, rows=st.one_of(st.integers(1, 12), st.integers(33, 80)), features_in=hidden_sizes,
       features_out=st.one_of(st.integers(1, 70), st.just(4099)), seed=seeds)
def test_quantized_linear(backend, dtype, rows, features_in, features_out, seed):
    """int8 weights with per-row scales (decode's matrix-vector kernel and prefill's GEMM); a backend without the
    op runs the reference through ``ops.quantized_linear``."""
    if not hasattr(ops.get_backend(backend), "quantized_linear"):
        pytest.skip(f"{backend} has no quantized_linear (the reference serves it)")
    g, dev = setup(backend, seed)
    x = randn(g, rows, features_in, dtype=dtype, device=dev)
    qweight = torch.randint(-127, 128, (features_out, features_in), generator=g, dtype=torch.int8).to(dev)
    scale = (torch.rand(features_out, generator=g) + 0.5).to(dev) / (127 * features_in ** 0.5)
    check_op(backend, "quantized_linear", x, qweight, scale)


@SETTINGS
@given(dtype=dtypes, lead=st.lists(st.integers(1, 6), min_size=1, max_size=2),
       inter=st.one_of(st.integers(1, 70), st.sampled_from([768, 3072])), strided=st.booleans(), seed=seeds)
def test_silu_mul(backend, dtype, lead, inter, strided, seed):
    """gate_up possibly a column slice of a wider tensor (rows not contiguous with each other)."""
    g, dev = setup(backend, seed)
    gate_up = randn(g, *lead, 2 * inter + (3 if strided else 0), dtype=dtype, device=dev, scale=3.0)
    if strided:
        gate_up = gate_up[..., 3:]
    check_op(backend, "silu_mul", gate_up)


@SETTINGS
@given(dtype=dtypes, tokens=st.integers(1, 12), experts=st.one_of(st.integers(1, 40), st.sampled_from([128, 160])),
       normalize=st.booleans(), coarse=st.booleans(), seed=seeds, data=st.data())
def test_moe_route(backend, dtype, tokens, experts, normalize, coarse, seed, data):
    """Any expert count and top-k (1 ... 8), with many tied logits when ``coarse`` (rounded to halves).

    Ties make the choice ambiguous, so the check is by value: the ids are distinct and in range, their
    probabilities are the k largest (up to fp32 rounding of the softmax), in descending order, and the
    weights are those probabilities (renormalised when asked) within the dtype's tolerance."""
    g, dev = setup(backend, seed)
    top_k = data.draw(st.integers(1, min(experts, 8)), label="top_k")
    logits = randn(g, tokens, experts, dtype=dtype, device=dev, scale=2.0)
    if coarse:
        logits = (logits * 2).round() / 2
    ids, weights = run_backend(backend, "moe_route", logits, top_k, normalize)
    assert ids.dtype == torch.int64 and ids.shape == (tokens, top_k), (ids.dtype, ids.shape)
    assert weights.dtype == dtype and weights.shape == (tokens, top_k), (weights.dtype, weights.shape)
    assert ((ids >= 0) & (ids < experts)).all(), f"expert ids out of range: {ids}"
    assert all(len(set(row)) == top_k for row in ids.tolist()), f"repeated expert ids: {ids}"
    probs = torch.softmax(logits.cpu().double(), dim=-1)
    chosen = probs.gather(1, ids)
    kth_largest = probs.topk(top_k, dim=-1).values[:, -1:]
    assert (chosen >= kth_largest * (1 - 1e-6)).all(), f"not the top-{top_k} experts: {ids}"
    assert (chosen[:, :-1] >= chosen[:, 1:] * (1 - 1e-6)).all(), f"not in descending order: {chosen}"
    exact = chosen / chosen.sum(-1, keepdim=True) if normalize else chosen
    assert_within_tolerance(weights, exact, exact.to(dtype), f"{backend}.moe_route weights ({dtype})")


@SETTINGS
@given(dtype=dtypes, tokens=st.integers(1, 12), hidden=st.integers(1, 72), inter=st.integers(1, 40),
       experts=st.integers(1, 12), seed=seeds, data=st.data())
def test_moe_experts(backend, dtype, tokens, hidden, inter, experts, seed, data):
    """Distinct top-k experts per token, many experts without tokens; those experts' weights are NaN."""
    g, dev = setup(backend, seed)
    top_k = data.draw(st.integers(1, min(experts, 8)), label="top_k")
    ids = torch.stack([torch.randperm(experts, generator=g)[:top_k] for _ in range(tokens)])
    weights = torch.softmax(torch.randn(tokens, top_k, generator=g), -1).to(dtype=dtype, device=dev)
    x = randn(g, tokens, hidden, dtype=dtype, device=dev)
    w_gate_up = randn(g, experts, 2 * inter, hidden, dtype=dtype, device=dev, scale=hidden ** -0.5)
    w_down = randn(g, experts, hidden, inter, dtype=dtype, device=dev, scale=inter ** -0.5)
    unused = [e for e in range(experts) if e not in ids]
    w_gate_up[unused] = float("nan")
    w_down[unused] = float("nan")
    check_op(backend, "moe_experts", x, ids.to(dev), weights, w_gate_up, w_down)


# ---------------------------------------------------------------- the suite itself
def test_poisoned_allocations_are_nan():
    """The premise of the poisoning: inside run_backend, torch.empty* hand out NaN-filled memory."""
    with poisoned_allocations():
        fresh = [torch.empty(5), torch.empty_like(torch.zeros(2, 3, dtype=torch.bfloat16)),
                 torch.zeros(1).new_empty(4)]
    assert all(torch.isnan(t).all() for t in fresh)
