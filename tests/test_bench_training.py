"""bench/bench_training.py under torchrun and bench/scaling_table.py (issue 22), checked on the CPU with gloo: two
processes count the global batch in their tokens/s and train on the same tokens, step for step, as one process
that accumulates two micro-batches, so that the multi-GPU run's losses can be set beside one GPU's."""
import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = ["--shapes", "tiny,tiny-moe", "--compile", "0", "--device", "cpu", "--micro_batch", "2", "--seq_len", "32",
        "--warmup", "1", "--steps", "3"]


def _bench(tmp_path, name, processes, *args):
    out = tmp_path / f"{name}.json"
    launcher = ["-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(processes)] \
        if processes > 1 else []
    subprocess.run([sys.executable, *launcher, os.path.join(ROOT, "bench", "bench_training.py"), *TINY, *args,
                    "--json", str(out)], check=True, capture_output=True, text=True, cwd=tmp_path,
                   env={**os.environ, "OMP_NUM_THREADS": "1"}, timeout=300)
    return out


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("bench_training")
    return _bench(tmp_path, "two", 2), _bench(tmp_path, "one_accum", 1, "--grad_accum", "2")


def test_two_processes_train_on_one_process_tokens(runs):
    two, one = (json.loads(path.read_text())["results"] for path in runs)
    for distributed, alone in zip(two, one):
        assert (distributed["gpus"], alone["gpus"], alone["grad_accum"]) == (2, 1, 2)
        # the same tokens and the same averaged gradient: fp32 rounding of a sum of two, through 4 AdamW steps
        assert distributed["losses"] == pytest.approx(alone["losses"], abs=1e-4)
        for run in (distributed, alone):
            global_batch = run["micro_batch"] * run["grad_accum"] * run["gpus"] * run["seq_len"]
            assert run["tokens_per_s"] == pytest.approx(global_batch / (run["step_ms"] / 1e3))


def test_scaling_table_sets_the_runs_side_by_side(runs):
    table = subprocess.run([sys.executable, os.path.join(ROOT, "bench", "scaling_table.py"), *map(str, runs)],
                           check=True, capture_output=True, text=True).stdout.splitlines()
    rows = [line for line in table if line.startswith("| tiny")]
    assert len(rows) == 2 and all("| ddp | 2 |" in row and "max diff" in row and "over 4 steps" in row
                                  for row in rows)


def test_a_file_that_is_no_benchmark_is_named(tmp_path):
    bad = tmp_path / "notes.json"
    bad.write_text("{}")
    result = subprocess.run([sys.executable, os.path.join(ROOT, "bench", "scaling_table.py"), str(bad)],
                            capture_output=True, text=True)
    assert result.returncode != 0 and f"{bad}: not a bench_training.py JSON" in result.stderr


def test_moe_benchmark_runs_through_on_the_cpu(tmp_path, monkeypatch, capsys):
    """bench/bench_moe_training.py calls bench_training.py's step as it is now (its figures are the H200's; here
    the uncompiled sides of its table run, tiny, on the CPU, and none may fail)."""
    monkeypatch.syspath_prepend(ROOT)
    from bench import bench_moe_training
    monkeypatch.setattr(bench_moe_training, "RUNS", [run for run in bench_moe_training.RUNS if not run[2]])
    out = tmp_path / "moe.json"
    bench_moe_training.main(["--device", "cpu", "--micro_batch", "1", "--seq_len", "16", "--warmup", "0",
                             "--steps", "1", "--json", str(out)])
    assert "failed" not in capsys.readouterr().out
    results = json.loads(out.read_text())["results"]
    assert [r["label"] for r in results] == ["dense", "MoE grouped GEMMs", "MoE reference dispatch"]
    assert results[0]["vs_dense"] == 1.0 and all(r["vs_dense"] > 0 for r in results)
