"""The record of a run: one JSON line per optimizer step (``log.jsonl``), and loss plots (PNG)."""
import json
import os

from .checkpoints import write_atomic


class RunLog:
    """``out_dir/log.jsonl``, written by rank 0. The per-expert load table of an MoE goes into every
    ``log_every``-th line and into the lines with a validation loss; the other lines keep its summary."""

    def __init__(self, out_dir: str, is_main: bool, log_every: int, name: str = "log.jsonl"):
        self.path, self.is_main, self.log_every = os.path.join(out_dir, name), is_main, log_every

    def start(self, resumed_at: int | None):
        """A fresh run empties the log; a resumed one drops the lines of steps the killed run made after its
        last checkpoint (atomically: a kill during the rewrite leaves the old log)."""
        if not self.is_main:
            return
        os.makedirs(os.path.dirname(self.path), exist_ok=True)
        kept = []
        if resumed_at is not None and os.path.exists(self.path):
            kept = [json.dumps(r) + "\n" for r in read_log(self.path) if r["step"] <= resumed_at]
        write_atomic(self.path, "".join(kept))

    def write(self, record: dict):
        if not self.is_main:
            return
        line = {k: (round(v, 6) if isinstance(v, float) else v) for k, v in record.items()}
        if record["step"] % self.log_every and "val_loss" not in line:
            line.pop("expert_load", None)
        with open(self.path, "a") as f:
            f.write(json.dumps(line) + "\n")


def read_log(path: str) -> list:
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def plot_losses(runs: dict, png: str, key: str = "loss", x: str = "tokens", title: str = None):
    """One PNG with a curve per run. ``runs``: label -> JSONL log path (or list of such paths, concatenated)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for label, paths in runs.items():
        offset, xs, ys = 0, [], []
        for path in ([paths] if isinstance(paths, str) else paths):
            all_records = read_log(path)
            records = [r for r in all_records if key in r]
            xs += [offset + r[x] for r in records]
            ys += [r[key] for r in records]
            offset += all_records[-1][x] if all_records else 0
        ax.plot(xs, ys, label=label, marker="o" if key == "val_loss" else None, markersize=3)
    ax.set_xlabel(x)
    ax.set_ylabel(key)
    ax.set_title(title or key)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(png, dpi=120)
    plt.close(fig)


def plot_curves(path: str, png: str, keys: list[str], title: str, x: str = "step"):
    """One PNG with a panel per key of a JSONL log (an RL run's reward, entropy, lengths...) against ``x``."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    records = read_log(path)
    columns = min(3, len(keys))
    rows = -(-len(keys) // columns)
    fig, axes = plt.subplots(rows, columns, figsize=(4.2 * columns, 3.2 * rows), squeeze=False)
    for ax, key in zip(axes.flat, keys):
        points = [(r[x], r[key]) for r in records if key in r]
        ax.plot([p[0] for p in points], [p[1] for p in points], marker="o", markersize=2)
        ax.set_title(key)
        ax.set_xlabel(x)
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(keys):]:
        ax.axis("off")
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(png, dpi=110)
    plt.close(fig)
