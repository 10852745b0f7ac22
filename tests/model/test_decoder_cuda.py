"""The CUDA backend's own decode steps against the op path: the fused one (``ops.cuda.CudaDecodeStep``,
csrc/cuda/decode_step.cu, up to MAX_ROWS rows) and the batched one (``ops.cuda.CudaBatchDecodeStep``, more rows).

A step must do what ``model.decode_step`` does over the CUDA ops: the same logits within the
dtype's rounding (the fused kernels sum in another order, so not bit for bit), the same K/V written at each
row's position ``lengths[b]`` and nothing else in the cache touched (free positions are NaN-poisoned: a stray
write or read shows), the lengths advanced by one. Random small configurations (hypothesis): head_dim 64 and
128, GQA ratios 1 to 8, hidden and intermediate sizes that are not multiples of the kernels' 256-element rounds
(and over 1024 and 2048, the longer-row paths), 1 to 5 rows with different cache lengths (0 and nearly full
included), caches of up to 600 positions (the attention then runs as several splits), bf16 and fp16. Then: a
greedy continuation equal to the op path's, the greedy tokens picked in the LM head kernel equal to torch's
argmax of the logits (ties and NaN included), graph replays equal to eager steps, and the Qwen3-0.6B shape
against transformers. Skipped without a GPU; QWEN3MINI_CUDA_EXAMPLES sets the number of hypothesis examples
(default 25).
"""
import copy
import os

import pytest
import torch
from hypothesis import HealthCheck, given, settings, strategies as st

from qwen3mini import ops
from qwen3mini.config import Qwen3Config
from qwen3mini.generation import KVCache
from qwen3mini.model import Qwen3ForCausalLM
from qwen3mini.ops.tolerance import assert_rows_within_tolerance, assert_within_tolerance
from decode_fixtures import attention_decode_qkv_reference, prefilled_cache
from hf_fixtures import hf_in_float64, make_hf_model, randomize_, save_hf_checkpoint

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]
EXAMPLES = int(os.environ.get("QWEN3MINI_CUDA_EXAMPLES", "25"))
# The fused step and the op path round to the dtype after the same ops and differ in the fp32 summation order of
# their reductions, which the contract allows: both are held to the exact answer (the model in float64 over the
# same cache) by the tolerance rule (qwen3mini/ops/tolerance.py), the op path being the reference.


@pytest.fixture(scope="module", autouse=True)
def cuda_backend():
    from qwen3mini.ops import cuda as cuda_ops
    if cuda_ops._cuda is None:
        if os.environ.get("QWEN3MINI_REQUIRE_EXT") == "1":
            pytest.fail(f"qwen3mini._cuda missing: {cuda_ops._IMPORT_ERROR}", pytrace=False)
        pytest.skip(f"qwen3mini._cuda not built: {cuda_ops._IMPORT_ERROR}")
    with ops.backend("cuda"):
        yield
    torch.cuda.synchronize()  # a kernel fault surfaces here rather than in a later test


def random_model(seed, dtype, hidden, inter, heads, kv_heads, head_dim, layers=2, vocab=300, tied=False):
    """Weights at O(1) activations (hf_fixtures.randomize_: norms in [0.5, 1.5], peaked logits)."""
    config = Qwen3Config(vocab_size=vocab, hidden_size=hidden, intermediate_size=inter, num_hidden_layers=layers,
                         num_attention_heads=heads, num_key_value_heads=kv_heads, head_dim=head_dim,
                         max_position_embeddings=4096, tie_word_embeddings=tied)
    torch.manual_seed(seed)
    model = Qwen3ForCausalLM(config)
    randomize_(model, seed)
    return model.to("cuda", dtype).eval()


def in_float64(model, cache):
    """The model and a copy of the cache in float64 (the same weights and cached K/V, widened): its
    ``decode_step`` gives the exact answer for a step's inputs."""
    exact = copy.deepcopy(cache)
    exact.k, exact.v = exact.k.double(), exact.v.double()
    return copy.deepcopy(model).double(), exact


