"""Checkpoint I/O: layouts transformers writes and reads, config spellings, and every error message."""
import json
import os
import shutil

import pytest
import torch
from safetensors.torch import load_file, save_file

import qwen3mini
from qwen3mini import ops
from qwen3mini.checkpoint import save_model
from qwen3mini.config import PRESETS, Qwen3Config
from qwen3mini.model import Qwen3ForCausalLM
from hf_fixtures import make_hf_model, save_hf_checkpoint

IDS = torch.randint(0, 256, (2, 12), generator=torch.Generator().manual_seed(0))


def relative_error(a, b):
    return ((a.float() - b.float()).norm() / b.float().norm()).item()


@pytest.fixture(scope="module")
def dense_dir(tmp_path_factory):
    hf = make_hf_model(seed=1)
    return save_hf_checkpoint(hf, tmp_path_factory.mktemp("dense"), spelling="original"), hf


@pytest.fixture(scope="module")
def moe_dir(tmp_path_factory):
    hf = make_hf_model(moe=True, seed=2)
    return save_hf_checkpoint(hf, tmp_path_factory.mktemp("moe")), hf


def copy_checkpoint(src, tmp_path):
    dst = tmp_path / "ckpt"
    shutil.copytree(src, dst)
    return dst


def logits(model, ids=IDS):
    with torch.no_grad(), ops.backend("reference"):
        return model(ids)


# ---------------------------------------------------------------------------------------------- round trips
@pytest.mark.parametrize("kind", ["dense", "moe"])
@pytest.mark.parametrize("spelling,shard", [("original", None), ("new", 20_000)])
def test_save_then_transformers_loads_same_logits(kind, spelling, shard, dense_dir, moe_dir, tmp_path):
    from transformers import AutoModelForCausalLM
    directory, hf = dense_dir if kind == "dense" else moe_dir
    model = qwen3mini.load_model(directory, dtype=torch.float32)
    save_model(model, tmp_path / "out", max_shard_size=shard, spelling=spelling)
    if shard:
        assert os.path.isfile(tmp_path / "out" / "model.safetensors.index.json")
        assert not os.path.exists(tmp_path / "out" / "model.safetensors")
    reloaded = AutoModelForCausalLM.from_pretrained(tmp_path / "out", attn_implementation="eager",
                                                    dtype=torch.float32)
    with torch.no_grad():
        expected = hf(IDS).logits
        assert relative_error(reloaded(IDS).logits, expected) < 1e-6
    # and back into qwen3mini
    assert relative_error(logits(qwen3mini.load_model(tmp_path / "out")), expected) < 1e-4


def test_save_bf16_keeps_dtype_in_config(dense_dir, tmp_path):
    model = qwen3mini.load_model(dense_dir[0], dtype=torch.float32)
    save_model(model, tmp_path, dtype=torch.bfloat16)
    assert json.loads((tmp_path / "config.json").read_text())["torch_dtype"] == "bfloat16"
    assert qwen3mini.load_model(tmp_path).dtype == torch.bfloat16      # default: the checkpoint's dtype


def test_tied_checkpoint_with_redundant_lm_head(tmp_path):
    """Tied checkpoints may carry a copy of lm_head.weight (Qwen3-0.6B does, docs/qwen3.md §1.1): it is ignored."""
    hf = make_hf_model(seed=3, tie_word_embeddings=True)
    directory = save_hf_checkpoint(hf, tmp_path / "tied")
    path = os.path.join(directory, "model.safetensors")
    tensors = load_file(path)
    assert "lm_head.weight" not in tensors
    tensors["lm_head.weight"] = tensors["model.embed_tokens.weight"].clone()
    save_file(tensors, path, metadata={"format": "pt"})
    model = qwen3mini.load_model(directory, dtype=torch.float32)
    assert model.lm_head is None
    with torch.no_grad():
        assert relative_error(logits(model), hf(IDS).logits) < 1e-4


