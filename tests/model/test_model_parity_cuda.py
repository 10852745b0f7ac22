"""Parity with transformers on the GPU, every op on the CUDA backend (skipped without a GPU).

The configs use head_dim 64 and 128 and sizes that are multiples of 8, so that every op of the model runs a
CUDA kernel (other shapes fall back to the reference ops). The tolerance is the rule per token of
test_model_parity.test_bf16_logits_match (qwen3mini/ops/tolerance.py: ours at most twice as far from the exact
answer, transformers in float64 on the same weights, as transformers in bf16, plus a floor), for the full
forward (prefill kernels) and for decoding through the KV cache (decode kernels).
"""
import pytest
import torch

import qwen3mini
from qwen3mini import ops
from qwen3mini.ops.tolerance import assert_rows_within_tolerance
from hf_fixtures import hf_in_float64, make_hf_model, save_hf_checkpoint

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]

CONFIGS = {
    "dense-d128-gqa2": (False, dict(hidden_size=256, intermediate_size=512, num_attention_heads=4,
                                    num_key_value_heads=2, head_dim=128)),
    "moe-d64-gqa3": (True, dict(hidden_size=192, num_attention_heads=6, num_key_value_heads=2, head_dim=64,
                                moe_intermediate_size=64, num_experts=16, num_experts_per_tok=4)),
}


@pytest.fixture(scope="module", params=sorted(CONFIGS))
def pair(request, tmp_path_factory):
    """(transformers model in bf16 on the GPU, the same in float64, our model in bf16 on the GPU, config name)."""
    moe, overrides = CONFIGS[request.param]
    hf = make_hf_model(moe=moe, seed=7, **overrides)
    directory = save_hf_checkpoint(hf, tmp_path_factory.mktemp(request.param))
    ours = qwen3mini.load_model(directory, device="cuda", dtype=torch.bfloat16)
    hf = hf.to("cuda", torch.bfloat16)
    return hf, hf_in_float64(hf), ours, request.param


def prompts(batch, time, seed):
    return torch.randint(0, 256, (batch, time), generator=torch.Generator().manual_seed(seed)).cuda()


def test_the_cuda_backend_runs_the_model(pair):
    _, _, ours, _ = pair
    with torch.no_grad():
        assert ops.backend_name(ours.model.embed_tokens.weight) == "cuda"


def test_bf16_logits_match_on_gpu(pair):
    hf, exact_hf, ours, name = pair
    ids = prompts(2, 40, seed=1)
    with torch.no_grad():
        expected, exact, got = hf(ids).logits, exact_hf(ids).logits, ours(ids)
    quantiles = (0.5, 0.9) if "moe" in name else (0.5, 0.9, 1.0)
    assert_rows_within_tolerance(got, exact, expected, f"{name} logits per token", quantiles)


def test_cached_decode_logits_match_on_gpu(pair):
    """Prefill + decode steps through the KV cache (the CUDA decode kernels) against transformers' full
    forward over the same tokens, at the bf16 tolerance."""
    from qwen3mini.generation import KVCache
    hf, exact_hf, ours, name = pair
    ids = prompts(3, 24, seed=2)
    cache = KVCache.for_model(ours, 3, 64)
    with torch.no_grad():
        got = [ours.prefill(ids[:, :16], cache)]
        for t in range(16, 24):
            got.append(ours.decode_step(ids[:, t], cache))
        expected, exact = hf(ids).logits[:, 15:], exact_hf(ids).logits[:, 15:]
    assert_rows_within_tolerance(torch.stack(got, dim=1), exact, expected, f"{name} cached decode per token",
                                 (0.5, 0.9))