def check_step_against_op_path(model, lengths, capacity, seed, step_type, steps=2):
    """``ops.decode_step`` of ``model`` over a cache holding ``lengths`` is a ``step_type`` and does what the op
    path does, ``steps`` steps in a row: the logits and the new K/V by the tolerance rule, nothing else in the cache
    touched, the lengths advanced."""
    rows = len(lengths)
    ours = prefilled_cache(model, lengths, capacity, seed)
    theirs = copy.deepcopy(ours)
    exact_model, exact_cache = in_float64(model, ours)
    decoder = ops.decode_step(model, ours)
    assert type(decoder).__name__ == step_type
    g = torch.Generator().manual_seed(seed + 1)
    written = torch.zeros(ours.k.shape[1:3], dtype=torch.bool, device="cuda")  # [rows, positions] stepped
    for step in range(steps):  # the second step attends to the first one's K/V
        tokens = torch.randint(0, model.config.vocab_size, (rows,), generator=g).cuda()
        expected = model.decode_step(tokens, theirs)
        exact = exact_model.decode_step(tokens, exact_cache)
        got = decoder.step(tokens)
        assert torch.isfinite(got).all(), f"step {step}: non-finite logits (a read of a poisoned position?)"
        assert_rows_within_tolerance(got, exact, expected, f"step {step}: logits per row")
        assert torch.equal(ours.lengths, theirs.lengths)
        # K/V: every position but the new ones untouched; the new ones by the rule: element by element in layer 0,
        # by each layer's relative norm in later layers (whose inputs carry the earlier layers' rounding, like
        # the logits)
        written[torch.arange(rows), theirs.lengths.long() - 1] = True
        for name, a, b, e in (("k", ours.k, theirs.k, exact_cache.k), ("v", ours.v, theirs.v, exact_cache.v)):
            torch.testing.assert_close(a[:, ~written], b[:, ~written], rtol=0, atol=0, equal_nan=True,
                                       msg=lambda m: f"step {step}: {name} cache changed off the new positions: {m}")
            assert_within_tolerance(a[0, written], e[0, written], b[0, written], f"step {step}: new {name} of layer 0")
            assert_rows_within_tolerance(a[:, written].flatten(1), e[:, written].flatten(1),
                                         b[:, written].flatten(1), f"step {step}: new {name} per layer")


def draw_lengths(data, rows, capacity):
    """Cache lengths of ``rows`` rows (0 and nearly full included): each row steps twice."""
    lengths = data.draw(st.lists(st.integers(0, capacity - 2), min_size=rows, max_size=rows), label="lengths")
    lengths[data.draw(st.integers(0, rows - 1), label="nearly full row")] = capacity - 2
    return lengths


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**16), dtype=st.sampled_from([torch.bfloat16, torch.float16]),
       head_dim=st.sampled_from([64, 128]), kv_heads=st.sampled_from([1, 2, 3]),
       group=st.sampled_from([1, 2, 4, 5, 8]), hidden=st.sampled_from([64, 136, 264, 520, 1032]),
       inter=st.sampled_from([96, 344, 1096, 2056]), tied=st.booleans(),
       capacity=st.sampled_from([8, 70, 200, 600]), data=st.data())
def test_fused_step_equals_the_op_path(seed, dtype, head_dim, kv_heads, group, hidden, inter, tied, capacity, data):
    lengths = draw_lengths(data, data.draw(st.integers(1, 5), label="rows"), capacity)
    model = random_model(seed, dtype, hidden, inter, kv_heads * group, kv_heads, head_dim, tied=tied)
    check_step_against_op_path(model, lengths, capacity, seed, "CudaDecodeStep")


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**16), dtype=st.sampled_from([torch.bfloat16, torch.float16]),
       head_dim=st.sampled_from([64, 128]), kv_heads=st.sampled_from([1, 2, 3]),
       group=st.sampled_from([1, 3, 5, 8, 16]), hidden=st.sampled_from([64, 136, 520]),
       inter=st.sampled_from([96, 344]), tied=st.booleans(), capacity=st.sampled_from([8, 70, 200, 600]),
       data=st.data())
