"""A backend's own decode step (``ops.decode_step``) against the op path (``model.decode_step``) on CPU.

The C++ backend's ``CppDecodeStep`` runs the same kernels in the same order as the op path, so its logits, the
K/V it writes and the lengths it advances must be *equal* to the op path's, bit for bit, over random small
configurations: dense and MoE (with dense layers mixed in), fp32 and bf16, weights in the model dtype or int8,
GQA ratios, head_dim 64 and 128, tied and separate heads, several cache rows of different lengths. The op path
itself is held to transformers by test_model_parity.py. The CUDA backend's batch step is checked here too, its
kernels replaced by their references. QWEN3MINI_MODEL_EXAMPLES sets the number of hypothesis examples (default 8).
"""
import copy
import os

import pytest
import torch
from hypothesis import HealthCheck, given, settings, strategies as st

from qwen3mini import ops
from qwen3mini.config import Qwen3Config
from qwen3mini.generation import Generator, KVCache, SamplingParams, generate
from qwen3mini.model import Qwen3ForCausalLM
from qwen3mini.quantize import quantize_model
from decode_fixtures import attention_decode_qkv_reference, prefilled_cache

EXAMPLES = int(os.environ.get("QWEN3MINI_MODEL_EXAMPLES", "8"))


@pytest.fixture(scope="module")
def cpp_backend():
    if "cpp" not in ops.available_backends():
        if os.environ.get("QWEN3MINI_REQUIRE_EXT") == "1":
            pytest.fail("the cpp backend is required (QWEN3MINI_REQUIRE_EXT=1) but not built", pytrace=False)
        pytest.skip("the cpp backend (qwen3mini._C) is not built")
    with ops.backend("cpp"):
        yield


def random_model(seed, dtype, moe=False, head_dim=64, heads=(4, 2), tied=True, layers=3):
    torch.manual_seed(seed)
    extra = dict(num_experts=6, num_experts_per_tok=2, moe_intermediate_size=40, mlp_only_layers=[1]) if moe else {}
    config = Qwen3Config(vocab_size=257, hidden_size=72, intermediate_size=104, num_hidden_layers=layers,
                         num_attention_heads=heads[0], num_key_value_heads=heads[1], head_dim=head_dim,
                         max_position_embeddings=512, tie_word_embeddings=tied, **extra)
    model = Qwen3ForCausalLM(config).to(dtype)
    with torch.no_grad():              # norms away from 1, so a weight applied in the wrong place shows
        for name, p in model.named_parameters():
            if name.endswith("norm.weight"):
                p.uniform_(0.5, 1.5)
    return model


def assert_same(actual, expected):
    torch.testing.assert_close(actual, expected, rtol=0, atol=0, equal_nan=True)


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seed=st.integers(0, 2**16), dtype=st.sampled_from([torch.float32, torch.bfloat16]), moe=st.booleans(),
       head_dim=st.sampled_from([64, 128]), heads=st.sampled_from([(4, 4), (4, 2), (6, 2), (3, 1)]),
       tied=st.booleans(), prompt_lengths=st.lists(st.integers(0, 20), min_size=1, max_size=3),
       steps=st.integers(1, 3), int8=st.booleans())
def test_cpp_decode_step_equals_the_op_path(cpp_backend, seed, dtype, moe, head_dim, heads, tied, prompt_lengths,
                                        steps, int8):
    model = random_model(seed, dtype, moe, head_dim, heads, tied)
    if int8:
        quantize_model(model, "int8")
    capacity = max(prompt_lengths) + steps + 1
    ours = prefilled_cache(model, prompt_lengths, capacity, seed)
    theirs = copy.deepcopy(ours)
    decoder = ops.decode_step(model, ours)
    assert type(decoder).__name__ == "CppDecodeStep" and decoder.max_rows == len(prompt_lengths)
    tokens = torch.randint(0, model.config.vocab_size, (len(prompt_lengths),),
                           generator=torch.Generator().manual_seed(seed + 1))
    for _ in range(steps):
        expected = model.decode_step(tokens, theirs)
        actual = decoder.step(tokens)
        assert_same(actual, expected)
        assert_same(ours.k, theirs.k)
        assert_same(ours.v, theirs.v)
        assert ours.lengths.tolist() == theirs.lengths.tolist()
        tokens = expected.float().argmax(-1)


def test_generate_and_stream_use_the_decode_step_and_agree_with_the_op_path(cpp_backend):
    """The chat's stream (with a roll-back between turns) and batched ``generate`` give the op path's tokens."""
    model = random_model(3, torch.bfloat16, moe=True)
    prompt = [5, 17, 3, 99, 4]
    params = SamplingParams(temperature=0.8, top_k=20, seed=0)
    fast, slow = Generator(model, max_seq_len=64), Generator(model, max_seq_len=64, fast_decode=False)
    assert fast._step is not None and slow._step is None
    for gen in (fast, slow):
        gen.append(prompt)
        gen.first = list(gen.stream(12, params))
        gen.truncate(len(prompt) + 4)
        gen.append([7, 8])
        gen.second = list(gen.stream(12, params))
    assert (fast.first, fast.second) == (slow.first, slow.second)
    prompts = [[1, 2, 3], [4, 5, 6, 7, 8, 9], [10]]
    batched = generate(model, prompts, 10, stop_token_ids=[])
    with ops.backend("reference"):                     # the reference backend has no decode step: the op path
        assert ops.decode_step(model, KVCache.for_model(model, 1, 8)) is None
    op_path = [generate(model, [p], 10, stop_token_ids=[])[0] for p in prompts]
    assert batched == op_path


