"""GPU tests of the CUDA-graph decoder (qwen3mini/cuda_graphs.py): replayed steps must equal eager steps.

Small random models (dense and MoE) with head_dim 64, so that every op of a decode step runs a CUDA kernel and
the step is capturable. Skipped without a GPU.
"""
import dataclasses

import pytest
import torch

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


@pytest.mark.parametrize("preset", ["small", "small-moe"])
def test_graph_steps_match_eager_steps(preset):
    from qwen3mini.cuda_graphs import GraphDecoder
    from qwen3mini.generation import KVCache
    model = small_model(preset)
    prompts = [[5, 6, 7, 8, 9], [1, 2], [3] * 40]
    caches = [KVCache.for_model(model, 3, 64) for _ in range(2)]
    tokens = [model.prefill(prompts, cache).argmax(-1) for cache in caches][0]
    decoder = GraphDecoder(model, caches[1])
    for step in range(6):  # both fed the same tokens, so a near-tie in argmax cannot make them diverge
        eager = model.decode_step(tokens, caches[0])
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


def test_generate_graphed_matches_generate():
    from qwen3mini.cuda_graphs import generate_graphed
    model = small_model("small")
    prompts = [[5, 6, 7, 8, 9], [1, 2], [3] * 40]
    ours = generate_graphed(model, prompts, 12, stop_token_ids=[])
    expected = model.generate(prompts, 12, stop_token_ids=[])
    assert ours == expected
