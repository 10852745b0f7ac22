"""The chat on a GPU (``--device cuda``): the shipped model, decode steps replayed from a captured CUDA graph.

The graph path must produce exactly the tokens of the eager path (the same kernels run, only launched
differently), across turns that reuse and roll back the KV cache; infer/generate.py runs its batches there too.
Skipped without a GPU.
"""
import json
import os
import subprocess
import sys

import pytest
import torch

import qwen3mini
from qwen3mini.generation import Generator, SamplingParams

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SHIPPED = os.path.join(REPO, "checkpoints", "qwen3mini-base")
CHAT = os.path.join(REPO, "infer", "chat.py")
GENERATE = os.path.join(REPO, "infer", "generate.py")


def conversation(gen, tok, greedy):
    """Two turns; the second rolls the cache back over the first reply's last tokens, as the chat does."""
    streams = []
    gen.append(tok.encode("<|im_start|>user\nWhat is a list in Python?<|im_end|>\n<|im_start|>assistant\n"))
    streams.append(list(gen.stream(48, greedy)))
    gen.truncate(gen.length - 5)
    gen.append(tok.encode("<|im_end|>\n<|im_start|>user\nAnd a tuple?<|im_end|>\n<|im_start|>assistant\n"))
    streams.append(list(gen.stream(48, greedy)))
    return streams


def test_graph_replayed_chat_stream_equals_the_eager_stream():
    model = qwen3mini.load_model(SHIPPED, device="cuda", dtype=torch.bfloat16)
    tok = qwen3mini.load_tokenizer(SHIPPED)
    greedy = SamplingParams(temperature=0.0)
    graphed = Generator(model, max_seq_len=1024)
    eager = Generator(model, max_seq_len=1024, fast_decode=False)
    assert graphed._step is not None and eager._step is None
    assert conversation(graphed, tok, greedy) == conversation(eager, tok, greedy)
    assert graphed._step.graphs, "the graph path was not taken"


def test_chat_runs_on_cuda_with_the_shipped_model():
    proc = subprocess.run([sys.executable, CHAT, "--device", "cuda", "--no-think", "--prompt", "Say hello.",
                           "--max-new-tokens", "32"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "tokens/s" in proc.stdout + proc.stderr


def test_generate_runs_on_cuda_with_the_shipped_model(tmp_path):
    prompts, output = tmp_path / "prompts.txt", tmp_path / "out.jsonl"
    prompts.write_text("What is a list in Python?\nName three colours.\n")
    proc = subprocess.run([sys.executable, GENERATE, "--device", "cuda", "--input", str(prompts), "--output",
                           str(output), "--num-samples", "3", "--thinking-budget", "4", "--max-new-tokens", "24",
                           "--seed", "0"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    records = [json.loads(line) for line in output.read_text().splitlines()]
    assert [(r["index"], r["sample"]) for r in records] == [(i, k) for i in range(2) for k in range(3)]
    assert all(1 <= r["completion_tokens"] <= 24 for r in records)
