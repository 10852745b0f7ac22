"""bench/pack_students.py: a pre-training call's results and weight parts become one archive that unpacks into
the runs folder as run_distill.sh leaves it (summaries, config, tokenizer, bf16 weights); a broken part is named
and the previous archive survives."""
import json
import os
import tarfile

import pytest
import torch
from safetensors.torch import load_file, save_file

from bench.pack_students import KEPT, STUDENTS, pack
from qwen3mini.training.stage import TOKENIZER_FILES

TOKENIZER = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "checkpoints", "tokenizer-16k")


def device_call_files(root, student_weights):
    """A results folder (the extracted results.tar.gz) and a folder of weight parts, as a pretrain call leaves."""
    results, weights = root / "results", root / "weights"
    weights.mkdir()
    for student in STUDENTS:
        for kept in KEPT:
            (results / student / kept).parent.mkdir(parents=True, exist_ok=True)
            (results / student / kept).write_text(json.dumps({"student": student, "file": kept}))
        whole = root / f"{student}.safetensors"
        save_file(student_weights[student], str(whole))
        blob = whole.read_bytes()
        (weights / f"{student}-s3.safetensors.part-aa").write_bytes(blob[:len(blob) // 3])
        (weights / f"{student}-s3.safetensors.part-ab").write_bytes(blob[len(blob) // 3:])
    return results, weights


def test_the_archive_unpacks_into_the_runs_folder(tmp_path):
    g = torch.Generator().manual_seed(0)
    student_weights = {s: {"w": torch.randn(5, 7, generator=g), "step": torch.arange(3)} for s in STUDENTS}
    results, weights = device_call_files(tmp_path, student_weights)
    out = tmp_path / "students.tar.xz"
    pack(str(results), str(weights), TOKENIZER, str(out))
    runs = tmp_path / "runs"
    with tarfile.open(out) as archive:
        archive.extractall(runs, filter="data")
    for student in STUDENTS:
        for kept in KEPT:
            assert json.loads((runs / student / kept).read_text()) == {"student": student, "file": kept}
        final = runs / student / "s3" / "final"
        for name in TOKENIZER_FILES:
            assert (final / name).read_bytes() == open(os.path.join(TOKENIZER, name), "rb").read()
        tensors = load_file(str(final / "model.safetensors"))
        assert tensors["w"].dtype == torch.bfloat16
        assert torch.equal(tensors["w"], student_weights[student]["w"].to(torch.bfloat16))
        assert torch.equal(tensors["step"], student_weights[student]["step"])      # integers stay as they are


def test_a_missing_part_is_named_and_the_old_archive_kept(tmp_path):
    results, weights = device_call_files(tmp_path, {s: {"w": torch.ones(64, 64)} for s in STUDENTS})
    out = tmp_path / "students.tar.xz"
    out.write_bytes(b"the previous archive")
    (weights / "student-moe-s3.safetensors.part-ab").unlink()
    with pytest.raises(SystemExit, match="student-moe's parts"):
        pack(str(results), str(weights), TOKENIZER, str(out))
    assert out.read_bytes() == b"the previous archive"
