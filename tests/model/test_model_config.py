"""Qwen3Config: presets against the table of docs/qwen3.md §2.1, both config.json spellings, transformers agreement."""
import json

import pytest
import torch

from qwen3mini.config import PRESETS, Qwen3Config
from qwen3mini.model import Qwen3ForCausalLM
from qwen3mini.rope import rope_inv_freq

# docs/qwen3.md §2.1: (total, non-embedding, active) in billions, KV cache KiB/token in bf16
RELEASED = {
    "Qwen3-0.6B": (0.596, 0.440, None, 112), "Qwen3-1.7B": (1.721, 1.409, None, 112),
    "Qwen3-4B": (4.022, 3.634, None, 144), "Qwen3-8B": (8.191, 6.946, None, 144),
    "Qwen3-14B": (14.768, 13.212, None, 160), "Qwen3-32B": (32.762, 31.206, None, 256),
    "Qwen3-30B-A3B": (30.532, 29.910, 3.353, 96), "Qwen3-235B-A22B": (235.094, 233.849, 22.191, 188),
}


@pytest.mark.parametrize("name", sorted(RELEASED))
def test_released_presets_match_spec_table(name):
    total, non_embedding, active, kv_kib = RELEASED[name]
    config = PRESETS[name]
    n = config.num_parameters()
    assert round(n["total"] / 1e9, 3) == total
    assert round(n["non_embedding"] / 1e9, 3) == non_embedding
    if active is not None:
        assert round(n["active"] / 1e9, 3) == active
    assert config.kv_cache_bytes_per_token(torch.bfloat16) == kv_kib * 1024
    assert config.vocab_size == 151936 and config.head_dim == 128 and config.rope_theta == 1e6


@pytest.mark.parametrize("name", ["tiny", "tiny-moe", "small", "small-moe"])
def test_parameter_count_matches_a_built_model(name):
    config = PRESETS[name]
    with torch.device("meta"):
        model = Qwen3ForCausalLM(config)
    assert sum(p.numel() for p in model.parameters()) == config.num_parameters()["total"]


@pytest.mark.parametrize("name", ["Qwen3-0.6B", "Qwen3-30B-A3B", "tiny-moe"])
@pytest.mark.parametrize("spelling", ["original", "new"])
def test_transformers_reads_our_config_the_same(name, spelling, tmp_path):
    """Write config.json in either spelling; transformers and Qwen3Config.load must agree on every field."""
    from transformers import AutoConfig
    config = PRESETS[name]
    config.save(tmp_path, spelling=spelling)
    hf = AutoConfig.from_pretrained(tmp_path)
    assert hf.model_type == config.model_type
    for field in ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads", "num_key_value_heads",
                  "head_dim", "max_position_embeddings", "tie_word_embeddings", "rms_norm_eps"):
        assert getattr(hf, field) == getattr(config, field), field
    assert hf.rope_parameters["rope_theta"] == config.rope_theta
    assert str(hf.dtype).replace("torch.", "") == config.torch_dtype
    if config.is_moe:
        assert hf.num_experts == config.num_experts and hf.norm_topk_prob == config.norm_topk_prob
    assert Qwen3Config.load(tmp_path) == config


