"""Peak memory of loading a Qwen3-0.6B-shaped checkpoint (random bf16 weights, written here; no download).

    python bench/bench_model_load.py [--preset Qwen3-0.6B] [--dir /tmp/q06b-random]

Writes the checkpoint once (HF layout, 1.19 GB for 0.6B), then loads it in fresh subprocesses and reports the
peak resident set (VmHWM) above the process's baseline after ``import torch, qwen3mini``, as a multiple of the
weights' size: right after ``load_model`` and after a forward pass has touched every weight.
"""
import argparse
import json
import os
import subprocess
import sys

CHILD = r"""
import json, sys, time, torch, qwen3mini

def status(field):
    for line in open("/proc/self/status"):
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024

baseline = status("VmRSS")
start = time.perf_counter()
model = qwen3mini.load_model(sys.argv[1], dtype=getattr(torch, sys.argv[2]))
seconds = time.perf_counter() - start
after_load = status("VmHWM")
with torch.no_grad():
    model(torch.zeros(1, 4, dtype=torch.long))
weights = sum(p.numel() * p.element_size() for p in model.parameters())
print(json.dumps(dict(baseline=baseline, after_load=after_load, after_forward=status("VmHWM"),
                      weights=weights, seconds=seconds)))
"""


def write_checkpoint(preset: str, directory: str):
    import torch
    import torch.nn as nn
    from qwen3mini.checkpoint import save_model
    from qwen3mini.config import PRESETS
    from qwen3mini.model import Qwen3ForCausalLM
    with torch.device("meta"):
        model = Qwen3ForCausalLM(PRESETS[preset])
    generator = torch.Generator().manual_seed(0)
    for name, param in list(model.named_parameters()):
        value = torch.randn(param.shape, generator=generator, dtype=torch.float32).mul_(0.02).to(torch.bfloat16)
        module_name, _, attr = name.rpartition(".")
        model.get_submodule(module_name)._parameters[attr] = nn.Parameter(value)
    model.model.rotary.to("cpu")
    save_model(model, directory)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="Qwen3-0.6B")
    parser.add_argument("--dir", default="/tmp/qwen3mini-bench-0.6b-random")
    args = parser.parse_args()
    if not os.path.isfile(os.path.join(args.dir, "config.json")):
        print(f"writing random {args.preset} checkpoint to {args.dir} ...", flush=True)
        write_checkpoint(args.preset, args.dir)
    for dtype in ("bfloat16", "float32"):
        out = subprocess.run([sys.executable, "-c", CHILD, args.dir, dtype], check=True, capture_output=True,
                             text=True, env=dict(os.environ, OMP_NUM_THREADS="1")).stdout
        r = json.loads(out.strip().splitlines()[-1])
        gib = 1024 ** 3
        print(f"{args.preset} load into {dtype}: weights {r['weights'] / gib:.3f} GiB, load {r['seconds']:.2f} s, "
              f"peak above baseline {(r['after_load'] - r['baseline']) / gib:.3f} GiB "
              f"({(r['after_load'] - r['baseline']) / r['weights']:.2f}x weights) after load, "
              f"{(r['after_forward'] - r['baseline']) / gib:.3f} GiB "
              f"({(r['after_forward'] - r['baseline']) / r['weights']:.2f}x) after a forward pass")


if __name__ == "__main__":
    main()