def test_batch_step_equals_the_op_path(seed, dtype, head_dim, kv_heads, group, hidden, inter, tied, capacity, data):
    """Above MAX_ROWS rows the backend's step is CudaBatchDecodeStep. Groups up to 16 take the attention kernel's
    three passes over a head's items; these row counts give several splits a row (the combine kernel)."""
    from qwen3mini.ops.cuda import _cuda
    lengths = draw_lengths(data, data.draw(st.integers(_cuda.MAX_ROWS + 1, 40), label="rows"), capacity)
    model = random_model(seed, dtype, hidden, inter, kv_heads * group, kv_heads, head_dim, tied=tied)
    check_step_against_op_path(model, lengths, capacity, seed, "CudaBatchDecodeStep")


@settings(max_examples=EXAMPLES, deadline=None)
@given(seed=st.integers(0, 2**16), dtype=st.sampled_from([torch.bfloat16, torch.float16]),
       head_dim=st.sampled_from([64, 128]), kv_heads=st.sampled_from([1, 2, 3]),
       group=st.sampled_from([1, 3, 4, 5, 7, 16]), rows=st.integers(1, 40), capacity=st.sampled_from([1, 63, 65, 600]),
       data=st.data())
def test_attention_decode_qkv_equals_its_reference(seed, dtype, head_dim, kv_heads, group, rows, capacity, data):
    """The batch step's attention kernel against ``attention_decode_qkv_reference``: the output by the tolerance
    rule (against the reference in float64), the new K/V exactly where they belong, every other cache position
    untouched (NaN-poisoned). Rows at position 0, at the last position, anywhere; caches of one position, a tile
    and a bit, several splits."""
    from qwen3mini.ops.cuda import _cuda
    heads, g = kv_heads * group, torch.Generator(device="cuda").manual_seed(seed)
    positions = data.draw(st.lists(st.integers(0, capacity - 1), min_size=rows, max_size=rows), label="positions")
    lengths = torch.tensor(positions, dtype=torch.int32, device="cuda")

    def normal(*shape):
        return torch.randn(*shape, generator=g, device="cuda", dtype=torch.float64)
    qkv = normal(rows, (heads + 2 * kv_heads) * head_dim)
    q_norm, k_norm = normal(head_dim).abs() + 0.5, normal(head_dim).abs() + 0.5
    angles = torch.arange(capacity, device="cuda", dtype=torch.float64)[:, None] * normal(head_dim // 2).abs()
    cos, sin = angles.cos().repeat(1, 2), angles.sin().repeat(1, 2)
    k_cache, v_cache = normal(rows, capacity, kv_heads, head_dim), normal(rows, capacity, kv_heads, head_dim)
    for row, position in enumerate(positions):   # the positions past each row's new one are garbage
        k_cache[row, position + 1:], v_cache[row, position + 1:] = float("nan"), float("nan")
    inputs = [t.to(dtype) for t in (qkv, q_norm, k_norm, cos, sin, k_cache, v_cache)]
    caches = [t.clone() for t in inputs[5:]]
    got = _cuda.attention_decode_qkv(*inputs[:5], *caches, lengths, heads, 1e-6, head_dim ** -0.5)
    expected_caches = [t.clone() for t in inputs[5:]]
    expected = attention_decode_qkv_reference(*inputs[:5], *expected_caches, lengths, heads, 1e-6, head_dim ** -0.5)
    exact_caches = [t.double() for t in inputs[5:]]
    exact = attention_decode_qkv_reference(*[t.double() for t in inputs[:5]], *exact_caches, lengths, heads, 1e-6,
                                           head_dim ** -0.5)
    assert_rows_within_tolerance(got, exact, expected, "attention output per row")
    new = torch.zeros(rows, capacity, dtype=torch.bool, device="cuda")
    new[torch.arange(rows), lengths.long()] = True
    for name, ours, theirs, e in zip("kv", caches, expected_caches, exact_caches):
        torch.testing.assert_close(ours[~new], theirs[~new], rtol=0, atol=0, equal_nan=True,
                                   msg=lambda m: f"{name} cache changed off the new positions: {m}")
        assert_within_tolerance(ours[new], e[new], theirs[new], f"new {name}")


def test_batch_step_at_a_rollout_batch_equals_the_op_path():
    """A rollout-sized batch, where the attention runs as one split a row and writes its output directly."""
    from qwen3mini.ops.cuda import _cuda
    model = random_model(7, torch.bfloat16, 136, 96, 3, 1, 64, layers=1)
    rows = 8 * torch.cuda.get_device_properties(0).multi_processor_count + 5
    assert _cuda.attention_decode_splits(rows, 1, 130, 0) == 1
    lengths = torch.randint(0, 129, (rows,), generator=torch.Generator().manual_seed(8)).tolist()
    check_step_against_op_path(model, lengths, 130, 9, "CudaBatchDecodeStep")


def test_decode_step_is_offered_only_where_it_applies():
    dense = random_model(0, torch.bfloat16, 64, 96, 4, 2, 64)
    assert type(ops.decode_step(dense, KVCache.for_model(dense, 8, 16))).__name__ == "CudaDecodeStep"
    assert type(ops.decode_step(dense, KVCache.for_model(dense, 9, 16))).__name__ == "CudaBatchDecodeStep"
    odd = random_model(0, torch.bfloat16, 64, 96, 4, 2, 32)
    assert ops.decode_step(odd, KVCache.for_model(odd, 1, 16)) is None               # head_dim 32
    fp32 = random_model(0, torch.float32, 64, 96, 4, 2, 64)
    assert ops.decode_step(fp32, KVCache.for_model(fp32, 1, 16)) is None
    os.environ["QWEN3MINI_FUSED_STEP"] = "0"
    try:
        assert ops.decode_step(dense, KVCache.for_model(dense, 1, 16)) is None
        assert ops.decode_step(dense, KVCache.for_model(dense, 9, 16)) is None
    finally:
        del os.environ["QWEN3MINI_FUSED_STEP"]
    one_row = ops.decode_step(dense, KVCache.for_model(dense, 1, 16))
    with pytest.raises(ValueError, match=r"tokens must be a LongTensor \[1\]"):
        one_row.step(torch.zeros(2, dtype=torch.long, device="cuda"))
    with pytest.raises(ValueError, match=r"next_tokens must be a LongTensor \[1\]"):
        one_row.step(torch.zeros(1, dtype=torch.long, device="cuda"), torch.zeros(1, dtype=torch.int, device="cuda"))
    nine_rows = ops.decode_step(dense, KVCache.for_model(dense, 9, 16))
    with pytest.raises(ValueError, match=r"CudaBatchDecodeStep.step: tokens must be a LongTensor \[9\]"):
        nine_rows.step(torch.zeros(10, dtype=torch.long, device="cuda"))


def test_a_step_over_the_first_rows_leaves_the_others_alone():
    """``step(tokens)`` with n < max_rows tokens steps cache rows 0..n-1 only (the DecodeStep contract)."""
    model = random_model(3, torch.bfloat16, 64, 96, 4, 2, 64)
    ours = prefilled_cache(model, [3, 5, 2], 16, seed=3)
    theirs = copy.deepcopy(ours)
    exact_model, exact_cache = in_float64(model, ours)
    decoder = ops.decode_step(model, ours)
    assert decoder.max_rows == 3
    tokens = torch.tensor([11, 12], device="cuda")
    expected = model.decode_step(tokens, first_rows(theirs, 2))
    exact = exact_model.decode_step(tokens, first_rows(exact_cache, 2))
    got = decoder.step(tokens)
    assert got.shape == expected.shape
    assert_rows_within_tolerance(got, exact, expected, "logits per row")
    assert ours.lengths.tolist() == [4, 6, 2]
    torch.testing.assert_close(ours.k[:, 2], theirs.k[:, 2], rtol=0, atol=0, equal_nan=True)


def first_rows(cache, n):
    """A KVCache viewing rows 0..n-1 of ``cache`` (the op path's way to step only those)."""
    view = copy.copy(cache)
    view.k, view.v, view.lengths = cache.k[:, :n], cache.v[:, :n], cache.lengths[:n]
    return view


def test_strided_token_ids_are_read_and_next_tokens_must_be_dense():
    """Token ids may be a strided view (a column of a [B, T] batch); the greedy output, written by the kernel in
    place, must be contiguous."""
    model = random_model(1, torch.bfloat16, 64, 96, 4, 2, 64)
    caches = [prefilled_cache(model, [3, 5], 16, seed=2) for _ in range(2)]
    ids = torch.tensor([[4, 9], [7, 1]], device="cuda")
    strided = ops.decode_step(model, caches[0]).step(ids[:, 0]).clone()
    dense = ops.decode_step(model, caches[1]).step(ids[:, 0].contiguous())
    assert not ids[:, 0].is_contiguous() and torch.equal(strided, dense)
    with pytest.raises(ValueError, match="next_tokens must be contiguous"):
        ops.decode_step(model, caches[0]).step(ids[:, 0].contiguous(), ids[:, 1])


def test_greedy_continuation_equals_the_op_path():
    """32 greedy tokens, fused step vs model.decode_step, from the same prompt: identical, whether the fused
    step's token is taken by argmax of its logits or picked in its LM head kernel (written over its input)."""
    model = random_model(3, torch.bfloat16, 256, 512, 8, 4, 128, layers=4, vocab=1024)
    fused, in_kernel, plain = (prefilled_cache(model, [20], 64, seed=5) for _ in range(3))
    decoder, greedy_decoder = ops.decode_step(model, fused), ops.decode_step(model, in_kernel)
    token = plain_token = model.prefill([[7, 8, 9]], plain, [0]).argmax(-1)
    assert torch.equal(model.prefill([[7, 8, 9]], fused, [0]).argmax(-1), token)
    greedy_token = model.prefill([[7, 8, 9]], in_kernel, [0]).argmax(-1)
    ours, picked, expected = [], [], []
    for _ in range(32):
        token = decoder.step(token).argmax(-1)
        greedy_decoder.step(greedy_token, greedy_token)
        plain_token = model.decode_step(plain_token, plain).argmax(-1)
        ours.append(token.item())
        picked.append(greedy_token.item())
        expected.append(plain_token.item())
    assert ours == expected
    assert picked == expected


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**16), dtype=st.sampled_from([torch.bfloat16, torch.float16]),
       vocab=st.sampled_from([1, 7, 300, 2053, 70001]), rows=st.integers(1, 8), data=st.data())