def test_both_spellings_parse_to_the_same_config():
    yarn = {"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 32768}
    base = dict(model_type="qwen3_moe", vocab_size=1000, hidden_size=64, intermediate_size=128,
                num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2, head_dim=16,
                max_position_embeddings=131072, num_experts_per_tok=2, moe_intermediate_size=32,
                norm_topk_prob=True)
    original = dict(base, rope_theta=1e6, rope_scaling=dict(yarn), torch_dtype="bfloat16", num_experts=8)
    new = dict(base, rope_parameters=dict(yarn, rope_theta=1e6), dtype="bfloat16", num_local_experts=8)
    a, b = Qwen3Config.from_hf_dict(original), Qwen3Config.from_hf_dict(new)
    assert a == b
    assert a.rope_scaling == yarn and a.num_experts == 8 and a.torch_dtype == "bfloat16"
    legacy = dict(original, rope_scaling={"type": "yarn", "factor": 4.0, "original_max_position_embeddings": 32768})
    assert Qwen3Config.from_hf_dict(legacy) == a
    assert Qwen3Config.from_hf_dict(a.to_hf_dict("new")) == a == Qwen3Config.from_hf_dict(a.to_hf_dict())


def test_moe_config_defaults_follow_transformers():
    """A qwen3_moe config.json without norm_topk_prob means False (HF's class default, docs/qwen3.md §2.3)."""
    d = dict(model_type="qwen3_moe", hidden_size=64, num_attention_heads=4, num_key_value_heads=2, num_experts=4,
             num_experts_per_tok=2)
    assert Qwen3Config.from_hf_dict(d).norm_topk_prob is False
    assert Qwen3Config.from_hf_dict(d).head_dim == 128 // 8          # hidden / heads = 16 when absent
    assert Qwen3Config.from_hf_dict(dict(d, head_dim=None)).head_dim == 16


@pytest.mark.parametrize("rope", [
    {"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 32768},
    {"rope_type": "yarn", "factor": 2.0, "original_max_position_embeddings": 32768},      # != max_pos / orig
    {"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 32768, "attention_factor": 1.1},
    {"rope_type": "yarn", "factor": 8.0, "original_max_position_embeddings": 4096, "beta_fast": 16,
     "beta_slow": 2, "truncate": False},
    {"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 32768, "mscale": 1.0,
     "mscale_all_dim": 0.5},
    None,
])
def test_rope_frequencies_match_transformers(rope):
    """inv_freq and the attention factor equal transformers' (5.x semantics of `factor`, docs/qwen3.md §5)."""
    from transformers import Qwen3Config as HFConfig
    from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS
    from transformers.models.qwen3.modeling_qwen3 import Qwen3RotaryEmbedding
    params = {"rope_type": "default", "rope_theta": 1e6} if rope is None else dict(rope, rope_theta=1e6)
    hf_config = HFConfig(head_dim=128, hidden_size=1024, num_attention_heads=16, num_key_value_heads=8,
                         max_position_embeddings=131072,
                         rope_parameters=params)
    if rope is None:
        expected, expected_factor = Qwen3RotaryEmbedding.compute_default_rope_parameters(hf_config)
    else:
        expected, expected_factor = ROPE_INIT_FUNCTIONS["yarn"](hf_config, "cpu")
    ours = Qwen3Config.from_hf_dict(json.loads(json.dumps(hf_config.to_dict())))
    inv_freq, factor = rope_inv_freq(ours)
    assert torch.equal(inv_freq, expected.float())
    assert factor == pytest.approx(expected_factor, rel=1e-12)


def test_qwen3_yarn_numbers_from_spec():
    """Spec §5: Qwen3 with factor 4 over 32768: attention factor 1 + 0.1 ln 4; dims < 23 kept, >= 40 / 4."""
    config = Qwen3Config(rope_scaling={"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 32768},
                         max_position_embeddings=131072)
    plain, _ = rope_inv_freq(Qwen3Config())
    inv_freq, factor = rope_inv_freq(config)
    assert factor == pytest.approx(1.1386294, abs=1e-7)
    assert torch.equal(inv_freq[:24], plain[:24])
    assert torch.allclose(inv_freq[40:], plain[40:] / 4)


def test_config_errors(tmp_path):
    with pytest.raises(ValueError, match="unsupported model_type 'qwen2'"):
        Qwen3Config.from_hf_dict({"model_type": "qwen2"})
    with pytest.raises(ValueError, match="unsupported rope_type 'llama3'"):
        Qwen3Config.from_hf_dict({"model_type": "qwen3", "hidden_size": 64, "num_attention_heads": 4,
                                  "num_key_value_heads": 2, "rope_scaling": {"rope_type": "llama3", "factor": 8.0}})
    with pytest.raises(ValueError, match="num_attention_heads=6 is not a multiple of num_key_value_heads=4"):
        Qwen3Config(num_attention_heads=6, num_key_value_heads=4)
    with pytest.raises(FileNotFoundError, match="missing config file"):
        Qwen3Config.load(tmp_path)


def test_describe_mentions_sizes():
    text = PRESETS["Qwen3-30B-A3B"].describe()
    assert "30.532B" in text and "active 3.353B" in text and "96.0 KiB/token" in text


@pytest.mark.parametrize("text", ['{"model_type": "qwen3",', "\xff\xfe", "[1, 2]"])
def test_config_that_is_not_a_json_object_names_the_file(text, tmp_path):
    (tmp_path / "config.json").write_bytes(text.encode("latin-1"))
    with pytest.raises(ValueError, match=f"{tmp_path / 'config.json'}"):
        Qwen3Config.load(tmp_path)
