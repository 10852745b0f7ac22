"""Weight-only int8 (``load_model(..., quantize="int8")``, qwen3mini/quantize.py): what it stores, how close its
logits stay to the bf16 model's, and the one-line error for a scheme it does not know. The quantised op
itself is in the conformance suite (tests/kernels, ``quantized_linear``); the C++ decode step on int8 weights
equals the op path in test_decoders.py."""
import dataclasses

import pytest
import torch

import qwen3mini
from qwen3mini.checkpoint import save_model
from qwen3mini.config import PRESETS
from qwen3mini.generation import KVCache, fast_decode_step
from qwen3mini.model import Qwen3ForCausalLM
from qwen3mini.quantize import QuantizedLinear, quantize_model, quantize_rows

# The stated tolerance of int8 against bf16, last-token logits of a random Qwen3-0.6B-shaped model: the cosine
# of the two logit vectors, and the largest difference relative to the largest bf16 logit.
MIN_COSINE = 0.998
MAX_RELATIVE_ERROR = 0.06


def test_rows_are_quantised_symmetrically_per_output_feature():
    weight = torch.randn(5, 33) * torch.tensor([1e-3, 0.1, 1.0, 30.0, 0.0])[:, None]
    q, scale = quantize_rows(weight)
    assert q.dtype == torch.int8 and scale.dtype == torch.float32 and scale.shape == (5,)
    assert q[:4].abs().amax(dim=1).tolist() == [127] * 4                  # each row uses the whole range
    error = (q.float() * scale[:, None] - weight).abs()
    assert (error <= scale[:, None] / 2 * (1 + 1e-6)).all()              # round to nearest
    assert q[4].eq(0).all()                                               # a zero row stays zero


def logits_after(model, prompt):
    """The last-token logits of ``prompt``: prefill of all but the last token, then the one-call decode step."""
    cache = KVCache.for_model(model, 1, len(prompt))
    model.prefill([prompt[:-1]], cache)
    return fast_decode_step(model, cache).step(torch.tensor(prompt[-1:])).float()[0]


@torch.inference_mode()
def test_int8_logits_of_a_0p6b_shaped_model_stay_close_to_bf16():
    torch.manual_seed(0)
    config = PRESETS["Qwen3-0.6B"]
    model = Qwen3ForCausalLM(config).to(torch.bfloat16)
    prompt = torch.randint(0, config.vocab_size, (16,), generator=torch.Generator().manual_seed(1)).tolist()
    bf16 = logits_after(model, prompt)
    int8 = logits_after(quantize_model(model, "int8"), prompt)
    cosine = torch.nn.functional.cosine_similarity(bf16, int8, dim=0).item()
    relative_error = ((int8 - bf16).abs().max() / bf16.abs().max()).item()
    assert cosine >= MIN_COSINE and relative_error <= MAX_RELATIVE_ERROR, (cosine, relative_error)


def test_load_model_quantizes_the_projections_and_the_head(tmp_path):
    config = dataclasses.replace(PRESETS["tiny"], tie_word_embeddings=True)
    torch.manual_seed(0)
    save_model(Qwen3ForCausalLM(config).to(torch.bfloat16), tmp_path)
    model = qwen3mini.load_model(tmp_path, quantize="int8")
    quantised = {name for name, module in model.named_modules() if isinstance(module, QuantizedLinear)}
    assert quantised == {"lm_head"} | {f"model.layers.{i}.{p}" for i in range(config.num_hidden_layers) for p in
                                       ("self_attn.qkv_proj", "self_attn.o_proj", "mlp.gate_up_proj", "mlp.down_proj")}
    assert model.model.embed_tokens.weight.dtype == torch.bfloat16       # the lookup stays in the model dtype
    with pytest.raises(ValueError, match=r"^quantize='int4': expected one of int8 \(or None\)$"):
        qwen3mini.load_model(tmp_path, quantize="int4")
    with pytest.raises(ValueError, match=r"^quantize='int8': the model's weights are quantised already$"):
        quantize_model(model, "int8")