def test_next_tokens_are_the_argmax_of_the_logits(seed, dtype, vocab, rows, data):
    """``step(tokens, next_tokens)`` writes logits.argmax(-1) of the very logits it returns, as torch picks it:
    the first of tied maxima (columns given the same head row as the winner, before and after it), and the
    first NaN where a column is NaN. Vocabularies from 1 column to more than one wave of the LM head's blocks."""
    model = random_model(seed, dtype, 136, 96, 4, 2, 64, layers=1, vocab=vocab)
    lengths = data.draw(st.lists(st.integers(0, 30), min_size=rows, max_size=rows), label="lengths")
    tokens = torch.randint(0, vocab, (rows,), generator=torch.Generator().manual_seed(seed)).cuda()
    head = model.lm_head.weight
    for case in ("plain", "ties", "nan"):
        cache = prefilled_cache(model, lengths, 32, seed)
        if case == "ties":  # the winner of row 0 copied to a column before it and one after it
            winner = int(ops.decode_step(model, copy.deepcopy(cache)).step(tokens)[0].argmax())
            for column in {winner // 2, (winner + vocab) // 2 + 1} - {winner}:
                if column < vocab:
                    head.data[column] = head.data[winner]
        if case == "nan":
            nan_columns = sorted(set(data.draw(st.lists(st.integers(0, vocab - 1), min_size=1, max_size=3),
                                               label="nan columns")))
            head.data[nan_columns] = float("nan")
        next_tokens = torch.full((rows,), -5, dtype=torch.long, device="cuda")   # poisoned
        logits = ops.decode_step(model, cache).step(tokens, next_tokens)
        expected = logits.argmax(-1)
        assert torch.equal(next_tokens, expected), f"{case}: picked {next_tokens.tolist()}, argmax {expected.tolist()}"
        if case == "ties":
            assert int(next_tokens[0]) == min(torch.nonzero(logits[0] == logits[0].max()).flatten().tolist())
        if case == "nan":
            assert next_tokens.tolist() == [nan_columns[0]] * rows


@pytest.mark.parametrize("lengths, step_type", [([5, 0, 33], "CudaDecodeStep"),
                                               ([5, 0, 33, 7, 60, 1, 2, 9, 40, 11, 3, 70], "CudaBatchDecodeStep")])
def test_graph_replay_equals_eager_steps(lengths, step_type):
    """GraphedDecodeStep captures the backend's step; its replays equal the same step launched eagerly, bit for
    bit."""
    from qwen3mini.cuda_graphs import GraphedDecodeStep
    model = random_model(4, torch.bfloat16, 264, 344, 8, 2, 64, layers=3)
    eager_cache, graph_cache = (prefilled_cache(model, lengths, 80, seed=6) for _ in range(2))
    eager = ops.decode_step(model, eager_cache)
    graphed = GraphedDecodeStep(model, graph_cache)
    rows = len(lengths)
    tokens = torch.arange(1, rows + 1, device="cuda")
    for step in range(5):
        expected = eager.step(tokens).clone()
        got = graphed.step(tokens)
        assert type(graphed.graphs[rows, False][3]).__name__ == step_type
        assert torch.equal(got, expected), f"step {step}: replay differs from the eager fused step"
        tokens = expected.argmax(-1)
    assert torch.equal(graph_cache.lengths, eager_cache.lengths)
    torch.testing.assert_close(graph_cache.k, eager_cache.k, rtol=0, atol=0, equal_nan=True)
    torch.testing.assert_close(graph_cache.v, eager_cache.v, rtol=0, atol=0, equal_nan=True)


QWEN3_0_6B = dict(vocab_size=151936, hidden_size=1024, intermediate_size=3072, num_hidden_layers=28,
                  num_attention_heads=16, num_key_value_heads=8, head_dim=128, tie_word_embeddings=True,
                  max_position_embeddings=4096, rope_theta=1000000.0)


@pytest.mark.parametrize("weights", ["initial", "randomized"])
def test_qwen3_0_6b_shape_matches_transformers(tmp_path, weights):
    """The Qwen3-0.6B shape (28 layers, hidden 1024, 16/8 heads of 128, intermediate 3072, tied 151936-token
    head) in bf16: fused decode steps after a prefill, by the tolerance rule per token against the exact answer
    (transformers in float64 on the same bf16 weights, full forward over the same tokens), with the op path
    (the same steps through model.decode_step) as the reference; and the op path so against transformers in
    bf16, as test_model_parity_cuda does. "initial": transformers' own initialisation (normal(0, 0.02), unit
    norms, as bench/bench_cuda_e2e.py); "randomized": hf_fixtures.randomize_ (O(1) activations through 28
    layers)."""
    import qwen3mini
    from transformers import Qwen3ForCausalLM as HFQwen3
    from hf_fixtures import make_hf_config
    if weights == "randomized":
        hf = make_hf_model(seed=11, **QWEN3_0_6B)
    else:
        torch.manual_seed(11)
        hf = HFQwen3(make_hf_config(**QWEN3_0_6B)).eval()
    ours = qwen3mini.load_model(save_hf_checkpoint(hf, tmp_path / "ckpt", dtype=torch.bfloat16), device="cuda",
                                dtype=torch.bfloat16)
    hf = hf.to("cuda", torch.bfloat16)
    exact_hf = hf_in_float64(hf)
    ids = torch.randint(0, 151936, (1, 40), generator=torch.Generator().manual_seed(12)).cuda()
    fused_cache, op_cache = KVCache.for_model(ours, 1, 64), KVCache.for_model(ours, 1, 64)
    decoder = ops.decode_step(ours, fused_cache)
    with torch.no_grad():
        fused, op_path = [ours.prefill(ids[:, :24], fused_cache)], [ours.prefill(ids[:, :24], op_cache)]
        for t in range(24, 40):
            fused.append(decoder.step(ids[:, t]).clone())
            op_path.append(ours.decode_step(ids[:, t], op_cache))
        expected, exact = hf(ids).logits[:, 23:], exact_hf(ids).logits[:, 23:]
    fused, op_path = torch.stack(fused, dim=1), torch.stack(op_path, dim=1)
    assert_rows_within_tolerance(fused, exact, op_path, "fused step, per token", (0.5, 0.9, 1.0))
    assert_rows_within_tolerance(op_path, exact, expected, "op path vs transformers, per token", (0.5, 0.9, 1.0))
