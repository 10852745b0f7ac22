"""Every command README.md prints in a ```bash block runs, as printed, up to the point where it does real work
(issue 16 item 2: `--help` is not enough).

Each line of a bash block is split at `&&` into steps, and each step must match one entry of COMMANDS, so a new
README command fails `test_every_readme_command_is_known` until it is given a check here. The checks run the
step's text unchanged through bash (`python`, `pip`, `pytest` are this interpreter's), with at most an extra
environment variable, and they stop early where a full run would take minutes:

* installs: pip's own environment switches `PIP_DRY_RUN=1 PIP_NO_INDEX=1` (resolve, install nothing, no network);
* pytest runs: `PYTEST_ADDOPTS=--collect-only` (the options parse and every test collects; the README's whole
  suite command is the run this test is part of, so it is not run again);
* everything else runs until a command-specific sign of work (a sampled token in the chat's log, the trained
  files, `apt-get download` called, the benchmark's machine line) or, where there is none, until the
  arguments were parsed (a `sitecustomize` on PYTHONPATH records each successful
  `ArgumentParser.parse_known_args`; a script without argparse: until it prints) and the process then kept
  working for a while;
* commands that need a GPU (or 8) are skipped without one, training on the GPU also without data/shards;
  `apt-get update` (root, network) is not run.

Commands that write files run in a sandbox: a copy of the scripts they run in tmp_path (the scripts place their
output beside the repository root they live in), with the shipped checkpoint linked in.
"""
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PARSED = "QWEN3MINI_TEST_PARSED"  # file that the sitecustomize below appends to after each successful parse
SITECUSTOMIZE = f"""
import argparse, os
_parse_known_args = argparse.ArgumentParser.parse_known_args
def parse_known_args(self, *args, **kwargs):
    result = _parse_known_args(self, *args, **kwargs)
    with open(os.environ["{PARSED}"], "a") as f:
        f.write(self.prog + "\\n")
    return result
argparse.ArgumentParser.parse_known_args = parse_known_args
"""
LONG_RUN_GRACE_S = 15    # a long run must keep working this long after parsing its arguments
START_TIMEOUT_S = 240    # time allowed to load a model / import torch on a busy 2-core machine


def readme_steps():
    """(line number, step) for each `&&`-separated step of each line of README.md's ```bash blocks."""
    steps, in_bash = [], False
    with open(os.path.join(ROOT, "README.md"), encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            if line.startswith("```"):
                in_bash = line.strip() == "```bash" and not in_bash
                continue
            command = re.sub(r"\s+#.*$", "", line).strip()
            if in_bash and command and not command.startswith("#"):
                steps += [(number, step.strip()) for step in command.split("&&")]
    return steps


# step pattern -> the check that runs it, first match wins (a new README command needs a new entry)
COMMANDS = {
    r"pip install .*": "install",
    r"python -m pytest -q": "whole_suite",
    r"(\w+=\S+ )*(python -m )?pytest .*": "pytest",
    r"(\w+=\S+ )*python infer/chat\.py.*": "chat",
    r"python infer/generate\.py .*": "generate",
    r"python -m qwen3mini\.tokenizer\.trainer .*": "tokenizer_trainer",
    r"python bench/bench_cpu_inference\.py.*": "cpu_bench",
    r"python train/sft_cold_start\.py .*": "sft",
    r"python train/evaluate\.py .*": "evaluate",
    r"python train/compare_evaluations\.py .*": "compare",
    r"python train/rl_reasoning\.py .*": "gpu",
    r"python train/(sft_mode_fusion|rl_general)\.py .*": "gpu",
    r"bash train/run_posttrain\.sh .*": "gpu",
    r"python train/distill_(off|on)_policy\.py .*": "gpu",
    r"bash train/run_distill\.sh .*": "gpu",
    r"apt-get update": "system",
    r"python -m train\.data\.build_corpus": "data_chain",
    r"python -m train\.data\.train_tokenizer": "data_chain",
    r"python -m train\.data\.build_shards": "data_chain",
    r"python train/pretrain_general\.py --preset tiny": "data_chain",
    r"(\w+=\S+ )*python csrc/cuda/build_jit\.py": "gpu",
    r"python bench/bench_(cuda_\w+|chat_gpu|generate)\.py": "gpu",
    r"bash bench/bench_cuda_device\.sh": "gpu",
    r"bash train/run_pipeline\.sh .*": "gpu",
    r"python bench/bench_training\.py": "gpu",
    r"torchrun --nproc_per_node 8 .*": "gpu8",
    r"torchrun --nnodes \d+ .*": "nodes",
}
GPU_PYTEST = re.compile(r"--backend cuda|-m gpu")


def check_of(step):
    """The check of the first pattern that matches the whole step, or None."""
    return next((check for pattern, check in COMMANDS.items() if re.fullmatch(pattern, step)), None)


STEPS = readme_steps()


def test_every_readme_command_is_known():
    assert len(STEPS) >= 10, "README.md's ```bash blocks were not found"
    unknown = [f"README.md:{n}: {step}" for n, step in STEPS if check_of(step) is None]
    assert not unknown, "README commands without a check in tests/test_readme_commands.py:\n" + "\n".join(unknown)


# --------------------------------------------------------------------------------------------- running a step
def environment(tmp_path, path_first=(), **extra):
    """``path_first`` and this interpreter's folder first on PATH, the parse recorder on PYTHONPATH, plus
    ``extra``."""
    site = tmp_path / "site"
    site.mkdir(exist_ok=True)
    (site / "sitecustomize.py").write_text(SITECUSTOMIZE)
    env = dict(os.environ, **extra)
    env["PATH"] = os.pathsep.join([*map(str, path_first), os.path.dirname(sys.executable), os.environ["PATH"]])
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(site), os.environ.get("PYTHONPATH")]))
    env[PARSED] = str(tmp_path / "parsed.txt")
    env.pop("PYTEST_CURRENT_TEST", None)
    return env


