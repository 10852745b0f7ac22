"""Token streaming as the chat does it (``Generator.stream``, batch 1, one host sync per token) on a GPU:
graph-replayed decode steps (``cuda_graphs.GraphedDecodeStep``, which ``generation.fast_decode_step`` picks on the
CUDA backend) vs eager launches of ``model.decode_step``, and transformers' ``generate`` (its default dynamic
cache, eager) on the same checkpoint; bench/bench_cuda_e2e.py part 4 compares with transformers compiled.

    python bench/bench_chat_gpu.py [--model checkpoints/qwen3mini-base] [--tokens 256]

Greedy, stop tokens ignored, so every side produces exactly ``--tokens`` tokens after the same prompt.
"""
import argparse
import os
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import qwen3mini  # noqa: E402
from qwen3mini.generation import Generator, SamplingParams  # noqa: E402

PROMPT = "<|im_start|>user\nExplain what a Python generator is.<|im_end|>\n<|im_start|>assistant\n"


def stream_rate(model, prompt, tokens, cuda_graph):
    gen = Generator(model, max_seq_len=len(prompt) + tokens + 8, fast_decode=cuda_graph)
    greedy = SamplingParams(temperature=0.0)
    gen.append(prompt)
    list(gen.stream(8, greedy))                      # warm-up (and graph capture)
    gen.truncate(len(prompt))
    torch.cuda.synchronize()
    start = time.perf_counter()
    out = list(gen.stream(tokens, greedy))
    seconds = time.perf_counter() - start
    return len(out) / seconds, out


def transformers_rate(path, prompt, tokens):
    from transformers import AutoModelForCausalLM
    hf = AutoModelForCausalLM.from_pretrained(path, dtype=torch.bfloat16).cuda().eval()
    ids = torch.tensor([prompt], device="cuda")
    kwargs = dict(max_new_tokens=tokens, min_new_tokens=tokens, do_sample=False, pad_token_id=0)
    hf.generate(ids, **dict(kwargs, max_new_tokens=8, min_new_tokens=8))
    torch.cuda.synchronize()
    start = time.perf_counter()
    out = hf.generate(ids, **kwargs)
    torch.cuda.synchronize()
    return (out.shape[1] - ids.shape[1]) / (time.perf_counter() - start)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default=os.path.join("checkpoints", "qwen3mini-base"))
    p.add_argument("--tokens", type=int, default=256)
    args = p.parse_args()
    model = qwen3mini.load_model(args.model, device="cuda", dtype=torch.bfloat16)
    prompt = qwen3mini.load_tokenizer(args.model).encode(PROMPT)
    print(f"device: {torch.cuda.get_device_name()}  torch {torch.__version__}  model {args.model}  "
          f"prompt {len(prompt)} tokens, {args.tokens} new")
    graphed, graphed_tokens = stream_rate(model, prompt, args.tokens, cuda_graph=True)
    eager, eager_tokens = stream_rate(model, prompt, args.tokens, cuda_graph=False)
    print(f"chat stream, graph-replayed: {graphed:.0f} tok/s; eager launches: {eager:.0f} tok/s "
          f"({graphed / eager:.1f}x); same tokens: {graphed_tokens == eager_tokens}")
    hf = transformers_rate(args.model, prompt, args.tokens)
    print(f"transformers generate (greedy, bf16, dynamic cache, eager): {hf:.0f} tok/s; ours (graph) is "
          f"{graphed / hf:.1f}x this peer")


if __name__ == "__main__":
    main()
