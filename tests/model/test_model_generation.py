"""Inference core: KV cache against the full forward, batched unequal prompts, sampling, streams, errors.

QWEN3MINI_MODEL_EXAMPLES sets the number of hypothesis examples (default 8).
"""
import os

import pytest
import torch
from hypothesis import HealthCheck, given, settings, strategies as st

import qwen3mini
from qwen3mini import ops
from qwen3mini.generation import Generator, KVCache, SamplingParams, Sampler, filter_logits
from hf_fixtures import make_hf_model, save_hf_checkpoint

NO_STOP = dict(stop_token_ids=[])


@pytest.fixture(scope="module", params=["dense", "moe"])
def model(request, tmp_path_factory):
    hf = make_hf_model(moe=request.param == "moe", seed=7, max_position_embeddings=128)
    directory = save_hf_checkpoint(hf, tmp_path_factory.mktemp(request.param))
    return qwen3mini.load_model(directory, dtype=torch.float32)


def prompt(length, seed):
    return torch.randint(3, 256, (length,), generator=torch.Generator().manual_seed(seed)).tolist()


def full_logits(model, ids):
    with torch.no_grad(), ops.backend("reference"):
        return model(torch.tensor([ids]))[0]


def test_cached_decode_equals_full_forward(model):
    """Prefill in two chunks (the second continues after a cached prefix), then decode token by token: every
    step's logits equal the no-cache forward over the whole sequence."""
    seq = prompt(30, seed=1)
    cache = KVCache.for_model(model, batch_size=1, max_seq_len=40)
    with ops.backend("reference"):
        first = model.prefill([seq[:9]], cache)
        second = model.prefill([seq[9:20]], cache)
        steps = [model.decode_step(torch.tensor([t]), cache)[0] for t in seq[20:]]
    reference = full_logits(model, seq)
    assert cache.lengths.tolist() == [30]
    torch.testing.assert_close(first[0], reference[8], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(second[0], reference[19], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(torch.stack(steps), reference[20:], rtol=1e-5, atol=1e-5)


def test_batched_rows_decode_independently(model):
    """Several rows of different lengths in one cache: a batched prefill (some rows continuing) and batched
    decode give each row the logits of its own full forward."""
    seqs = [prompt(n, seed=n) for n in (5, 17, 11)]
    cache = KVCache.for_model(model, batch_size=3, max_seq_len=32)
    with ops.backend("reference"):
        model.prefill([seqs[0][:2], seqs[2][:6]], cache, rows=[0, 2])           # row 1 starts empty
        last = model.prefill([seqs[0][2:], seqs[1][:-1], seqs[2][6:-1]], cache)
        step = model.decode_step(torch.tensor([7, seqs[1][-1], seqs[2][-1]]), cache)
    assert cache.lengths.tolist() == [6, 17, 11]
    torch.testing.assert_close(last[0], full_logits(model, seqs[0])[-1], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(step[0], full_logits(model, seqs[0] + [7])[-1], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(step[1], full_logits(model, seqs[1])[-1], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(step[2], full_logits(model, seqs[2])[-1], rtol=1e-5, atol=1e-5)


def test_batched_unequal_generation_equals_one_by_one(model):
    prompts = [prompt(n, seed=10 + n) for n in (3, 12, 7, 1)]
    with ops.backend("reference"):
        batched = model.generate(prompts, max_new_tokens=16, **NO_STOP)
        single = [model.generate([p], max_new_tokens=16, **NO_STOP)[0] for p in prompts]
    assert batched == single
    assert [len(row) for row in batched] == [len(p) + 16 for p in prompts]


def test_generate_tensor_form_and_stop_tokens(model):
    ids = torch.tensor([prompt(6, seed=3), prompt(6, seed=4)])
    free = model.generate(ids, max_new_tokens=12, **NO_STOP)
    assert free.shape == (2, 18) and torch.equal(free[:, :6], ids)
    stop = int(free[0, 9])                                   # row 0 produces it at step 4 (maybe earlier)
    first = next(i for i in range(6, 18) if free[0, i] == stop)
    out = model.generate(ids, max_new_tokens=12, stop_token_ids=[stop])
    assert torch.equal(out[0, :first + 1], free[0, :first + 1])
    assert (out[0, first + 1:] == stop).all()                # finished rows padded with their stop token
    padded = model.generate(ids, max_new_tokens=12, stop_token_ids=[stop], pad_token_id=0)
    assert (padded[0, first + 1:] == 0).all()
    as_lists = model.generate(ids.tolist(), max_new_tokens=12, stop_token_ids=[stop])
    assert as_lists[0] == free[0, :first + 1].tolist()        # trimmed after the stop token


def test_context_overflow_errors(model):
    with pytest.raises(ValueError, match=r"longest prompt \(100 tokens\) \+ max_new_tokens \(40\) = 140 exceeds "
                                         r"the model's context of 128 tokens"):
        model.generate([prompt(100, seed=0)], max_new_tokens=40)
    with pytest.raises(ValueError, match="exceeds the model's context of 128"):
        Generator(model, max_seq_len=4096)
    gen = Generator(model, max_seq_len=16)
    gen.append(prompt(10, seed=0))
    with pytest.raises(ValueError, match=r"10 cached tokens \+ max_new_tokens=7 exceed max_seq_len=16"):
        gen.stream(7)
    with pytest.raises(ValueError, match=r"10 cached \+ 7 new tokens exceed max_seq_len=16"):
        gen.append(prompt(7, seed=1))
    with pytest.raises(ValueError, match="sequence length 129 exceeds the model's context"):
        model(torch.zeros(1, 129, dtype=torch.long))


# ---------------------------------------------------------------------------------------------- sampling
@pytest.mark.parametrize("top_k,top_p,min_p", [(5, 1.0, 0.0), (0, 0.8, 0.0), (0, 1.0, 0.1), (20, 0.9, 0.05)])
def test_filters_match_transformers_warpers(top_k, top_p, min_p):
    from transformers.generation.logits_process import MinPLogitsWarper, TopKLogitsWarper, TopPLogitsWarper
    logits = torch.randn(4, 300, generator=torch.Generator().manual_seed(0)) * 3
    expected = logits.clone()
    if top_k:
        expected = TopKLogitsWarper(top_k)(None, expected)
    if top_p < 1:
        expected = TopPLogitsWarper(top_p)(None, expected)
    if min_p:
        expected = MinPLogitsWarper(min_p)(None, expected)
    got = filter_logits(logits, top_k, top_p, min_p)
    assert torch.equal(torch.isinf(got), torch.isinf(expected))
    assert torch.equal(got[~torch.isinf(got)], logits[~torch.isinf(got)])


def test_sampling_follows_the_distribution():
    logits = torch.tensor([[2.0, 1.0, 0.5, 0.0, -1.0, -3.0]]).expand(20000, -1)
    sampler = Sampler(SamplingParams(temperature=0.7, seed=0), 20000, 6, "cpu")
    counts = torch.bincount(sampler(logits), minlength=6).float() / 20000
    torch.testing.assert_close(counts, torch.softmax(logits[0] / 0.7, -1), atol=0.01, rtol=0)
    nucleus = Sampler(SamplingParams(temperature=1.0, top_p=0.7, seed=0), 20000, 6, "cpu")(logits)
    assert set(nucleus.tolist()) == {0, 1}                    # p = .57, .21 (cumulative .78 >= .7)


def test_seed_reproducible_and_top_k_1_is_greedy(model):
    p = [prompt(5, seed=5)]
    kwargs = dict(max_new_tokens=20, temperature=1.0, top_p=0.95, **NO_STOP)
    assert model.generate(p, seed=1, **kwargs) == model.generate(p, seed=1, **kwargs)
    assert model.generate(p, seed=1, **kwargs) != model.generate(p, seed=2, **kwargs)
    greedy = model.generate(p, max_new_tokens=20, **NO_STOP)
    assert model.generate(p, max_new_tokens=20, temperature=1.0, top_k=1, seed=3, **NO_STOP) == greedy


def test_presence_penalty_stops_repetition(model):
    p = [prompt(4, seed=6)]
    plain = model.generate(p, max_new_tokens=40, **NO_STOP)[0][4:]
    assert len(set(plain)) < len(plain)                      # a random tiny model loops
    penalised = model.generate(p, max_new_tokens=40, presence_penalty=1e4, **NO_STOP)[0][4:]
    assert len(set(penalised)) == len(penalised)


def test_sampling_params_validation():
    with pytest.raises(ValueError, match="top_p must be in"):
        SamplingParams(top_p=0.0)
    with pytest.raises(ValueError, match="temperature must be >= 0"):
        SamplingParams(temperature=-1)


# ---------------------------------------------------------------------------------------------- Generator
def test_stream_matches_generate_and_fills_the_cache(model):
    p = prompt(8, seed=8)
    expected = model.generate([p], max_new_tokens=12, **NO_STOP)[0][8:]
    gen = Generator(model, max_seq_len=64)
    logits = gen.append(p)
    assert logits.shape == (256,) and gen.length == 8
    got = []
    for token in gen.stream(12, SamplingParams(temperature=0)):
        got.append(token)
        assert gen.length == 8 + len(got)                     # each yielded token is already in the cache
    assert got == expected
    gen.truncate(10)                                          # roll back, re-stream: same continuation
    assert list(gen.stream(10, SamplingParams(temperature=0))) == expected[2:]
    gen.reset()
    assert gen.length == 0


def test_stream_stops_after_stop_token(model):
    p = prompt(8, seed=9)
    free = model.generate([p], max_new_tokens=12, **NO_STOP)[0][8:]
    gen = Generator(model, max_seq_len=64)
    gen.append(p)
    got = list(gen.stream(12, SamplingParams(temperature=0), stop_token_ids=[free[3]]))
    assert got == free[:free.index(free[3]) + 1] and gen.length == 8 + len(got)


@pytest.mark.parametrize("fast_decode", [False, True], ids=["op-path", "decoder"])
def test_stream_survives_interrupt_mid_step(model, monkeypatch, fast_decode):
    """Ctrl-C inside a decode step: the state stays consistent and the stream continues as if never stopped.

    Op by op, the interrupt lands between two layers (the last layer dies after layer 0 wrote its K/V). A
    backend's compiled step (``ops.decoder``) cannot be interrupted inside; Python raises the interrupt as
    the step returns, after it wrote the K/V and advanced the cache lengths, so that is the moment simulated."""
    p = prompt(6, seed=11)
    expected = model.generate([p], max_new_tokens=10, **NO_STOP)[0][6:]
    gen = Generator(model, max_seq_len=32, fast_decode=fast_decode)
    gen.append(p)
    stream = gen.stream(10, SamplingParams(temperature=0))
    got = [next(stream) for _ in range(4)]
    calls = {"n": 0}

    def interrupted(*args, **kwargs):
        calls["n"] += 1
        if gen._decoder is not None:
            real_step(*args)
        raise KeyboardInterrupt
    with monkeypatch.context() as patch:
        if gen._decoder is None:
            patch.setattr(model.model.layers[-1], "forward", interrupted)
        else:
            real_step = gen._decoder.step
            patch.setattr(gen._decoder, "step", interrupted)
        with pytest.raises(KeyboardInterrupt):
            next(stream)
    assert calls["n"] == 1 and gen.length == 6 + 4
    got += list(gen.stream(6, SamplingParams(temperature=0)))
    assert got == expected


def test_batched_generator_append(model):
    seqs = [prompt(7, seed=20), prompt(3, seed=21)]
    gen = Generator(model, max_seq_len=32, batch_size=2)
    logits = gen.append(seqs)
    assert gen.length == [7, 3]
    torch.testing.assert_close(logits[1], full_logits(model, seqs[1])[-1], rtol=1e-5, atol=1e-5)
    logits = gen.append([[5, 6], []])                          # only row 0 grows
    assert gen.length == [9, 3]
    torch.testing.assert_close(logits[0], full_logits(model, seqs[0] + [5, 6])[-1], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(logits[1], full_logits(model, seqs[1])[-1], rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="stream needs batch_size 1"):
        gen.stream(2)


class _SyncFreeOps:
    """The reference ops, with decode attention and MoE dispatch rewritten without data-dependent shapes, to
    check that the model's own decode code never synchronises with the host."""

    def __getattr__(self, name):
        return getattr(ops.get_backend("reference"), name)

    def attention_decode(self, q, k_cache, v_cache, cache_seqlens, scale):
        group = q.shape[1] // k_cache.shape[2]
        k = k_cache.repeat_interleave(group, dim=2)                         # [B, S, nH, D]
        v = v_cache.repeat_interleave(group, dim=2)
        scores = torch.einsum("bhd,bshd->bhs", q, k).float() * scale
        hidden = torch.arange(k.shape[1], device=q.device)[None, :] >= cache_seqlens[:, None]
        probs = torch.softmax(scores.masked_fill(hidden[:, None, :], float("-inf")), dim=-1).to(q.dtype)
        return torch.einsum("bhs,bshd->bhd", probs, v)

    def moe_experts(self, x, topk_ids, topk_weights, w_gate_up, w_down):
        out = torch.zeros_like(x)
        inter = w_down.shape[-1]
        for e in range(w_gate_up.shape[0]):
            weight = ((topk_ids == e) * topk_weights).sum(dim=-1, keepdim=True)
            gate_up = torch.nn.functional.linear(x, w_gate_up[e])
            hidden = torch.nn.functional.silu(gate_up[:, :inter]) * gate_up[:, inter:]
            out = out + torch.nn.functional.linear(hidden, w_down[e]) * weight
        return out


def test_decode_step_never_syncs_with_the_host(model, monkeypatch):
    """No .item()/.tolist()/nonzero in decode_step itself (CUDA-graph capture needs that): run it under a
    dispatch mode that records data-dependent ops, with tensor-to-Python conversions patched to record too,
    and with sync-free stand-ins for the two ops whose reference implementation loops on the host."""
    from torch.utils._python_dispatch import TorchDispatchMode

    class RecordSyncs(TorchDispatchMode):
        syncing = {"_local_scalar_dense", "nonzero", "unique", "_unique2", "masked_select", "item"}

        def __init__(self):
            super().__init__()
            self.seen = []

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            if func.__name__.split(".")[0] in self.syncing:
                self.seen.append(func.__name__)
            return func(*args, **(kwargs or {}))

    if "sync-free-test" not in ops.available_backends():
        ops.register_backend("sync-free-test", _SyncFreeOps(), device_types=())
    cache = KVCache.for_model(model, batch_size=2, max_seq_len=16)
    seqs = [prompt(5, seed=30), prompt(9, seed=31)]
    model.prefill(seqs, cache)
    tokens = torch.tensor([4, 5])
    with ops.backend("sync-free-test"), RecordSyncs() as mode, monkeypatch.context() as patch:
        for method in ("tolist", "item", "__bool__", "__int__", "__float__"):
            original = getattr(torch.Tensor, method)
            patch.setattr(torch.Tensor, method, lambda self, *a, _m=method, _f=original: (mode.seen.append(_m),
                                                                                           _f(self, *a))[1])
        logits = model.decode_step(tokens, cache)
    assert mode.seen == []
    torch.testing.assert_close(logits[0], full_logits(model, seqs[0] + [4])[-1], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(logits[1], full_logits(model, seqs[1] + [5])[-1], rtol=1e-5, atol=1e-5)


EXAMPLES = int(os.environ.get("QWEN3MINI_MODEL_EXAMPLES", "8"))


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_any_chunking_of_any_rows_matches_full_forward(model, data):
    """Property: rows of random lengths, fed to one cache in random chunks (each prefill call packing a random
    subset of rows, some continuing after cached prefixes), end with each row's full-forward logits."""
    lengths = data.draw(st.lists(st.integers(1, 12), min_size=1, max_size=3), label="lengths")
    seqs = [prompt(n, seed=100 + i) for i, n in enumerate(lengths)]
    cache = KVCache.for_model(model, batch_size=len(seqs), max_seq_len=12)
    fed, last = [0] * len(seqs), {}
    with ops.backend("reference"):
        while any(f < len(s) for f, s in zip(fed, seqs)):
            pending = [r for r in range(len(seqs)) if fed[r] < len(seqs[r])]
            rows = data.draw(st.lists(st.sampled_from(pending), min_size=1, unique=True), label="rows")
            chunks = [seqs[r][fed[r]:fed[r] + data.draw(st.integers(1, len(seqs[r]) - fed[r]))] for r in rows]
            for r, logits in zip(rows, model.prefill(chunks, cache, rows)):
                last[r] = logits
            for r, chunk in zip(rows, chunks):
                fed[r] += len(chunk)
    assert cache.lengths.tolist() == lengths
    for r, seq in enumerate(seqs):
        torch.testing.assert_close(last[r], full_logits(model, seq)[-1], rtol=1e-5, atol=1e-5)