class Run:
    """``bash -c step`` in its own process group, its output collected in a file."""

    def __init__(self, step, cwd, env, stdin=""):
        self.env, self.log = env, open(os.path.join(os.path.dirname(env[PARSED]), "output.txt"), "w+")
        if os.path.exists(env[PARSED]):
            os.remove(env[PARSED])
        self.process = subprocess.Popen(["bash", "-c", step], cwd=cwd, env=env, stdin=subprocess.PIPE,
                                        stdout=self.log, stderr=subprocess.STDOUT, text=True, start_new_session=True)
        self.process.stdin.write(stdin)
        self.process.stdin.close()

    def output(self):
        self.log.seek(0)
        return self.log.read()

    def parsed(self):
        return os.path.exists(self.env[PARSED])

    def wait_for(self, condition, timeout=START_TIMEOUT_S):
        """True when ``condition()`` holds before the process ends or the timeout passes."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if condition():
                return True
            if self.process.poll() is not None:
                return condition()
            time.sleep(0.2)
        return False

    def stop(self):
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait()
        self.log.close()

    def finish(self, timeout=START_TIMEOUT_S):
        """Wait for the end; the exit status."""
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def fail(self, why):
        output = self.output()
        self.stop()
        pytest.fail(f"{why}\n--- output (last 3000 characters) ---\n{output[-3000:]}")


def run_to_the_end(step, cwd, env, timeout=START_TIMEOUT_S):
    run = Run(step, cwd, env)
    status = run.finish(timeout)
    if status != 0:
        run.fail(f"`{step}` " + (f"exited with {status}" if status is not None else f"still running after {timeout} s"))
    run.stop()


def run_long(step, cwd, env, started=None, stdin=""):
    """Until ``started(run)`` (a sign of real work) holds; without one, until the process parsed its arguments
    (or, for a script without argparse, printed something) and then kept working for LONG_RUN_GRACE_S. It is
    then stopped; a process that ends on its own must end with status 0."""
    run = Run(step, cwd, env, stdin)
    if started is not None:
        if not run.wait_for(lambda: started(run)):
            run.fail(f"`{step}` showed no sign of work")
    else:
        run.wait_for(lambda: run.parsed() or run.output())
        time.sleep(LONG_RUN_GRACE_S)
        if run.process.poll() not in (None, 0):
            run.fail(f"`{step}` failed" + ("" if run.parsed() else " before parsing its arguments"))
    run.stop()


def needs_gpus(count=1):
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available() or torch.cuda.device_count() < count:
        pytest.skip(f"needs {count} CUDA device(s)")


def sandbox(tmp_path, *folders):
    """tmp_path/repo with copies of ``folders`` (scripts write beside their repository root) and the shipped
    checkpoints linked in; the tokenizer's template fixture, which train_tokenizer reads, copied."""
    repo = tmp_path / "repo"
    for folder in folders:
        shutil.copytree(os.path.join(ROOT, folder), repo / folder, ignore=shutil.ignore_patterns("__pycache__"))
    (repo / "checkpoints").mkdir(parents=True)
    for name in ("qwen3mini-base", "qwen3mini-chat"):
        os.symlink(os.path.join(ROOT, "checkpoints", name), repo / "checkpoints" / name)
    (repo / "tests" / "tokenizer").mkdir(parents=True)
    shutil.copy(os.path.join(ROOT, "tests", "tokenizer", "qwen3_chat_template.jinja"), repo / "tests" / "tokenizer")
    return repo


