"""Writing an evaluation: ``evaluation.json`` (every figure) and two plots, accuracy by difficulty per family
(one line per mode) and accuracy against the thinking budget (one line per family). Every file is written
under a temporary name first and all are renamed only once all are complete, so an earlier result is never
lost to a failed or interrupted write. matplotlib (a test extra) is imported only here, when plotting."""
import json
import os

JSON_NAME = "evaluation.json"
DIFFICULTY_PLOT = "accuracy_by_difficulty.png"
BUDGET_PLOT = "accuracy_by_budget.png"
MODE_STYLE = {"think": dict(color="tab:blue", marker="o"), "no-think": dict(color="tab:orange", marker="s")}


def write_report(results: dict, out_dir: str) -> list[str]:
    """Write the JSON and the plots into ``out_dir`` (created if missing); returns the paths written."""
    os.makedirs(out_dir, exist_ok=True)
    writers = {JSON_NAME: _write_json, DIFFICULTY_PLOT: plot_accuracy_by_difficulty}
    if any(c["budget"] is not None for c in results["cells"]):
        writers[BUDGET_PLOT] = plot_accuracy_by_budget
    staged = []
    try:
        for name, write in writers.items():
            path = os.path.join(out_dir, name)
            staged.append((f"{path}.tmp", path))
            write(results, f"{path}.tmp")
    except BaseException:
        for temporary, _ in staged:
            if os.path.exists(temporary):
                os.remove(temporary)
        raise
    for temporary, path in staged:
        os.replace(temporary, path)
    return [path for _, path in staged]


def _write_json(results: dict, path: str):
    with open(path, "w") as f:
        json.dump(results, f, indent=1, ensure_ascii=False)
        f.write("\n")


def pooled(cells: list[dict]) -> tuple[int, int]:
    """(correct, n) of greedy replies summed over ``cells``."""
    return sum(c["correct"] for c in cells), sum(c["n"] for c in cells)


def _pyplot():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def plot_accuracy_by_difficulty(results: dict, path: str):
    """One panel per family: greedy pass@1 (Wilson 95% bars) against difficulty, a line per mode, without a
    thinking budget; dashed, the largest pass@k when samples were drawn."""
    plt = _pyplot()
    from matplotlib.ticker import MaxNLocator
    cells = [c for c in results["cells"] if c["budget"] is None]
    families = list(dict.fromkeys(c["family"] for c in cells))
    columns = min(4, len(families))
    rows = -(-len(families) // columns)
    fig, axes = plt.subplots(rows, columns, figsize=(3.6 * columns, 2.9 * rows), squeeze=False)
    for ax, family in zip(axes.flat, families):
        for mode in MODE_STYLE:
            line = [c for c in cells if c["family"] == family and c["mode"] == mode]
            if not line:
                continue
            x = [c["difficulty"] for c in line]
            y = [c["pass@1"] for c in line]
            errors = [[c["pass@1"] - c["wilson95"][0] for c in line], [c["wilson95"][1] - c["pass@1"] for c in line]]
            ax.errorbar(x, y, yerr=errors, capsize=2, label=f"{mode} pass@1", **MODE_STYLE[mode])
            if line[0]["pass@k"]:
                k = max(line[0]["pass@k"], key=int)
                ax.plot(x, [c["pass@k"][k] for c in line], linestyle="--", label=f"{mode} pass@{k}",
                        color=MODE_STYLE[mode]["color"])
        ax.set_title(family)
        ax.set_xlabel("difficulty")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylim(-0.03, 1.03)
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(families):]:
        ax.axis("off")
    axes.flat[0].set_ylabel("accuracy")
    axes.flat[0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, format="png", dpi=110)
    plt.close(fig)


def plot_accuracy_by_budget(results: dict, path: str):
    """Greedy accuracy in thinking mode against the thinking budget, pooled over the selected difficulties:
    one line per family and one for all; the last point is no budget (the thinking cells)."""
    plt = _pyplot()
    cells = [c for c in results["cells"] if c["mode"] == "think"]
    budgets = sorted({c["budget"] for c in cells if c["budget"] is not None}) + [None]
    labels = [str(b) if b is not None else "unlimited" for b in budgets]
    fig, ax = plt.subplots(figsize=(7, 4.5))
    families = list(dict.fromkeys(c["family"] for c in cells))
    for family in families + [None]:
        accuracy = []
        for budget in budgets:
            correct, n = pooled([c for c in cells if c["budget"] == budget and family in (None, c["family"])])
            accuracy.append(correct / n)
        style = dict(color="black", linewidth=2.5) if family is None else dict(alpha=0.8)
        ax.plot(range(len(budgets)), accuracy, marker="o", label=family or "all", **style)
    ax.set_xticks(range(len(budgets)), labels)
    ax.set_xlabel("thinking budget (tokens)")
    ax.set_ylabel("accuracy (greedy)")
    ax.set_ylim(-0.03, 1.03)
    ax.set_title("Accuracy against the thinking budget")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, format="png", dpi=110)
    plt.close(fig)