def test_cpp_decode_step_declines_what_its_kernels_do_not_serve(cpp_backend):
    model = random_model(0, torch.float16)
    assert ops.decode_step(model, KVCache.for_model(model, 1, 8)) is None


def test_cpp_decode_step_over_the_first_rows_leaves_the_others_alone(cpp_backend):
    """``step(tokens)`` with n < max_rows tokens steps cache rows 0..n-1 only (the DecodeStep contract)."""
    model = random_model(2, torch.bfloat16, moe=True)
    ours = prefilled_cache(model, [3, 5, 2], 10, seed=2)
    theirs = copy.deepcopy(ours)
    decoder = ops.decode_step(model, ours)
    assert decoder.max_rows == 3
    tokens = torch.tensor([11, 12])
    expected = model.decode_step(tokens, _first_rows(theirs, 2))
    assert_same(decoder.step(tokens), expected)
    assert ours.lengths.tolist() == [4, 6, 2]
    assert_same(ours.k, theirs.k)
    assert_same(ours.v, theirs.v)


def _first_rows(cache, n):
    """A KVCache viewing rows 0..n-1 of ``cache`` (the op path's way to step only those)."""
    view = copy.copy(cache)
    view.k, view.v, view.lengths = cache.k[:, :n], cache.v[:, :n], cache.lengths[:n]
    return view


def test_cpp_decode_step_names_bad_input(cpp_backend):
    model = random_model(1, torch.float32)
    cache = KVCache.for_model(model, 2, 4)
    decoder = ops.decode_step(model, cache)
    with pytest.raises(RuntimeError, match="token 257 outside the vocabulary"):
        decoder.step(torch.tensor([1, 257]))
    with pytest.raises(RuntimeError, match="1 to 2 ids"):
        decoder.step(torch.tensor([1, 2, 3]))
    cache.lengths.fill_(4)
    with pytest.raises(RuntimeError, match="cache row 0 holds 4 tokens; the KV cache holds 4"):
        decoder.step(torch.tensor([1, 2]))


def test_cpp_decode_step_names_a_bad_quantised_weight(cpp_backend):
    model = quantize_model(random_model(1, torch.bfloat16), "int8")
    projection = model.model.layers[0].self_attn.qkv_proj
    projection.scale = projection.scale.double()
    with pytest.raises(RuntimeError, match="a quantised weight must be a contiguous CPU int8 .* float32 scale"):
        ops.decode_step(model, KVCache.for_model(model, 1, 4))


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_cuda_batch_step_orders_its_ops_as_the_op_path(monkeypatch, dtype):
    """The CUDA backend's ``CudaBatchDecodeStep`` (qwen3mini/ops/cuda.py), its Python part checked where CI runs:
    with its three kernels replaced by their references (``attention_decode_qkv_reference``; the kernels against
    them are tests/model/test_decoder_cuda.py's, on a GPU), its steps over the first rows of a cache equal the op
    path's bit for bit: the weights each op takes, the residual stream, the rotary rows, the lengths."""
    from types import SimpleNamespace
    from qwen3mini.ops import cuda as cuda_ops
    reference = ops.get_backend("reference")

    def add_rms_norm(x, residual, weight, eps):
        return [reference.rms_norm(x, weight, eps), None] if residual is None else \
            list(reference.add_rms_norm(x, residual, weight, eps))
    monkeypatch.setattr(cuda_ops, "_cuda", SimpleNamespace(add_rms_norm=add_rms_norm, silu_mul=reference.silu_mul,
                                                           attention_decode_qkv=attention_decode_qkv_reference))
    model = random_model(5, dtype, heads=(6, 2), tied=False)
    lengths = [3, 0, 17, 8, 1, 30, 5, 2, 9, 12, 4]
    ours = prefilled_cache(model, lengths, 40, seed=5)
    theirs = copy.deepcopy(ours)
    decoder = cuda_ops.CudaBatchDecodeStep(model, ours)
    assert decoder.max_rows == len(lengths)
    g = torch.Generator().manual_seed(6)
    with ops.backend("reference"):
        for rows in (11, 11, 7):
            tokens = torch.randint(0, model.config.vocab_size, (rows,), generator=g)
            expected = model.decode_step(tokens, _first_rows(theirs, rows))
            assert_same(decoder.step(tokens), expected)
            assert torch.equal(ours.lengths, theirs.lengths)
            assert_same(ours.k, theirs.k)
            assert_same(ours.v, theirs.v)
    with pytest.raises(ValueError, match=r"CudaBatchDecodeStep.step: tokens must be a LongTensor \[11\]"):
        decoder.step(torch.zeros(12, dtype=torch.long))
