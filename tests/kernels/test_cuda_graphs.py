"""GPU tests of the CUDA-graph decode step (qwen3mini/cuda_graphs.py): replayed steps must equal eager steps,
and generation through it must equal generation launching the same steps eagerly.

Small random models (dense and MoE) with head_dim 64, so that every op of a decode step runs a CUDA kernel and
the step is capturable. Skipped without a GPU.
"""
import copy
import dataclasses

import pytest
import torch

from kernel_checks import assert_within_tolerance
from qwen3mini.config import PRESETS

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]


def small_model(preset):
    from qwen3mini.model import Qwen3ForCausalLM
    config = dataclasses.replace(PRESETS[preset], num_hidden_layers=2, vocab_size=1024)
    torch.manual_seed(0)
    model = Qwen3ForCausalLM(config).to("cuda")
    for p in model.parameters():
        p.requires_grad_(False)
        p.data = p.data.to(torch.bfloat16)
    return model.eval()


@pytest.mark.parametrize("fused", [False, True])
@pytest.mark.parametrize("preset", ["small", "small-moe"])
def test_graph_steps_match_eager_steps(preset, fused):
    """Replays of the captured step equal the same step launched eagerly: the op path (fused=False), or the
    backend's fused step where it has one (the dense model; the MoE one falls back to the op path)."""
    from qwen3mini import ops
    from qwen3mini.cuda_graphs import GraphedDecodeStep
    from qwen3mini.generation import KVCache
    model = small_model(preset)
    prompts = [[5, 6, 7, 8, 9], [1, 2], [3] * 40]
    caches = [KVCache.for_model(model, 3, 64) for _ in range(2)]
    tokens = [model.prefill(prompts, cache).argmax(-1) for cache in caches][0]
    decoder = GraphedDecodeStep(model, caches[1], fused=fused)
    fused_eager = ops.decode_step(model, caches[0]) if fused else None
    assert (fused_eager is not None) == (fused and preset == "small")
    for step in range(6):  # both fed the same tokens, so a near-tie in argmax cannot make them diverge
        eager = (model.decode_step(tokens, caches[0]) if fused_eager is None else fused_eager.step(tokens)).clone()
        graphed = decoder.step(tokens).clone()
        torch.testing.assert_close(graphed, eager, msg=lambda m: f"step {step}: graph logits differ: {m}")
        tokens = eager.argmax(-1)
    assert torch.equal(caches[0].lengths, caches[1].lengths)
    torch.testing.assert_close(caches[1].k, caches[0].k)
    torch.testing.assert_close(caches[1].v, caches[0].v)
    # a smaller batch (rows 0..1) gets its own graph and leaves row 2 alone
    before = caches[1].lengths.tolist()
    decoder.step(tokens[:2])
    assert caches[1].lengths.tolist() == [before[0] + 1, before[1] + 1, before[2]]


def test_bucket_padding_rows_are_left_alone():
    """3 rows on a 4-row cache replay the 4-row graph; row 3 rides along as padding and keeps its length."""
    from qwen3mini import ops
    from qwen3mini.cuda_graphs import GraphedDecodeStep, _row_view
    from qwen3mini.generation import KVCache
    model = small_model("small")
    prompts = [[5, 6, 7], [1, 2], [3] * 9, [4] * 5]
    caches = [KVCache.for_model(model, 4, 32) for _ in range(2)]
    tokens = [model.prefill(prompts, cache).argmax(-1) for cache in caches][0][:3]
    decoder = GraphedDecodeStep(model, caches[1], fused=False)
    exact_model = copy.deepcopy(model).double()            # the exact answer for these weights and tokens
    exact_cache = KVCache.for_model(exact_model, 4, 32)
    with ops.backend("reference"):
        exact_model.prefill(prompts, exact_cache)
    assert decoder.bucket(3) == 4 and decoder.bucket(1) == 1 and decoder.bucket(2) == 2
    k_before = caches[1].k[:, 3, :5].clone()
    for step in range(3):
        eager = model.decode_step(tokens, _row_view(caches[0], 3))
        graphed = decoder.step(tokens)
        with ops.backend("reference"):
            exact = exact_model.decode_step(tokens, _row_view(exact_cache, 3))
        assert graphed.shape == eager.shape
        # 3 vs 4 rows may pick different cuBLAS kernels (another summation order): the tolerance rule of
        # csrc/README.md, with the eager step as the reference's rounding
        assert_within_tolerance(graphed, exact, eager, f"step {step}: graph logits")
        tokens = eager.argmax(-1)
    assert caches[1].lengths.tolist() == caches[0].lengths.tolist() == [6, 5, 12, 5]
    assert torch.equal(caches[1].k[:, 3, :5], k_before)


