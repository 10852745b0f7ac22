"""The stage scripts end to end on tiny shapes and synthetic shards: S1 -> S2 -> S3 -> long-context eval.

Checks what S3 must do (paper §3): raise the RoPE base (ABF) and the sequence length, sample by the 75/25
length mix, and save a config the long-context evaluation can stretch with YaRN."""
import importlib.util
import json
import os

import numpy as np
import pytest

from qwen3mini import load_model
from qwen3mini.training.logs import read_log
from train.data.shards import write_shard

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TOKENIZER = os.path.join(ROOT, "checkpoints", "tokenizer-16k")
VOCAB = 16384


def load_script(name):
    spec = importlib.util.spec_from_file_location(name, os.path.join(ROOT, "train", f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def write_stage(root, stage, doc_lengths, seed):
    rng = np.random.default_rng(seed)
    for split in ("train", "val"):
        docs = [rng.integers(0, VOCAB - 32, n) for n in doc_lengths]
        write_shard(os.path.join(root, stage, split), docs, eot_id=VOCAB - 26, vocab_size=VOCAB)


@pytest.fixture(scope="module")
def stages(tmp_path_factory):
    root = tmp_path_factory.mktemp("stages")
    write_stage(root, "s1", [50, 120, 300] * 4, 0)
    write_stage(root, "s2", [80, 200] * 4, 1)
    write_stage(root, "s3", [40, 100, 200, 256, 600] * 3, 2)         # medium (L/8..L/2) and long (L/2..L)
    cwd = os.getcwd()
    os.chdir(root)                                                     # the tiny presets write to runs/tiny
    try:
        tokenizer = ["--tokenizer", TOKENIZER if os.path.isdir(TOKENIZER) else ""]
        load_script("pretrain_general").main(["--preset", "tiny", "--data", str(root / "s1")] + tokenizer)
        load_script("pretrain_reasoning").main(["--preset", "tiny", "--data", str(root / "s2")] + tokenizer)
        retrieval = ["--retrieval_share", "0.5"] if os.path.isdir(TOKENIZER) else []
        load_script("pretrain_long_context").main(["--preset", "tiny", "--data", str(root / "s3")] + tokenizer
                                                  + retrieval)
    finally:
        os.chdir(cwd)
    return root / "runs" / "tiny"


def test_stage_chain_trains_and_saves(stages):
    for stage, steps in (("s1", 8), ("s2", 6), ("s3", 4)):
        summary = json.loads((stages / stage / "summary.json").read_text())
        assert summary["steps"] == steps and summary["final_val_loss"] is not None
        assert (stages / stage / "loss.png").stat().st_size > 0
        assert (stages / stage / "final" / "config.json").exists()


def test_s3_raises_rope_base_and_length(stages):
    s2 = load_model(stages / "s2" / "final")
    s3 = load_model(stages / "s3" / "final")
    assert (s2.config.rope_theta, s2.config.max_position_embeddings) == (10_000.0, 64)
    assert (s3.config.rope_theta, s3.config.max_position_embeddings) == (1_000_000.0, 256)
    assert s3.config.rope_scaling is None                            # YaRN only at inference
    log = read_log(str(stages / "s3" / "log.jsonl"))
    assert log[-1]["tokens"] == 4 * 2 * 256                          # steps x micro_batch x S3 length
    # S3 starts from S2's weights: same tensors before S3's first update moved them a little
    a, b = s2.state_dict()["model.embed_tokens.weight"], s3.state_dict()["model.embed_tokens.weight"]
    assert (a - b).abs().max() < 0.05 and not (a == b).all()


def test_long_context_config_rejects_lowering_the_base():
    from qwen3mini.config import PRESETS
    s3 = load_script("pretrain_long_context")
    config = s3.long_context_config(PRESETS["tiny"], 5e6, 2048)
    assert (config.rope_theta, config.max_position_embeddings) == (5e6, 2048)
    with pytest.raises(ValueError, match="ABF raises it"):
        s3.long_context_config(PRESETS["tiny"], 1e3, 2048)


@pytest.mark.skipif(not os.path.isdir(TOKENIZER), reason="checkpoints/tokenizer-16k not built yet")
def test_eval_long_context_reports_both_variants(stages):
    results = load_script("eval_long_context").main(
        ["--preset", "tiny", "--model", str(stages / "s3" / "final"), "--data",
         str(stages.parent.parent / "s3" / "val"), "--out_dir", str(stages / "eval")])
    assert set(results["variants"]) == {"RoPE (no YaRN)", "YaRN x4"}
    for variant in results["variants"].values():
        assert set(variant["passkey_accuracy"]) == set(variant["retrieval_accuracy"]) == {"1x", "2x", "4x"}
        assert all(np.isfinite(v) for v in variant["val_loss_by_span"].values())
    assert (stages / "eval" / "loss_by_position.png").exists()
