"""Inference core: KV cache against the full forward, batched unequal prompts, sampling, streams, errors.

Cached logits are held to the no-cache forward by the tolerance rule of csrc/README.md ("Tolerances"): the
cached path sums in another order (attention over the cache, other chunkings), so it may round differently from
the fp32 forward, but be no more than twice as far from the exact (float64) forward, plus one fp32 unit of the
largest logit. QWEN3MINI_MODEL_EXAMPLES sets the number of hypothesis examples (default 8).
"""
import copy
import os

import pytest
import torch
from hypothesis import HealthCheck, given, settings, strategies as st

import qwen3mini
from qwen3mini import ops
from qwen3mini.generation import (Completion, Generator, KVCache, SamplingParams, Sampler, ThinkingBudget,
                                  filter_logits, generate_completions)
from hf_fixtures import make_hf_model, save_hf_checkpoint

NO_STOP = dict(stop_token_ids=[])


@pytest.fixture(scope="module", params=["dense", "moe"])
def model(request, tmp_path_factory):
    hf = make_hf_model(moe=request.param == "moe", seed=7, max_position_embeddings=128)
    directory = save_hf_checkpoint(hf, tmp_path_factory.mktemp(request.param))
    return qwen3mini.load_model(directory, dtype=torch.float32)


@pytest.fixture(scope="module")
def exact(model):
    """The same model in float64: its forward is the exact answer for these weights."""
    return copy.deepcopy(model).double()


def prompt(length, seed):
    return torch.randint(3, 256, (length,), generator=torch.Generator().manual_seed(seed)).tolist()


def full_logits(model, ids):
    with torch.no_grad(), ops.backend("reference"):
        return model(torch.tensor([ids]))[0]


# fp32's share of the rule's floor (csrc/README.md "Tolerances"; tests/kernels/kernel_checks.py holds the rule
# for the op-level tests, where tests/model cannot import it)
FP32_TOLERANCE = 1e-5


def assert_like_forward(got, model, exact, ids, positions=-1):
    """``got`` (logits at ``positions`` of ``ids``, from a cached path) against the no-cache forward:
    |got - exact| <= 2 max|fp32 forward - exact| + tol * max(max|exact|, 1), element by element."""
    rounded, exact = full_logits(model, ids)[positions].double(), full_logits(exact, ids)[positions]
    bound = 2 * (rounded - exact).abs().max().item() + FP32_TOLERANCE * max(exact.abs().max().item(), 1.0)
    error = (got.double() - exact).abs().max().item()
    assert error <= bound, f"cached logits off by {error:.3g} > {bound:.3g} (twice the fp32 forward's error + floor)"


def test_cached_decode_equals_full_forward(model, exact):
    """Prefill in two chunks (the second continues after a cached prefix), then decode token by token: every
    step's logits equal the no-cache forward over the whole sequence."""
    seq = prompt(30, seed=1)
    cache = KVCache.for_model(model, batch_size=1, max_seq_len=40)
    with ops.backend("reference"):
        first = model.prefill([seq[:9]], cache)
        second = model.prefill([seq[9:20]], cache)
        steps = [model.decode_step(torch.tensor([t]), cache)[0] for t in seq[20:]]
    assert cache.lengths.tolist() == [30]
    assert_like_forward(first[0], model, exact, seq, 8)
    assert_like_forward(second[0], model, exact, seq, 19)
    assert_like_forward(torch.stack(steps), model, exact, seq, slice(20, None))