# --------------------------------------------------------------------------------------------------- the checks
SINGLE = [(n, step) for n, step in STEPS if check_of(step) not in (None, "data_chain")]


@pytest.mark.slow
@pytest.mark.parametrize("step", [step for _, step in SINGLE], ids=[f"README:{n} {step[:50]}" for n, step in SINGLE])
def test_readme_command(step, tmp_path):
    check = check_of(step)
    if check == "install":
        return run_to_the_end(step, ROOT, environment(tmp_path, PIP_DRY_RUN="1", PIP_NO_INDEX="1"))
    if check == "whole_suite":
        pytest.skip("the README's test command is this very run")
    if check == "pytest":
        if GPU_PYTEST.search(step):
            needs_gpus()
        run = Run(step, ROOT, environment(tmp_path, PYTEST_ADDOPTS="--collect-only -q"))
        if run.finish() != 0 or not re.search(r"\d+ tests? collected|\.py: \d+", run.output()):  # -q / -qq
            run.fail(f"`{step}` does not collect")
        return run.stop()
    if check == "chat":  # a piped turn; real work = a token sampled (the chat's own log)
        log = tmp_path / "chat.jsonl"
        return run_long(step, ROOT, environment(tmp_path, QWEN3MINI_CHAT_LOG=str(log)), stdin="Hello\n",
                        started=lambda run: log.exists() and '"event": "token"' in log.read_text(encoding="utf-8"))
    if check == "generate":
        repo = sandbox(tmp_path, "infer")
        (repo / "prompts.jsonl").write_text('{"prompt": "What does the ls command do?"}\n')
        return run_long(step, repo, environment(tmp_path))
    if check in ("sft", "evaluate"):  # in a sandbox: both write under runs/
        repo = sandbox(tmp_path, "train")
        if check == "evaluate":  # the base model stands in for the post-trained model the README evaluates
            words = shlex.split(step)
            model = repo / words[words.index("--model") + 1]
            model.parent.mkdir(parents=True)
            os.symlink(os.path.join(ROOT, "checkpoints", "qwen3mini-base"), model, target_is_directory=True)
        return run_long(step, repo, environment(tmp_path))
    if check == "compare":  # two evaluations of one cell stand in for the runs the README compares
        repo = sandbox(tmp_path, "train")
        for i, path in enumerate(re.findall(r"=(\S+\.json)", step)):
            cell = {"family": "add", "difficulty": 3, "mode": "think", "budget": None, "n": 20, "correct": 10 + i,
                    "pass@1": (10 + i) / 20, "wilson95": [0.3, 0.7], "pass@k": None}
            (repo / path).parent.mkdir(parents=True, exist_ok=True)
            (repo / path).write_text(json.dumps({"cells": [cell]}))
        run_to_the_end(step, repo, environment(tmp_path))
        out = shlex.split(step)[shlex.split(step).index("--out") + 1]
        assert "| add 3 (edge) | 0.50 | 0.55 | +0.05 |" in (repo / out / "comparison.md").read_text()
        return None
    if check == "tokenizer_trainer":
        corpus = "\n".join(open(os.path.join(ROOT, p), encoding="utf-8").read() for p in ("README.md", "setup.py"))
        (tmp_path / "corpus.txt").write_text(corpus, encoding="utf-8")
        run_to_the_end(step, tmp_path, environment(tmp_path))
        out = shlex.split(step)[shlex.split(step).index("--out") + 1]
        from qwen3mini.tokenizer import load_tokenizer
        tok = load_tokenizer(tmp_path / out)
        assert tok.decode(tok.encode(corpus[:500])) == corpus[:500]
        return None
    if check == "cpu_bench":  # stopped once measuring: its random checkpoint (kept in /tmp) is then complete
        return run_long(step, ROOT, environment(tmp_path), started=lambda run: "\nmachine: " in "\n" + run.output())
    if check == "system":
        pytest.skip(f"`{step}` changes the system (root, network)")
    if check == "nodes":
        pytest.skip(f"`{step}` needs several machines, the command run on each")
    needs_gpus(8 if check == "gpu8" else 1)
    if re.search(r"pretrain_|run_pipeline", step) and not os.path.isdir(os.path.join(ROOT, "data", "shards")):
        pytest.skip("needs data/shards (the README's data commands, checked by the sandboxed test below)")
    return run_long(step, ROOT, environment(tmp_path))


