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
    cells = [c for c in results["cells"] if c["budget"] is None]
    families = list(dict.fromkeys(c["family"] for c in cells))
    for ax, family in _family_panels(plt, families):
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
    _save_panels(plt, path, "accuracy")


def _family_panels(plt, families):
    """(axis, family) for a grid of panels, one per family, difficulty on x and accuracy on y."""
    from matplotlib.ticker import MaxNLocator
    columns = min(4, len(families))
    rows = -(-len(families) // columns)
    fig, axes = plt.subplots(rows, columns, figsize=(3.6 * columns, 2.9 * rows), squeeze=False)
    for ax in list(axes.flat)[len(families):]:
        ax.axis("off")
    for ax, family in zip(axes.flat, families):
        ax.set_title(family)
        ax.set_xlabel("difficulty")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylim(-0.03, 1.03)
        ax.grid(alpha=0.3)
        yield ax, family


def _save_panels(plt, path: str, ylabel: str):
    fig = plt.gcf()
    fig.axes[0].set_ylabel(ylabel)
    fig.axes[0].legend(fontsize=7)
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
    style_budget_axes(ax, labels, "Accuracy against the thinking budget")
    fig.tight_layout()
    fig.savefig(path, format="png", dpi=110)
    plt.close(fig)


def style_budget_axes(ax, labels: list[str], title: str):
    """A budget curve's axes: one tick per budget (``labels``), greedy accuracy from 0 to 1."""
    ax.set_xticks(range(len(labels)), labels)
    ax.set_xlabel("thinking budget (tokens)")
    ax.set_ylabel("accuracy (greedy)")
    ax.set_ylim(-0.03, 1.03)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)


# ---------------------------------------------------------------------------------------------- comparisons
def greedy_cells(results: dict, mode: str = "think") -> dict:
    """(family, difficulty) -> cell of ``mode`` without a budget."""
    return {(c["family"], c["difficulty"]): c for c in results["cells"] if c["mode"] == mode and c["budget"] is None}


def reach(cells: dict, family: str, level: float = 0.5) -> int | None:
    """The last difficulty of ``family`` before its greedy pass@1 first falls below ``level`` (None: below
    it from the first difficulty on): how far a model's competence extends along the ladder."""
    last = None
    for (name, difficulty), cell in sorted(cells.items()):
        if name == family:
            if cell["pass@1"] < level:
                return last
            last = difficulty
    return last


def compare(runs: dict, mode: str = "think", edge: tuple = (0.05, 0.75)) -> dict:
    """Figures of several evaluations of the same cells (``runs``: label -> results), against the first:
    per cell each label's greedy pass@1 (and largest pass@k); each family's reach; and the mean gain over the
    *edge* cells, where the first model's greedy pass@1 lies in ``edge`` (it solves them only sometimes)."""
    labels, tables = list(runs), {label: greedy_cells(r, mode) for label, r in runs.items()}
    base = tables[labels[0]]
    shared = [key for key in base if all(key in t for t in tables.values())]
    rows = []
    for key in shared:
        row = {"family": key[0], "difficulty": key[1]}
        for label in labels:
            cell = tables[label][key]
            k = max(cell["pass@k"], key=int) if cell["pass@k"] else None
            row[label] = {"pass@1": cell["pass@1"], "n": cell["n"], "wilson95": cell["wilson95"],
                          "sampled_pass@1": cell["pass@k"]["1"] if k else None,
                          f"pass@{k}" if k else "pass@k": cell["pass@k"][k] if k else None}
        rows.append(row)
    edge_rows = [r for r in rows if edge[0] <= r[labels[0]]["pass@1"] <= edge[1]]
    families = list(dict.fromkeys(key[0] for key in shared))
    return {"mode": mode, "labels": labels, "cells": rows, "edge": list(edge),
            "edge_cells": [f"{r['family']}/{r['difficulty']}" for r in edge_rows],
            "edge_mean": {label: sum(r[label]["pass@1"] for r in edge_rows) / max(1, len(edge_rows))
                          for label in labels},
            "reach": {label: {f: reach(tables[label], f) for f in families} for label in labels}}


def comparison_markdown(figures: dict) -> str:
    """The comparison as a Markdown table (greedy pass@1 per label, the gain of the last over the first),
    then the reach of each family and the edge cells' mean."""
    labels = figures["labels"]
    lines = ["| cell | " + " | ".join(labels) + f" | {labels[-1]} - {labels[0]} |",
             "|---|" + "---|" * (len(labels) + 1)]
    for row in figures["cells"]:
        values = [row[label]["pass@1"] for label in labels]
        edge = " (edge)" if f"{row['family']}/{row['difficulty']}" in figures["edge_cells"] else ""
        lines.append(f"| {row['family']} {row['difficulty']}{edge} | " + " | ".join(f"{v:.2f}" for v in values)
                     + f" | {values[-1] - values[0]:+.2f} |")
    lines += ["", "Reach (last difficulty before greedy pass@1 < 0.5): " + "; ".join(
        f"{label}: " + ", ".join(f"{f} {d}" for f, d in figures["reach"][label].items()) for label in labels),
        "", f"Edge cells ({labels[0]}'s pass@1 in {figures['edge']}: {len(figures['edge_cells'])} cells), mean "
        "greedy pass@1: " + ", ".join(f"{label} {v:.3f}" for label, v in figures["edge_mean"].items())]
    return "\n".join(lines) + "\n"


def plot_comparison(figures: dict, path: str):
    """One panel per family: greedy pass@1 against difficulty, a line per label."""
    plt = _pyplot()
    families = list(dict.fromkeys(r["family"] for r in figures["cells"]))
    for ax, family in _family_panels(plt, families):
        line = [r for r in figures["cells"] if r["family"] == family]
        for label in figures["labels"]:
            ax.plot([r["difficulty"] for r in line], [r[label]["pass@1"] for r in line], marker="o", markersize=3,
                    label=label)
    _save_panels(plt, path, f"greedy pass@1 ({figures['mode']})")