def test_batched_rows_decode_independently(model, exact):
    """Several rows of different lengths in one cache: a batched prefill (some rows continuing) and batched
    decode give each row the logits of its own full forward."""
    seqs = [prompt(n, seed=n) for n in (5, 17, 11)]
    cache = KVCache.for_model(model, batch_size=3, max_seq_len=32)
    with ops.backend("reference"):
        model.prefill([seqs[0][:2], seqs[2][:6]], cache, rows=[0, 2])           # row 1 starts empty
        last = model.prefill([seqs[0][2:], seqs[1][:-1], seqs[2][6:-1]], cache)
        step = model.decode_step(torch.tensor([7, seqs[1][-1], seqs[2][-1]]), cache)
    assert cache.lengths.tolist() == [6, 17, 11]
    assert_like_forward(last[0], model, exact, seqs[0])
    assert_like_forward(step[0], model, exact, seqs[0] + [7])
    assert_like_forward(step[1], model, exact, seqs[1])
    assert_like_forward(step[2], model, exact, seqs[2])


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
    expected = torch.softmax(logits[0] / 0.7, -1)
    spread = (expected * (1 - expected) / 20000).sqrt()      # a frequency's standard deviation over 20000 draws
    assert ((counts - expected).abs() <= 4 * spread + 1 / 20000).all(), (counts, expected)
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
    with pytest.raises(ValueError, match="temperature must be >= 0, got nan"):
        SamplingParams(temperature=float("nan"))
    with pytest.raises(ValueError, match="presence_penalty must be a finite number, got nan"):
        SamplingParams(presence_penalty=float("nan"))


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


# ---------------------------------------------------------------------------------------------- generate_completions
def streamed(model, ids, n):
    """Greedy continuation by the other loop (the chat's stream, op by op): the oracle for the batched one."""
    gen = Generator(model, max_seq_len=len(ids) + n, fast_decode=False)
    gen.append(ids)
    return list(gen.stream(n, SamplingParams(temperature=0)))


def test_completions_equal_generate_and_the_stream(model):
    prompts = [prompt(n, seed=40 + n) for n in (9, 2, 14)]
    done = generate_completions(model, prompts, 12, **NO_STOP)
    assert done == [Completion(streamed(model, p, 12), 12, "length", None) for p in prompts]
    assert [p + c.tokens for p, c in zip(prompts, done)] == model.generate(prompts, 12, **NO_STOP)


def test_completions_per_row_budgets_and_stop_ids(model):
    prompts = [prompt(n, seed=50 + n) for n in (5, 11, 3)]
    free = [streamed(model, p, 10) for p in prompts]
    done = generate_completions(model, prompts, [10, 4, 7], **NO_STOP)
    assert [c.tokens for c in done] == [free[0], free[1][:4], free[2][:7]]
    assert [(c.generated_tokens, c.finish_reason) for c in done] == [(10, "length"), (4, "length"), (7, "length")]
    stops = [[free[0][3]], [], [free[2][1], 999]]           # a stop list per row (the second row has none)
    done = generate_completions(model, prompts, 10, stop_token_ids=stops)
    ends = [free[0].index(free[0][3]) + 1, 10, free[2].index(free[2][1]) + 1]
    assert [c.tokens for c in done] == [f[:n] for f, n in zip(free, ends)]
    assert [c.finish_reason for c in done] == ["stop", "length", "stop"]
    assert [c.generated_tokens for c in done] == ends


def test_thinking_budget_forces_its_stop_ids_after_max_tokens(model):
    """Rows whose think block is opened by the prompt, by the model, or closed by the model before the budget."""
    free_prompt = prompt(6, seed=60)
    free = streamed(model, free_prompt, 16)
    end = next(t for t in range(3, 256) if t not in free and t not in free_prompt)   # never produced
    start = next(t for t in range(3, 256) if t not in free and t not in free_prompt and t != end)
    forced = [11, end]
    budget = ThinkingBudget(start_id=start, end_id=end, max_tokens=4, stop_ids=forced)
    opened = free_prompt + [start]                           # the template opened the block
    opened_free = streamed(model, opened, 16)
    done = generate_completions(model, [opened, free_prompt], 16, thinking_budget=[budget, None], **NO_STOP)
    row = done[0]
    assert row.tokens[:4] == opened_free[:4] and row.tokens[4:6] == forced and row.forced_at == 4
    assert row.tokens[6:] == streamed(model, opened + row.tokens[:6], 12)   # then it answers, unforced
    assert (row.generated_tokens, row.finish_reason, len(row.tokens)) == (16, "length", 18)
    assert done[1] == Completion(free, 16, "length", None)  # a row without a budget is unaffected

    k = next(i for i, t in enumerate(free) if t not in free_prompt and t not in free[:i])   # the model opens it
    by_model = ThinkingBudget(start_id=free[k], end_id=end, max_tokens=3, stop_ids=forced)
    row = generate_completions(model, [free_prompt], 16, thinking_budget=by_model, **NO_STOP)[0]
    assert row.forced_at == k + 1 + 3 and row.tokens[:k + 4] == free[:k + 4]
    assert row.tokens[k + 4:k + 6] == forced and row.generated_tokens == 16
    closes = ThinkingBudget(start_id=start, end_id=opened_free[2], max_tokens=5, stop_ids=forced)
    row = generate_completions(model, [opened], 16, thinking_budget=closes, **NO_STOP)[0]
    assert row == Completion(opened_free, 16, "length", None)   # </think> came at token 3: never forced


