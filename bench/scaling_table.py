"""The scaling table of data-parallel training from ``bench/bench_training.py`` runs (issue 22): one JSON per
process count, the same shape, micro-batch and sequence length in each.

    python bench/scaling_table.py runs/scaling/*.json

A row per (shape, compile, parallel, GPUs): global tokens/s, the speed-up and the scaling efficiency against
one GPU (tokens/s over GPUs x one GPU's tokens/s at the same micro-batch), MFU and the largest memory of a GPU.
Where a one-GPU run with ``--grad_accum N`` trained the N-GPU run's global batch (the same tokens, drawn per
step), the largest per-step loss difference between the two is given too: data parallelism changes the
order of the gradient's reductions, not what is learned.
"""
import argparse
import json
import sys


def rows_of(paths):
    rows = []
    for path in paths:
        try:
            with open(path) as f:
                rows += json.load(f)["results"]
        except (OSError, ValueError, KeyError) as error:
            sys.exit(f"scaling_table.py: {path}: not a bench_training.py JSON ({error})")
    return rows


def table(rows) -> list[str]:
    same = lambda r: (r["shape"], r["compile"], r["micro_batch"], r["seq_len"])    # noqa: E731
    lines = ["| shape | compile | parallel | GPUs | tokens/s | speed-up | efficiency | MFU a GPU | memory a GPU "
             "| loss vs 1 GPU, same batch |", "|---|---|---|---|---|---|---|---|---|---|"]
    for run in sorted((r for r in rows if r["grad_accum"] == 1), key=lambda r: (same(r), r["parallel"], r["gpus"])):
        alone = [r for r in rows if r["gpus"] == 1 and same(r) == same(run)]
        base = next((r for r in alone if r["grad_accum"] == 1), None)
        twin = next((r for r in alone if r["grad_accum"] == run["gpus"] > 1), None)
        speed_up = f"{run['tokens_per_s'] / base['tokens_per_s']:.2f}x" if base else "-"
        efficiency = f"{run['tokens_per_s'] / base['tokens_per_s'] / run['gpus']:.1%}" if base else "-"
        memory = f"{run['max_memory_gb']:.1f} GB" if run.get("max_memory_gb") is not None else "-"
        loss = "-"
        if twin:
            steps = min(len(twin["losses"]), len(run["losses"]))
            gap = max(abs(a - b) for a, b in zip(twin["losses"][:steps], run["losses"][:steps]))
            loss = f"max diff {gap:.2e} over {steps} steps"
        lines.append(f"| {run['shape']} | {int(run['compile'])} | {run['parallel']} | {run['gpus']} | "
                     f"{run['tokens_per_s']:,.0f} | {speed_up} | {efficiency} | {run['mfu']:.1%} | {memory} | {loss} |")
    return lines


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", help="bench_training.py JSON files")
    print("\n".join(table(rows_of(parser.parse_args(argv).runs))))


if __name__ == "__main__":
    main()