def test_fused_v5_expert_tensors_on_disk(moe_dir, tmp_path):
    """transformers 5.x's in-memory layout (mlp.experts.gate_up_proj / down_proj) is accepted on disk too."""
    directory, hf = moe_dir
    tensors = load_file(os.path.join(directory, "model.safetensors"))
    config = Qwen3Config.load(directory)
    for layer in range(config.num_hidden_layers):
        prefix = f"model.layers.{layer}.mlp.experts"
        gate_up, down = [], []
        for e in range(config.num_experts):
            gate_up.append(torch.cat([tensors.pop(f"{prefix}.{e}.gate_proj.weight"),
                                      tensors.pop(f"{prefix}.{e}.up_proj.weight")]))
            down.append(tensors.pop(f"{prefix}.{e}.down_proj.weight"))
        tensors[f"{prefix}.gate_up_proj"], tensors[f"{prefix}.down_proj"] = torch.stack(gate_up), torch.stack(down)
    out = tmp_path / "fused"
    out.mkdir()
    shutil.copy(os.path.join(directory, "config.json"), out)
    save_file(tensors, out / "model.safetensors", metadata={"format": "pt"})
    with torch.no_grad():
        assert relative_error(logits(qwen3mini.load_model(out, dtype=torch.float32)), hf(IDS).logits) < 1e-4


def test_loaded_model_has_no_meta_tensors(dense_dir):
    model = qwen3mini.load_model(dense_dir[0], dtype=torch.bfloat16)
    for name, tensor in [*model.named_parameters(), *model.named_buffers()]:
        assert tensor.device.type == "cpu", name
    assert all(p.dtype == torch.bfloat16 for p in model.parameters())
    assert model.model.rotary.inv_freq.dtype == torch.float32


def test_saving_over_the_loaded_checkpoint(dense_dir, tmp_path):
    """Parameters may be memory-mapped from the file they came from: saving over it must not corrupt them."""
    directory = copy_checkpoint(dense_dir[0], tmp_path)
    model = qwen3mini.load_model(directory, dtype=torch.float32)
    before = logits(model)
    with torch.no_grad():
        model.model.norm.weight.mul_(2.0)
    save_model(model, directory)
    with torch.no_grad():
        model.model.norm.weight.div_(2.0)
    assert torch.equal(logits(model), before)
    reloaded = qwen3mini.load_model(directory, dtype=torch.float32)
    assert torch.allclose(reloaded.model.norm.weight, 2 * model.model.norm.weight)