def test_thinking_budget_of_zero_and_stop_ids_among_the_forced(model):
    p = prompt(5, seed=61) + [200]
    budget = ThinkingBudget(start_id=200, end_id=201, max_tokens=0, stop_ids=[7, 8, 9])
    row = generate_completions(model, [p], 6, thinking_budget=budget, stop_token_ids=[8])[0]
    assert row == Completion([7, 8], 0, "stop", 0)           # forced at once; the forced 8 ends the row


def test_completions_seeded_sampling_is_reproducible(model):
    prompts = [prompt(n, seed=70 + n) for n in (4, 9)]
    sampling = [SamplingParams(temperature=1.0, top_k=50, seed=s) for s in (1, 1, 2)]
    a, b, c = (generate_completions(model, prompts, 20, s, **NO_STOP) for s in sampling)
    assert a == b and a != c


def test_completions_errors(model):
    with pytest.raises(ValueError, match=r"max_new_tokens: 2 entries for 3 prompts"):
        generate_completions(model, [[1], [2], [3]], [4, 4])
    with pytest.raises(ValueError, match=r"max_new_tokens must be an int >= 1"):
        generate_completions(model, [[1]], 0)
    budget = ThinkingBudget(start_id=200, end_id=201, max_tokens=4, stop_ids=[7, 8])
    with pytest.raises(ValueError, match=r"prompt 1 \(100 tokens\) \+ max_new_tokens \(27\) \+ the thinking "
                                         r"budget's stop_ids = 129 exceeds the model's context of 128"):
        generate_completions(model, [[1], prompt(100, seed=0)], [4, 27], thinking_budget=budget)
    with pytest.raises(ValueError, match="at least one stop id"):
        ThinkingBudget(start_id=200, end_id=201, max_tokens=4, stop_ids=[])


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
        if gen._step is not None:
            real_step(*args)
        raise KeyboardInterrupt
    with monkeypatch.context() as patch:
        if gen._step is None:
            patch.setattr(model.model.layers[-1], "forward", interrupted)
        else:
            real_step = gen._step.step
            patch.setattr(gen._step, "step", interrupted)
        with pytest.raises(KeyboardInterrupt):
            next(stream)
    assert calls["n"] == 1 and gen.length == 6 + 4
    got += list(gen.stream(6, SamplingParams(temperature=0)))
    assert got == expected


def test_batched_generator_append(model, exact):
    seqs = [prompt(7, seed=20), prompt(3, seed=21)]
    gen = Generator(model, max_seq_len=32, batch_size=2)
    logits = gen.append(seqs)
    assert gen.length == [7, 3]
    assert_like_forward(logits[1], model, exact, seqs[1])
    logits = gen.append([[5, 6], []])                          # only row 0 grows
    assert gen.length == [9, 3]
    assert_like_forward(logits[0], model, exact, seqs[0] + [5, 6])
    assert_like_forward(logits[1], model, exact, seqs[1])
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


def test_decode_step_never_syncs_with_the_host(model, exact, monkeypatch):
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
    assert_like_forward(logits[0], model, exact, seqs[0] + [4])
    assert_like_forward(logits[1], model, exact, seqs[1] + [5])


EXAMPLES = int(os.environ.get("QWEN3MINI_MODEL_EXAMPLES", "8"))


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_any_chunking_of_any_rows_matches_full_forward(model, exact, data):
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
        assert_like_forward(last[r], model, exact, seq)
