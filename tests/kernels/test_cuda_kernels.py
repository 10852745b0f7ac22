"""Focused GPU tests of the CUDA backend (csrc/cuda) against the reference ops of ``qwen3mini/ops/reference.py``.

Every case draws fresh random inputs (hypothesis), and the caching allocator is filled with NaN first so that an
output element the kernel forgets to write shows up as NaN. The error bound is the op contract's tolerance rule
(qwen3mini/ops/tolerance.py) against a float64 truth: element by element, or on the relative L2 error of the
whole output, a kernel at most twice as far from the truth as the reference op in the same dtype, plus a floor.

Run on a GPU machine:  pytest tests/kernels/test_cuda_kernels.py   (QWEN3MINI_CUDA_EXAMPLES=300 for more cases)
"""
import os

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from qwen3mini.ops.reference import ReferenceBackend
from qwen3mini.ops.tolerance import allowed_error, assert_within_tolerance

from kernel_checks import built_cuda_module

REF = ReferenceBackend()
EXAMPLES = int(os.environ.get("QWEN3MINI_CUDA_EXAMPLES", "25"))
gpu_settings = settings(max_examples=EXAMPLES, deadline=None, derandomize=False,
                        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
pytestmark = [pytest.mark.gpu, needs_cuda]

DTYPES = [torch.bfloat16, torch.float16]


@pytest.fixture(scope="module")
def cuda_backend():
    return built_cuda_module().CudaBackend()


@pytest.fixture(autouse=True)
def _surface_cuda_errors():
    """Kernels run asynchronously: synchronise after each test so that a launch or memory error fails it."""
    yield
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def poison_allocator(nbytes: int) -> None:
    """Fill cached, free device memory with NaN so that unwritten outputs read back as NaN."""
    block = torch.full((nbytes // 2 + 1024,), float("nan"), dtype=torch.float16, device="cuda")
    del block


def rel_error(out, truth):
    return ((out.double() - truth).norm() / truth.norm().clamp_min(1e-30)).item()


def check_close(out, reference_out, truth, what):
    """out (kernel) and reference_out (reference op, same dtype) against a float64 truth."""
    assert not torch.isnan(out).any(), f"{what}: NaN in output (unwritten elements?)"
    err, ref_err = rel_error(out, truth), rel_error(reference_out, truth)
    assert err <= allowed_error(ref_err, 1.0, out.dtype), (f"{what}: relative error {err:.2e} vs reference's own "
                                                           f"{ref_err:.2e}")


def rand(*shape, dtype, generator):
    return torch.randn(*shape, generator=generator, device="cuda", dtype=torch.float32).to(dtype)


# ----------------------------------------------------------------------------------------------- attention
@st.composite
def prefill_case(draw):
    d = draw(st.sampled_from([64, 128]))
    n_kv = draw(st.sampled_from([1, 2, 4]))
    group = draw(st.sampled_from([1, 2, 4, 8]))
    batch = draw(st.integers(1, 4))
    lq = [draw(st.integers(0 if b else 1, 200)) for b in range(batch)]  # empty sequences allowed
    prefix = [draw(st.sampled_from([0, 0, 1, 37, 130])) for _ in range(batch)]
    return d, n_kv, group, lq, [a + p for a, p in zip(lq, prefix)], draw(st.sampled_from(DTYPES)), draw(st.integers(0, 2**31))


@needs_cuda
@gpu_settings
@given(prefill_case())
def test_attention_prefill(cuda_backend, case):
    d, n_kv, group, lq, lk, dtype, seed = case
    g = torch.Generator(device="cuda").manual_seed(seed)
    n, m, n_h = sum(lq), sum(lk), n_kv * group
    # q as a strided view (as after splitting a fused qkv projection): the kernel must honour strides
    q = rand(n, n_h + 2, d, dtype=dtype, generator=g)[:, 1:n_h + 1]
    k, v = rand(m, n_kv, d, dtype=dtype, generator=g), rand(m, n_kv, d, dtype=dtype, generator=g)
    cu_q = torch.tensor([0] + lq, device="cuda").cumsum(0).to(torch.int32)
    cu_k = torch.tensor([0] + lk, device="cuda").cumsum(0).to(torch.int32)
    scale = d ** -0.5
    poison_allocator(q.numel() * 2)
    out = cuda_backend.attention_prefill(q, k, v, cu_q, cu_k, scale)
    ref = REF.attention_prefill(q, k, v, cu_q, cu_k, scale)
    truth = REF.attention_prefill(q.double(), k.double(), v.double(), cu_q, cu_k, scale)
    assert out.shape == q.shape and out.dtype == dtype
    check_close(out, ref, truth, f"prefill d={d} nkv={n_kv} group={group} lq={lq} lk={lk} {dtype}")


@st.composite
def decode_case(draw):
    d = draw(st.sampled_from([64, 128]))
    n_kv = draw(st.sampled_from([1, 2, 8]))
    group = draw(st.sampled_from([1, 2, 4, 8, 16]))
    batch = draw(st.integers(1, 5))
    capacity = draw(st.sampled_from([1, 7, 64, 300, 1000]))
    lengths = [draw(st.integers(1, capacity)) for _ in range(batch)]
    return d, n_kv, group, capacity, lengths, draw(st.sampled_from(DTYPES)), draw(st.integers(0, 2**31))


@needs_cuda
@gpu_settings
@given(decode_case())
def test_attention_decode(cuda_backend, case):
    d, n_kv, group, capacity, lengths, dtype, seed = case
    g = torch.Generator(device="cuda").manual_seed(seed)
    batch, n_h = len(lengths), n_kv * group
    q = rand(batch, n_h, d, dtype=dtype, generator=g)
    k = rand(batch, capacity, n_kv, d, dtype=dtype, generator=g)
    v = rand(batch, capacity, n_kv, d, dtype=dtype, generator=g)
    seqlens = torch.tensor(lengths, device="cuda", dtype=torch.int32)
    poison_allocator(k.numel() * 2)
    out = cuda_backend.attention_decode(q, k, v, seqlens, d ** -0.5)
    ref = REF.attention_decode(q, k, v, seqlens, d ** -0.5)
    truth = REF.attention_decode(q.double(), k.double(), v.double(), seqlens, d ** -0.5)
    check_close(out, ref, truth, f"decode d={d} nkv={n_kv} group={group} S={capacity} lens={lengths} {dtype}")


@st.composite
def one_split_decode_case(draw):
    """Batches large enough that the (row, KV head) blocks alone fill the GPU, so the plan has one split and the
    split kernel writes the output itself (no combine): awkward group sizes, capacities and lengths."""
    from qwen3mini import _cuda
    d = draw(st.sampled_from([64, 128]))
    n_kv = draw(st.sampled_from([2, 4, 8]))
    group = draw(st.sampled_from([1, 3, 5, 16]))
    capacity = draw(st.sampled_from([65, 300, 777]))
    one_split = 1   # a power of two of rows that the plan serves with one split
    while _cuda.attention_decode_splits(one_split, n_kv, capacity, torch.cuda.current_device()) > 1:
        one_split *= 2
    batch = draw(st.integers(one_split, one_split + 37))
    return d, n_kv, group, capacity, batch, draw(st.sampled_from(DTYPES)), draw(st.integers(0, 2**31))


@needs_cuda
@settings(gpu_settings, max_examples=max(EXAMPLES // 3, 4))
@given(one_split_decode_case())
def test_attention_decode_one_split(cuda_backend, case):
    """The one-split path element by element (the op contract's rule); cache slots past each length are NaN."""
    from qwen3mini import _cuda
    d, n_kv, group, capacity, batch, dtype, seed = case
    n_h = n_kv * group
    assert _cuda.attention_decode_splits(batch, n_kv, capacity, torch.cuda.current_device()) == 1
    g = torch.Generator(device="cuda").manual_seed(seed)
    q = rand(batch, n_h, d, dtype=dtype, generator=g)
    k = rand(batch, capacity, n_kv, d, dtype=dtype, generator=g)
    v = rand(batch, capacity, n_kv, d, dtype=dtype, generator=g)
    seqlens = torch.randint(1, capacity + 1, (batch,), generator=g, device="cuda", dtype=torch.int32)
    seqlens[:2] = torch.tensor([1, capacity])          # the shortest and the longest row, always
    past = torch.arange(capacity, device="cuda")[None, :] >= seqlens[:, None]
    k[past], v[past] = float("nan"), float("nan")
    poison_allocator(q.numel() * 8)
    out = cuda_backend.attention_decode(q, k, v, seqlens, d ** -0.5)
    ref = REF.attention_decode(q, k, v, seqlens, d ** -0.5)
    truth = REF.attention_decode(q.double(), k.double(), v.double(), seqlens, d ** -0.5)
    assert_within_tolerance(out, truth, ref, f"decode, one split: B={batch} d={d} nkv={n_kv} group={group} "
                                             f"S={capacity} {dtype}")


def decode_kernel_names(run) -> list:
    """The names of the GPU kernels that ``run()`` launches (torch's profiler)."""
    from torch.profiler import ProfilerActivity, profile
    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        run()
        torch.cuda.synchronize()
    return [e.key for e in prof.key_averages() if getattr(e, "device_time_total", 0) > 0]


@needs_cuda
def test_rollout_batch_decode_launches_no_combine(cuda_backend):
    """A GRPO rollout batch of qwen3mini-base (1,024 rows, 2 KV heads of 3 query heads, head_dim 64, a cache
    of 1,024 positions) runs attention decode as one kernel; one row with a long cache still splits and combines
    (which also shows that the profiler sees the combine when there is one)."""
    from qwen3mini import _cuda
    device = torch.cuda.current_device()
    for batch, capacity, combined in ((1024, 1024, False), (1, 4096, True)):
        assert (_cuda.attention_decode_splits(batch, 2, capacity, device) > 1) == combined
        g = torch.Generator(device="cuda").manual_seed(batch)
        q = rand(batch, 6, 64, dtype=torch.bfloat16, generator=g)
        k, v = (rand(batch, capacity, 2, 64, dtype=torch.bfloat16, generator=g) for _ in range(2))
        seqlens = torch.randint(1, capacity + 1, (batch,), generator=g, device="cuda", dtype=torch.int32)
        outs = []
        names = decode_kernel_names(lambda: outs.append(cuda_backend.attention_decode(q, k, v, seqlens, 0.125)))
        assert any("decode_split_kernel" in name for name in names), names
        assert any("decode_combine_kernel" in name for name in names) == combined, names
        truth = REF.attention_decode(q.double(), k.double(), v.double(), seqlens, 0.125)
        check_close(outs[0], REF.attention_decode(q, k, v, seqlens, 0.125), truth, f"decode B={batch} S={capacity}")


# ----------------------------------------------------------------------------------------------------- MoE
@st.composite
def moe_case(draw):
    experts = draw(st.integers(1, 16))
    top_k = draw(st.integers(1, min(experts, 12)))  # > 8 exercises a second batch of the combine
    tokens = draw(st.sampled_from([1, 2, 3, 17, 64, 300]))
    hidden = draw(st.sampled_from([64, 128, 200]))
    inter = draw(st.sampled_from([32, 64, 96]))
    return experts, top_k, tokens, hidden, inter, draw(st.sampled_from(DTYPES)), draw(st.integers(0, 2**31))


@needs_cuda
@gpu_settings
@given(moe_case())
def test_moe_experts(cuda_backend, case):
    experts, top_k, tokens, hidden, inter, dtype, seed = case
    g = torch.Generator(device="cuda").manual_seed(seed)
    x = rand(tokens, hidden, dtype=dtype, generator=g)
    # a skewed router, so that some experts get many tokens and some none
    logits = torch.randn(tokens, experts, generator=g, device="cuda") + torch.linspace(3, -3, experts, device="cuda")
    weights, ids = torch.softmax(logits, -1).topk(top_k, dim=-1)
    weights = weights.to(dtype)
    w_gate_up = rand(experts, 2 * inter, hidden, dtype=dtype, generator=g) * hidden ** -0.5
    w_down = rand(experts, hidden, inter, dtype=dtype, generator=g) * inter ** -0.5
    poison_allocator(tokens * top_k * max(hidden, inter) * 2)
    out = cuda_backend.moe_experts(x, ids, weights, w_gate_up, w_down)
    ref = REF.moe_experts(x, ids, weights, w_gate_up, w_down)
    truth = REF.moe_experts(x.double(), ids, weights.double(), w_gate_up.double(), w_down.double())
    check_close(out, ref, truth, f"moe E={experts} k={top_k} N={tokens} H={hidden} I={inter} {dtype}")


@needs_cuda
@pytest.mark.parametrize("tokens", [1, 4096])
def test_moe_experts_qwen3_30b_shape(cuda_backend, tokens):
    """The Qwen3-30B-A3B block (H 2048, 128 experts, top-8, I 768): decode and big-batch tile configurations."""
    g = torch.Generator(device="cuda").manual_seed(tokens)
    dtype, experts, hidden, inter = torch.bfloat16, 128, 2048, 768
    x = rand(tokens, hidden, dtype=dtype, generator=g)
    weights, ids = torch.softmax(torch.randn(tokens, experts, generator=g, device="cuda"), -1).topk(8, dim=-1)
    weights = weights.to(dtype)
    w_gate_up = rand(experts, 2 * inter, hidden, dtype=dtype, generator=g) * hidden ** -0.5
    w_down = rand(experts, hidden, inter, dtype=dtype, generator=g) * inter ** -0.5
    out = cuda_backend.moe_experts(x, ids, weights, w_gate_up, w_down)
    ref = REF.moe_experts(x, ids, weights, w_gate_up, w_down)
    truth = REF.moe_experts(x.float(), ids, weights.float(), w_gate_up.float(), w_down.float()).double()
    check_close(out, ref, truth, f"moe 30B-A3B N={tokens}")


# -------------------------------------------------------------------------------------------- linear (GEMV)
@needs_cuda
@gpu_settings
@given(st.sampled_from([[1], [1, 1], [3], [2, 4]]),
       st.sampled_from([8, 64, 1000, 1024, 3072]), st.integers(1, 3000), st.sampled_from(DTYPES),
       st.integers(0, 2**31))
def test_linear_decode_rows(cuda_backend, lead, features_in, features_out, dtype, seed):
    """One row goes to the GEMV kernel (batch-1 decode), more to cuBLAS; both within the reference's accuracy."""
    g = torch.Generator(device="cuda").manual_seed(seed)
    x = rand(*lead, features_in, dtype=dtype, generator=g)
    w = rand(features_out, features_in, dtype=dtype, generator=g) * features_in ** -0.5
    poison_allocator(x.numel() // features_in * features_out * 2)
    out = cuda_backend.linear(x, w)
    assert out.shape == (*lead, features_out)
    check_close(out, REF.linear(x, w), REF.linear(x.double(), w.double()), f"linear {lead}x{features_in}->{features_out}")


# ------------------------------------------------------------------------------------- norms and rotary
@needs_cuda
@gpu_settings
@given(st.sampled_from([8, 64, 1024, 2056, 4096]), st.integers(1, 70), st.sampled_from(DTYPES), st.booleans(),
       st.integers(0, 2**31))
def test_rms_norm(cuda_backend, hidden, rows, dtype, fused, seed):
    g = torch.Generator(device="cuda").manual_seed(seed)
    x, res = rand(rows, hidden, dtype=dtype, generator=g) * 3, rand(rows, hidden, dtype=dtype, generator=g)
    w = rand(hidden, dtype=dtype, generator=g)
    poison_allocator(x.numel() * 4)
    if fused:
        out, summed = cuda_backend.add_rms_norm(x, res, w, 1e-6)
        ref, ref_sum = REF.add_rms_norm(x, res, w, 1e-6)
        exact = REF.add_rms_norm(x.double(), res.double(), w.double(), 1e-6)[0]
        assert torch.equal(summed, ref_sum)
    else:
        out, ref = cuda_backend.rms_norm(x, w, 1e-6), REF.rms_norm(x, w, 1e-6)
        exact = REF.rms_norm(x.double(), w.double(), 1e-6)
    assert not torch.isnan(out).any()
    assert_within_tolerance(out, exact, ref, f"rms_norm {rows}x{hidden} fused={fused} {dtype}")


def assert_rarely_differs(out, ref, truth, what, max_fraction=1e-3):
    """Same rounding steps as the reference, but fp32 details (the fast rsqrt and exp of --use_fast_math) may
    differ in the last bit: an intermediate then rounds the other way now and then (more often in fp16, whose
    rounding steps are 8x finer than bf16's). Almost every element must match exactly (a couple of flips, plus
    ``max_fraction`` of the elements), and the whole must be as close to the float64 truth as the reference is."""
    assert not torch.isnan(out).any(), f"{what}: NaN in output (unwritten elements?)"
    differs = int((out != ref).sum())
    assert differs <= 2 + max_fraction * out.numel(), f"{what}: {differs}/{out.numel()} elements differ from the reference"
    check_close(out, ref, truth, what)


@needs_cuda
@gpu_settings
@given(st.integers(1, 50), st.sampled_from([(1, 1), (8, 2), (4, 4), (2, 16)]), st.sampled_from([64, 128, 20]),
       st.sampled_from(DTYPES), st.booleans(), st.integers(0, 2**31))
def test_qk_norm_rope(cuda_backend, tokens, heads, d, dtype, fused, seed):
    """q and k as head slices of one fused q/k/v projection (strided) or separate tensors; real rotary tables."""
    g = torch.Generator(device="cuda").manual_seed(seed)
    n_kv, group = heads
    n_h = n_kv * group
    if fused:
        qkv = rand(tokens, n_h + 2 * n_kv, d, dtype=dtype, generator=g) * 3
        q, k = qkv[:, :n_h], qkv[:, n_h:n_h + n_kv]
    else:
        q, k = rand(tokens, n_h, d, dtype=dtype, generator=g) * 3, rand(tokens, n_kv, d, dtype=dtype, generator=g)
    qw, kw = (rand(d, dtype=dtype, generator=g) * 0.5 + 1 for _ in range(2))
    angles = torch.rand(tokens, d // 2, generator=g, device="cuda") * 1000
    cos, sin = torch.cat([angles.cos()] * 2, -1).to(dtype), torch.cat([angles.sin()] * 2, -1).to(dtype)
    poison_allocator((q.numel() + k.numel()) * 2)
    out_q, out_k = cuda_backend.qk_norm_rope(q, k, qw, kw, 1e-6, cos, sin)
    assert out_q.is_contiguous() and out_k.is_contiguous()
    ref_q, ref_k = REF.qk_norm_rope(q, k, qw, kw, 1e-6, cos, sin)
    true_q, true_k = REF.qk_norm_rope(q.double(), k.double(), qw.double(), kw.double(), 1e-6, cos.double(),
                                      sin.double())
    what = f"qk_norm_rope N={tokens} heads={heads} d={d} fused={fused} {dtype}"
    assert_rarely_differs(out_q, ref_q, true_q, what + " q")
    assert_rarely_differs(out_k, ref_k, true_k, what + " k")


@needs_cuda
@gpu_settings
@given(st.sampled_from([[1], [7], [3, 5], [300]]), st.sampled_from([8, 24, 768, 3072, 13]), st.booleans(),
       st.sampled_from(DTYPES), st.integers(0, 2**31))
def test_silu_mul(cuda_backend, lead, inter, strided, dtype, seed):
    """16-byte path (I % 8 == 0, aligned rows) and scalar path; gate_up possibly a column slice (strided rows)."""
    g = torch.Generator(device="cuda").manual_seed(seed)
    gate_up = rand(*lead, 2 * inter + (8 if strided else 0), dtype=dtype, generator=g) * 3
    if strided:
        gate_up = gate_up[..., 8:]
    poison_allocator(gate_up.numel() * 2)
    out = cuda_backend.silu_mul(gate_up)
    assert out.shape == (*lead, inter)
    assert_rarely_differs(out, REF.silu_mul(gate_up), REF.silu_mul(gate_up.double()),
                          f"silu_mul {lead}x{inter} strided={strided} {dtype}", max_fraction=1e-2)


@needs_cuda
@gpu_settings
@given(st.sampled_from([1, 2, 5, 64, 300]), st.sampled_from([1, 7, 32, 33, 128, 160, 512, 1000, 1024]),
       st.booleans(), st.booleans(), st.sampled_from(DTYPES), st.integers(0, 2**31), st.data())
def test_moe_route(cuda_backend, tokens, experts, normalize, ties, dtype, seed, data):
    """Any expert count up to 1024 and top-k up to 64; with ``ties`` the logits are rounded to halves, so that
    many are equal. Ranking is exact (by the logits themselves), so the chosen logits must equal the
    reference's top-k values position by position, and the weights (equal for tied experts) must match too."""
    top_k = data.draw(st.integers(1, min(experts, 64)), label="top_k")
    g = torch.Generator(device="cuda").manual_seed(seed)
    logits = rand(tokens, experts, dtype=dtype, generator=g) * 2
    if ties:
        logits = (logits * 2).round() / 2
    poison_allocator(tokens * top_k * 8)
    ids, weights = cuda_backend.moe_route(logits, top_k, normalize)
    ref_ids, ref_weights = REF.moe_route(logits, top_k, normalize)
    assert ids.dtype == torch.int64 and ids.shape == (tokens, top_k) and weights.dtype == dtype
    assert ((ids >= 0) & (ids < experts)).all(), "expert ids out of range"
    assert (ids.sort(-1).values.diff(dim=-1) > 0).all(), "repeated expert ids in a row"
    assert torch.equal(logits.gather(1, ids), logits.gather(1, ref_ids)), "not the top-k experts in order"
    exact_weights = REF.moe_route(logits.double(), top_k, normalize)[1]   # (tied experts have equal weights)
    assert_within_tolerance(weights, exact_weights, ref_weights, f"moe_route {tokens}x{experts} top-{top_k} {dtype}")


@needs_cuda
def test_small_ops_replay_in_a_cuda_graph(cuda_backend):
    """The decode-step ops sized from shapes alone: captured once, replayed on new inputs, equal to eager calls."""
    dtype, n = torch.bfloat16, 3
    qkv, w = torch.randn(n, 24, 128, device="cuda", dtype=dtype), torch.randn(128, device="cuda", dtype=dtype)
    cos, sin = torch.randn(n, 128, device="cuda", dtype=dtype), torch.randn(n, 128, device="cuda", dtype=dtype)
    gate_up, logits = torch.randn(n, 2 * 3072, device="cuda", dtype=dtype), torch.randn(n, 128, device="cuda", dtype=dtype)

    def step():
        q, k = cuda_backend.qk_norm_rope(qkv[:, :16], qkv[:, 16:20], w, w, 1e-6, cos, sin)
        return q, k, cuda_backend.silu_mul(gate_up), *cuda_backend.moe_route(logits, 8, True)

    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        step()
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        static_out = step()
    for source in (qkv, cos, sin, gate_up, logits):
        source.normal_()
    graph.replay()
    for got, expected in zip(static_out, step()):
        assert torch.equal(got, expected)


@needs_cuda
def test_backend_registered_for_cuda_tensors(cuda_backend):
    from qwen3mini import ops
    assert "cuda" in ops.available_backends()
    x = torch.randn(3, 64, device="cuda", dtype=torch.bfloat16)
    assert ops._select(x).name == "cuda"