def test_a_save_that_fails_midway_leaves_the_previous_checkpoint(dense_dir, tmp_path, monkeypatch):
    """Saving sharded over a single-file checkpoint, the second shard fails: the old checkpoint still loads."""
    import qwen3mini.checkpoint as checkpoint
    directory = copy_checkpoint(dense_dir[0], tmp_path)
    model = qwen3mini.load_model(directory, dtype=torch.float32)
    before = logits(model)
    calls = []

    def failing_save_file(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise OSError("disk full")
        return save_file(*args, **kwargs)
    monkeypatch.setattr(checkpoint, "save_file", failing_save_file)
    with torch.no_grad():
        model.model.norm.weight.mul_(2.0)
    with pytest.raises(OSError, match="disk full"):
        save_model(model, directory, max_shard_size=20_000)
    assert torch.equal(logits(qwen3mini.load_model(directory, dtype=torch.float32)), before)
    monkeypatch.undo()
    save_model(model, directory, max_shard_size=20_000)             # sharded now: the single file is gone
    assert not os.path.exists(directory / "model.safetensors")
    save_model(model, directory)                                     # single again: index and shards are gone
    assert sorted(p.name for p in directory.glob("model*")) == ["model.safetensors"]
    assert torch.equal(logits(qwen3mini.load_model(directory, dtype=torch.float32)), logits(model))


def test_fresh_model_roundtrip_from_preset(tmp_path):
    model = Qwen3ForCausalLM(PRESETS["tiny-moe"])
    save_model(model, tmp_path)
    reloaded = qwen3mini.load_model(tmp_path)
    ids = torch.randint(0, 512, (1, 8))
    assert torch.equal(logits(reloaded, ids), logits(model, ids))


# ---------------------------------------------------------------------------------------------- errors
def test_error_missing_directory(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        qwen3mini.load_model(tmp_path / "nope" / "deeper")


def test_error_missing_config(dense_dir, tmp_path):
    directory = copy_checkpoint(dense_dir[0], tmp_path)
    os.remove(directory / "config.json")
    with pytest.raises(FileNotFoundError, match=r"missing config file .*config\.json"):
        qwen3mini.load_model(directory)


def test_error_no_weights(dense_dir, tmp_path):
    directory = copy_checkpoint(dense_dir[0], tmp_path)
    os.remove(directory / "model.safetensors")
    with pytest.raises(FileNotFoundError, match=r"no weights in .*model\.safetensors"):
        qwen3mini.load_model(directory)


def test_error_missing_shard(moe_dir, tmp_path):
    model = qwen3mini.load_model(moe_dir[0])
    save_model(model, tmp_path, max_shard_size=20_000)
    shards = sorted(tmp_path.glob("model-*-of-*.safetensors"))
    assert len(shards) >= 2
    os.remove(shards[1])
    with pytest.raises(FileNotFoundError, match=rf"missing shard .*{shards[1].name}"):
        qwen3mini.load_model(tmp_path)


@pytest.mark.parametrize("damage", ["truncated", "garbled header"])
def test_error_corrupt_weights_file(dense_dir, tmp_path, damage):
    directory = copy_checkpoint(dense_dir[0], tmp_path)
    path = directory / "model.safetensors"
    data = path.read_bytes()
    path.write_bytes(data[:-100] if damage == "truncated" else data[:8] + b"#" * 64 + data[72:])
    with pytest.raises(ValueError, match=r"model\.safetensors"):
        qwen3mini.load_model(directory)


def test_error_missing_tensor(dense_dir, tmp_path):
    directory = copy_checkpoint(dense_dir[0], tmp_path)
    tensors = load_file(directory / "model.safetensors")
    del tensors["model.layers.1.self_attn.k_norm.weight"]
    save_file(tensors, directory / "model.safetensors")
    with pytest.raises(KeyError, match=r"missing tensor\(s\): model\.layers\.1\.self_attn\.k_norm\.weight"):
        qwen3mini.load_model(directory)


def test_error_missing_expert(moe_dir, tmp_path):
    directory = copy_checkpoint(moe_dir[0], tmp_path)
    tensors = load_file(directory / "model.safetensors")
    del tensors["model.layers.0.mlp.experts.5.up_proj.weight"]
    save_file(tensors, directory / "model.safetensors")
    with pytest.raises(KeyError, match=r"missing tensor\(s\): model\.layers\.0\.mlp\.experts\.5\.up_proj\.weight"):
        qwen3mini.load_model(directory)


def test_error_unexpected_tensor(dense_dir, tmp_path):
    directory = copy_checkpoint(dense_dir[0], tmp_path)
    tensors = load_file(directory / "model.safetensors")
    tensors["model.layers.0.self_attn.q_proj.bias"] = torch.zeros(64)
    save_file(tensors, directory / "model.safetensors")
    with pytest.raises(KeyError, match=r"unexpected tensor\(s\) in model\.safetensors: "
                                       r"model\.layers\.0\.self_attn\.q_proj\.bias"):
        qwen3mini.load_model(directory)


def test_error_shape_mismatch(dense_dir, tmp_path):
    directory = copy_checkpoint(dense_dir[0], tmp_path)
    config = json.loads((directory / "config.json").read_text())
    config["intermediate_size"] = 80                     # the tensors say 96
    (directory / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match=r"model\.safetensors: tensor model\.layers\.0\.mlp\.(gate|up|down)_proj"
                                         r"\.weight has shape \((96, 64|64, 96)\), the config expects"):
        qwen3mini.load_model(directory)


def test_error_unsupported_model_type(dense_dir, tmp_path):
    directory = copy_checkpoint(dense_dir[0], tmp_path)
    config = json.loads((directory / "config.json").read_text())
    config["model_type"] = "llama"
    (directory / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match=r"config\.json: unsupported model_type 'llama'"):
        qwen3mini.load_model(directory)


def test_error_repo_id_without_huggingface_hub(monkeypatch):
    import sys
    monkeypatch.setitem(sys.modules, "huggingface_hub", None)        # makes the import fail
    with pytest.raises(FileNotFoundError, match=r"huggingface_hub is not installed.*huggingface-cli download "
                                                r"Qwen/Qwen3-0\.6B --local-dir DIR"):
        qwen3mini.load_model("Qwen/Qwen3-0.6B")


def test_error_mistyped_local_path_is_not_a_repo_id(tmp_path, monkeypatch):
    """checkpoints/qwen3mini-bse looks like a repo id, but checkpoints/ is a local directory: a typo, reported
    as one, without asking the hub."""
    import huggingface_hub

    def no_network(*args, **kwargs):
        raise AssertionError("the hub was asked")
    monkeypatch.setattr(huggingface_hub, "snapshot_download", no_network)
    (tmp_path / "checkpoints" / "qwen3mini-base").mkdir(parents=True)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(FileNotFoundError, match=r"^checkpoint directory checkpoints/qwen3mini-bse does not exist "
                                                r"\(no such directory; checkpoints/ holds: qwen3mini-base\)$"):
        qwen3mini.load_model("checkpoints/qwen3mini-bse")


def test_generation_config(dense_dir, tmp_path):
    from qwen3mini.checkpoint import read_generation_config
    directory = copy_checkpoint(dense_dir[0], tmp_path)
    if os.path.exists(directory / "generation_config.json"):
        os.remove(directory / "generation_config.json")
    assert read_generation_config(directory) == {}
    (directory / "generation_config.json").write_text('{"eos_token_id": [1, 2]}')
    assert read_generation_config(directory) == {"eos_token_id": [1, 2]}
    (directory / "generation_config.json").write_text('{"eos_token_id": [1, ')
    with pytest.raises(ValueError, match=r"generation_config\.json is not valid JSON"):
        read_generation_config(directory)


def test_error_repo_id_unreachable(monkeypatch):
    import huggingface_hub

    def offline(*args, **kwargs):
        raise OSError("network is unreachable")
    monkeypatch.setattr(huggingface_hub, "snapshot_download", offline)
    with pytest.raises(FileNotFoundError, match=r"could not fetch repo Qwen/Qwen3-0\.6B .*network is unreachable"
                                                r".*huggingface-cli download"):
        qwen3mini.load_model("Qwen/Qwen3-0.6B")


def test_peak_memory_of_loading_stays_near_the_weights(tmp_path):
    """Load a ~100M-parameter bf16 checkpoint in a fresh process: the peak resident set above the baseline
    stays under 1.5x the weights, even after a forward pass touched every page (bench/bench_model_load.py
    measures the 0.6B shape)."""
    import subprocess
    import sys
    model = Qwen3ForCausalLM(PRESETS["small"]).to(torch.bfloat16)
    save_model(model, tmp_path)
    weights = sum(p.numel() * p.element_size() for p in model.parameters())
    del model
    child = (
        "import sys, torch, qwen3mini\n"
        "def hwm():\n"
        "    return next(int(l.split()[1]) * 1024 for l in open('/proc/self/status') if l.startswith('VmHWM'))\n"
        "def rss():\n"
        "    return next(int(l.split()[1]) * 1024 for l in open('/proc/self/status') if l.startswith('VmRSS'))\n"
        "base = rss()\n"
        "model = qwen3mini.load_model(sys.argv[1])\n"
        "with torch.no_grad():\n"
        "    model(torch.zeros(1, 4, dtype=torch.long))\n"
        "print(hwm() - base)\n")
    out = subprocess.run([sys.executable, "-c", child, str(tmp_path)], capture_output=True, text=True, check=True)
    peak = int(out.stdout.split()[-1])
    assert peak < 1.5 * weights, f"peak {peak / 2**20:.0f} MiB for {weights / 2**20:.0f} MiB of weights"