def small_corpus(repo):
    """data/corpus/{s1,s2,s3}/{train,val}.jsonl from the repository's own text, standing in for what
    build_corpus downloads: enough documents for a tokenizer sample, shards and a few tiny training steps."""
    import json
    texts = []
    for top in ("qwen3mini", "train", "infer", "tokenizer", "bench", "docs"):      # sources, not data or runs
        for folder, _, files in sorted(os.walk(os.path.join(ROOT, top))):
            texts += [open(os.path.join(folder, f), encoding="utf-8").read() for f in sorted(files)
                      if f.endswith((".py", ".md"))]
    for stage in ("s1", "s2", "s3"):
        for split, part in (("train", texts[20:]), ("val", texts[:20])):
            path = repo / "data" / "corpus" / stage / f"{split}.jsonl"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text("".join(json.dumps({"id": f"{stage}-{split}-{i}", "text": t}) + "\n"
                                    for i, t in enumerate(part)), encoding="utf-8")


@pytest.mark.slow
def test_readme_data_and_pretraining_commands(tmp_path):
    """The README's data line and CPU training run, in order, in a sandbox. build_corpus runs until it asks
    apt-get for the Debian packages (a stand-in apt-get records the call: tests download nothing); the corpus
    is then a small stand-in, on which the tokenizer, the shards and the tiny S1 run do their real work."""
    chain = [step for _, step in STEPS if check_of(step) == "data_chain"]
    assert chain and "build_corpus" in chain[0], chain
    repo = sandbox(tmp_path, "train")
    fake_bin = tmp_path / "fake_bin"
    fake_bin.mkdir()
    (fake_bin / "apt-get").write_text(f'#!/bin/sh\necho "$@" >> {tmp_path}/apt-get.txt\nexit 1\n')
    (fake_bin / "apt-get").chmod(0o755)
    env = environment(tmp_path, path_first=[fake_bin])
    for step in chain:
        if "build_corpus" in step:
            run_long(step, repo, env, started=lambda run: (tmp_path / "apt-get.txt").exists())
            assert (tmp_path / "apt-get.txt").read_text().startswith("download ")
            small_corpus(repo)
        elif "pretrain_general" in step:
            run_to_the_end(step, repo, env)
            assert any(name.endswith(".safetensors") for _, _, files in os.walk(repo / "runs") for name in files)
        else:
            run_to_the_end(step, repo, env)
    assert (repo / "checkpoints" / "tokenizer-16k" / "tokenizer.json").exists()
    assert (repo / "data" / "shards" / "s1" / "train.bin").exists()
