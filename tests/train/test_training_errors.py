"""Bad input to training gets one clear line naming the file or option at fault (issue 16), and a finished
run says that it has nothing left to train."""
import dataclasses
import importlib.util
import os
import shutil
import subprocess
import sys

import pytest

from qwen3mini.training.settings import TrainSettings, parse_settings

sys.path.insert(0, os.path.dirname(__file__))
from helpers import tiny_run  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
STAGES = ("pretrain_general", "pretrain_reasoning", "pretrain_long_context", "eval_long_context")


def load_script(name):
    spec = importlib.util.spec_from_file_location(name, os.path.join(ROOT, "train", f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    """A tiny run of 2 steps with a checkpoint after each."""
    out = tmp_path_factory.mktemp("run") / "out"
    tiny_run(str(out), steps=2, ckpt_every=1, micro_batch=2, seq_len=16)
    return out


def damaged_copy(finished_run, tmp_path, damage):
    out = tmp_path / "out"
    shutil.copytree(finished_run, out)
    damage(out / "ckpt")
    return str(out)


@pytest.mark.parametrize("damage,message", [
    (lambda ckpt: (ckpt / "step-0000002" / "state.pt").write_bytes(
        (ckpt / "step-0000002" / "state.pt").read_bytes()[:1000]), r"state.pt is not a readable checkpoint"),
    (lambda ckpt: (ckpt / "latest").write_text("step-0000099"), r"latest names .*step-0000099, which does not"),
    (lambda ckpt: (ckpt / "step-0000002" / "rank-0.pt").write_bytes(b"garbage"), r"rank-0.pt is not a readable"),
    (lambda ckpt: (ckpt / "step-0000002" / "rank-0.pt").unlink(), r"rank-0.pt is missing"),
])
def test_damaged_checkpoint_names_the_file(finished_run, tmp_path, damage, message):
    out = damaged_copy(finished_run, tmp_path, damage)
    with pytest.raises(ValueError, match=message) as error:
        tiny_run(out, steps=4, ckpt_every=1, micro_batch=2, seq_len=16)
    assert "--resume false" in str(error.value)


def test_changed_model_shape_names_the_checkpoint_and_tensor(finished_run, tmp_path):
    out = damaged_copy(finished_run, tmp_path, lambda ckpt: None)
    with pytest.raises(ValueError, match=r"step-0000002 holds a different model .*mlp"):
        tiny_run(out, preset="tiny-moe", steps=4, ckpt_every=1, micro_batch=2, seq_len=16)


def test_finished_run_says_there_is_nothing_to_train(finished_run, tmp_path, capsys):
    out = damaged_copy(finished_run, tmp_path, lambda ckpt: None)
    trainer, records = tiny_run(out, steps=2, ckpt_every=1, micro_batch=2, seq_len=16)
    assert records == [] and trainer.step == 2
    assert "already at step 2 of --steps 2, nothing to train" in capsys.readouterr().out


def test_settings_out_of_range_name_the_option():
    for option, value in (("--ckpt_every", "0"), ("--steps", "-1"), ("--lr", "nan"), ("--decay_frac", "2")):
        with pytest.raises(ValueError, match=f"^{option} "):
            parse_settings(TrainSettings, [option, value])


@pytest.mark.parametrize("name", STAGES)
def test_every_stage_option_has_help(name, capsys):
    script = load_script(name)
    with pytest.raises(SystemExit):
        script.main(["--help"])
    text = capsys.readouterr().out
    assert text.count("(default:") == len(dataclasses.fields(script.Settings))


def test_stage_script_with_missing_data_prints_one_line(tmp_path):
    result = subprocess.run([sys.executable, os.path.join(ROOT, "train", "pretrain_general.py"), "--preset", "tiny",
                             "--data", str(tmp_path / "nope"), "--tokenizer", "", "--out_dir", str(tmp_path / "o")],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        f"pretrain_general.py: error: --data {tmp_path / 'nope'}: no such folder; build the token shards with "
        "`python -m train.data.build_shards` (train/data/README.md)"]


def test_continuing_stage_without_its_start_names_init_from(tmp_path):
    script = load_script("pretrain_reasoning")
    from train.data.shards import write_shard
    for split in ("train", "val"):
        write_shard(str(tmp_path / "s2" / split), [list(range(200))], eot_id=300, vocab_size=512)
    with pytest.raises(ValueError, match=r"--init_from .*missing: no such folder \(run train/pretrain_general.py"):
        script.main(["--preset", "tiny", "--data", str(tmp_path / "s2"), "--tokenizer", "",
                     "--init_from", str(tmp_path / "missing"), "--out_dir", str(tmp_path / "o")])


def test_run_started_over_replaces_a_checkpoint_of_the_same_step_whole(finished_run, tmp_path):
    """--resume false over a finished run reaches step 2 again: the old step-0000002 is swapped for the new
    one (never removed before the new one is complete), and the log starts over."""
    out = damaged_copy(finished_run, tmp_path, lambda ckpt: None)
    trainer, records = tiny_run(out, steps=2, ckpt_every=1, micro_batch=2, seq_len=16, resume=False)
    assert len(records) == 2
    assert sorted(os.listdir(os.path.join(out, "ckpt"))) == ["latest", "step-0000002"]
    resumed, _ = tiny_run(out, steps=2, ckpt_every=1, micro_batch=2, seq_len=16)
    assert resumed.step == 2


def test_shards_of_another_tokenizer_name_both(tmp_path):
    """A model is saved with --tokenizer; shards encoded by another tokenizer (build_shards records its sha256)
    would leave the saved model reading some ids as other strings, so the stage refuses before training."""
    script = load_script("pretrain_general")
    from train.data.shards import write_shard
    for split in ("train", "val"):
        write_shard(str(tmp_path / "s1" / split), [list(range(200))], eot_id=300, vocab_size=512,
                    extra_meta={"tokenizer_sha256": "0" * 64})
    with pytest.raises(ValueError, match=r"--data .*s1: its shards were encoded by another tokenizer than "
                                         r"--tokenizer .*tokenizer-16k \(tokenizer.json sha256 000000000000"):
        script.main(["--preset", "tiny", "--data", str(tmp_path / "s1"), "--out_dir", str(tmp_path / "o"),
                     "--tokenizer", os.path.join(ROOT, "checkpoints", "tokenizer-16k")])