@pytest.mark.parametrize("fused", [False, True])
def test_greedy_step_is_the_argmax_of_step(fused):
    """greedy_step's argmax inside the graph (picked in the fused step's LM head kernel, or the op path's
    captured argmax) is step(...).argmax(-1), here over 3 rows of a 4-row cache (a padded bucket)."""
    from qwen3mini.cuda_graphs import GraphedDecodeStep
    from qwen3mini.generation import KVCache
    model = small_model("small")
    prompts = [[5, 6, 7], [1, 2], [3] * 9, [4] * 5]
    caches = [KVCache.for_model(model, 4, 32) for _ in range(2)]
    tokens = [model.prefill(prompts, cache).argmax(-1) for cache in caches][0][:3]
    by_logits, greedy = (GraphedDecodeStep(model, cache, fused=fused) for cache in caches)
    expected = tokens
    for step in range(5):
        expected = by_logits.step(expected).argmax(-1)
        tokens = greedy.greedy_step(tokens)
        assert torch.equal(tokens, expected), f"step {step}: {tokens.tolist()} != {expected.tolist()}"
    assert caches[0].lengths.tolist() == caches[1].lengths.tolist() == [8, 7, 14, 5]
    assert type(greedy.graphs[4, True][3]).__name__ == ("CudaDecodeStep" if fused else "NoneType")


def completed(model, prompts, max_new_tokens, cuda_graphs=True, **kwargs):
    """generate_completions as prompt + tokens lists (the form graph-captured generation used to return)."""
    from qwen3mini.generation import generate_completions
    done = generate_completions(model, prompts, max_new_tokens, cuda_graphs=cuda_graphs, **kwargs)
    return [p + c.tokens for p, c in zip(prompts, done)]


def test_graphed_generation_matches_generate():
    """The batched loop over graph replays (greedy: the argmax inside the graph) equals the same loop launching
    the backend's steps eagerly."""
    model = small_model("small")
    prompts = [[5, 6, 7, 8, 9], [1, 2], [3] * 40]
    ours = completed(model, prompts, 12, stop_token_ids=[])
    expected = completed(model, prompts, 12, cuda_graphs=False, stop_token_ids=[])
    assert ours == expected
    # a budget per row: finished rows are retired (cache length reset each step), the others unaffected
    ours = completed(model, prompts, [12, 3, 7], stop_token_ids=[])
    assert ours == [row[:len(p) + n] for row, p, n in zip(expected, prompts, [12, 3, 7])]
    with pytest.raises(ValueError, match="max_new_tokens"):
        completed(model, prompts, [12, 3], stop_token_ids=[])


def test_sampled_completions_with_stops_and_budgets_match_the_eager_loop():
    """Sampling (a seeded generator on the GPU), per-row stop ids and a thinking budget, rows finishing at
    different steps (past the host's every-16-steps look): graph replays give the eager loop's completions."""
    from qwen3mini.generation import SamplingParams, ThinkingBudget, generate_completions
    model = small_model("small")
    prompts = [[5, 6, 7, 8, 9], [1, 2], [3] * 40, [9, 8, 300]]
    free = completed(model, prompts, 40, cuda_graphs=False, stop_token_ids=[])
    stops = [[free[0][5 + 20]], [], [free[2][40 + 2]], []]
    # end_id 1024 is outside the vocabulary: never sampled, so the budget surely hits after 5 tokens
    budget = ThinkingBudget(start_id=300, end_id=1024, max_tokens=5, stop_ids=[301, 7])
    sampling = SamplingParams(temperature=0.8, top_k=50, top_p=0.9, seed=0)
    runs = [generate_completions(model, prompts, [40, 33, 40, 25], sampling, stops, [None, None, None, budget],
                                 cuda_graphs=graphs) for graphs in (True, False)]
    assert runs[0] == runs[1]
    assert runs[0][3].forced_at == 5 and runs[0][3].tokens[5:7] == [301, 7] and len(runs[0][3].tokens) == 27
