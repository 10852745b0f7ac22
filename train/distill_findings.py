#!/usr/bin/env python
"""The findings card's figures (issue 20) from a distillation run, train/run_distill.sh's output folder, and the
teacher's evaluation: Table 21 (pass@1, pass@16 and GPU-seconds of off-policy distillation alone, then + RL and
+ on-policy distillation), each model's ThinkFollow, thinking against non-thinking, the budget curves (Figure 2),
the MoE student against the dense one, and passkey retrieval with and without YaRN.

    python train/distill_findings.py runs/distill --teacher runs/posttrain/eval_rl_general/evaluation.json \
        --out docs/findings

Writes OUT/findings.json, OUT/findings.md (the tables), OUT/budget_curves.png and, once the dense student's arms
are evaluated, OUT/table21.png, and prints the Markdown. Greedy pass@1 is pooled over the thinking cells without
a budget, with its Wilson 95% interval; pass@16 is the unbiased estimate over 16 samples per item
(train/evaluate.py --samples 16), averaged over items.
"""
import argparse
import json
import os

from qwen3mini.evaluation.report import pooled, style_budget_axes
from qwen3mini.tasks.metrics import wilson_interval
from qwen3mini.training.checkpoints import write_atomic

ARMS = {"off-policy": ("student", "off_policy", "student_off_policy"),       # label: (student, stage, eval name)
        "+ RL": ("student", "rl", "student_rl"),
        "+ on-policy": ("student", "on_policy", "student_on_policy"),
        "+ off-policy, continued": ("student", "off_policy_more", "student_off_policy_more"),
        "MoE off-policy": ("student-moe", "off_policy", "student-moe_off_policy"),
        "MoE + on-policy": ("student-moe", "on_policy", "student-moe_on_policy")}
MULTI_STEP = ("mul", "expr", "linear", "countdown")         # the families that take several steps to solve


def read_json(path: str) -> dict | None:
    return json.load(open(path)) if os.path.exists(path) else None


def stage_seconds(runs: str) -> dict:
    """Stage name -> wall seconds of train/run_distill.sh's times.tsv (summed over the calls that ran it)."""
    seconds = {}
    if os.path.exists(os.path.join(runs, "times.tsv")):
        for line in open(os.path.join(runs, "times.tsv")):
            name, _, value = line.strip().partition("\t")
            seconds[name] = seconds.get(name, 0) + int(value)
    return seconds


def accuracy(cells: list[dict]) -> dict:
    correct, n = pooled(cells)
    return {"accuracy": correct / n, "n": n, "wilson95": list(wilson_interval(correct, n))} if n else None


def pass_at(cells: list[dict], k: str) -> float | None:
    """The item-weighted mean of the cells' pass@k (None when no cell sampled k replies)."""
    sampled = [c for c in cells if k in (c.get("pass@k") or {})]
    return sum(c["pass@k"][k] * c["n"] for c in sampled) / sum(c["n"] for c in sampled) if sampled else None


def model_figures(evaluation: dict) -> dict:
    """One evaluation's figures: pass@1 and pass@16 in both modes, per family too, ThinkFollow, the budget curve."""
    cells = evaluation["cells"]
    figures = {}
    for mode in ("think", "no-think"):
        greedy = [c for c in cells if c["mode"] == mode and c["budget"] is None]
        families = dict.fromkeys(c["family"] for c in greedy)
        figures[mode] = {"pass@1": accuracy(greedy), "pass@16": pass_at(greedy, "16"),
                         "by_family": {f: accuracy([c for c in greedy if c["family"] == f]) for f in families},
                         "multi_step": accuracy([c for c in greedy if c["family"] in MULTI_STEP])}
    think = [c for c in cells if c["mode"] == "think"]
    budgets = sorted({c["budget"] for c in think if c["budget"] is not None})
    figures["budget_curve"] = {str(b): accuracy([c for c in think if c["budget"] == b])["accuracy"]
                               for b in budgets}
    figures["budget_curve"]["unlimited"] = figures["think"]["pass@1"]["accuracy"]
    figures["thinkfollow"] = evaluation.get("thinkfollow")
    figures["ended_within_1024"] = evaluation.get("ended_within_1024")
    return figures


def collect(runs: str, teacher: str | None) -> dict:
    seconds = stage_seconds(runs)
    models, gpu = {}, {}
    for label, (student, stage, name) in ARMS.items():
        evaluation = read_json(os.path.join(runs, f"eval_{name}", "evaluation.json"))
        if evaluation:
            models[label] = model_figures(evaluation)
        summary = read_json(os.path.join(runs, student, stage, "summary.json"))
        if summary:
            gpu[label] = {"stage_wall_seconds": seconds.get(f"{student}_{stage}"),
                          "train_seconds": round(summary["train_seconds"], 1)}
    if teacher:
        models["teacher"] = model_figures(json.load(open(teacher)))
    students = {}
    for student in ("student", "student-moe"):
        folder = os.path.join(runs, student)
        losses = {stage: (read_json(os.path.join(folder, stage, "summary.json")) or {}).get("final_val_loss")
                  for stage in ("s1", "s2", "s3", "off_policy")}
        long_context = read_json(os.path.join(folder, "long_context", "long_context.json"))
        students[student] = {"val_loss": losses, "long_context": long_context,
                             "pretrain_seconds": {s: seconds.get(f"{student}_{s}") for s in ("s1", "s2", "s3")}}
    return {"runs": runs, "teacher": teacher, "models": models, "gpu_seconds": gpu, "students": students}


def percent(figure: dict | None) -> str:
    if not figure:
        return "-"
    low, high = figure["wilson95"]
    return f"{100 * figure['accuracy']:.1f} [{100 * low:.0f}, {100 * high:.0f}]"


def markdown(findings: dict) -> str:
    models, gpu = findings["models"], findings["gpu_seconds"]
    lines = ["Table 21 (thinking mode, greedy pass@1 with Wilson 95% interval; pass@16 over 16 samples):", "",
             "| model | pass@1 % | pass@16 % | GPU-seconds of the stage (training) |", "|---|---|---|---|"]
    for label in ARMS:
        if label in models:
            m, g = models[label]["think"], gpu.get(label, {})
            p16 = f"{100 * m['pass@16']:.1f}" if m["pass@16"] is not None else "-"
            wall, train = (g.get(key) if g.get(key) is not None else "-" for key in ("stage_wall_seconds",
                                                                                  "train_seconds"))
            lines.append(f"| {label} | {percent(m['pass@1'])} | {p16} | {wall} ({train}) |")
    lines += ["", "Both modes, ThinkFollow, the budget curve (greedy accuracy in thinking mode by budget):", "",
              "| model | think pass@1 % | no-think pass@1 % | multi-step think % | multi-step no-think % | "
              "ThinkFollow % | budget curve |", "|---|---|---|---|---|---|---|"]
    for label, m in models.items():
        follow = m["thinkfollow"]
        follow = percent(follow) if follow and follow.get("n") else "-"
        curve = ", ".join(f"{b}: {100 * a:.0f}" for b, a in m["budget_curve"].items())
        lines.append(f"| {label} | {percent(m['think']['pass@1'])} | {percent(m['no-think']['pass@1'])} | "
                     f"{percent(m['think']['multi_step'])} | {percent(m['no-think']['multi_step'])} | {follow} | "
                     f"{curve} |")
    lines += ["", "The students (validation loss after each pre-training stage and off-policy distillation; "
              "greedy passkey retrieval and retrieval in S3's own form at 1x, 2x, 4x the S3 length):", "",
              "| student | S1 | S2 | S3 | off-policy | passkey, RoPE | passkey, YaRN x4 | S3 form, RoPE | "
              "S3 form, YaRN x4 |", "|---|---|---|---|---|---|---|---|---|"]
    for student, s in findings["students"].items():
        losses = " | ".join(f"{v:.3f}" if v is not None else "-" for v in s["val_loss"].values())
        retrieval = ["-"] * 4
        if s["long_context"]:
            variants = list(s["long_context"]["variants"].values())
            retrieval = [", ".join(f"{k} {100 * v:.0f}%" for k, v in variant.get(key, {}).items()) or "-"
                         for key in ("passkey_accuracy", "retrieval_accuracy") for variant in variants]
        lines.append(f"| {student} | {losses} | {' | '.join(retrieval)} |")
    return "\n".join(lines) + "\n"


def plot(findings: dict, out: str):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    models = findings["models"]
    fig, ax = plt.subplots(figsize=(7, 4.5))
    budgets = list(dict.fromkeys(b for m in models.values() for b in m["budget_curve"]))
    budgets.sort(key=lambda b: float("inf") if b == "unlimited" else int(b))
    for label, m in models.items():      # a model evaluated at fewer budgets has points at its own
        curve = m["budget_curve"]
        ax.plot([budgets.index(b) for b in curve], list(curve.values()), marker="o", label=label,
                **(dict(color="black", linewidth=2.5) if label == "teacher" else {}))
    style_budget_axes(ax, budgets, "Figure 2 at our scale: thinking-mode accuracy against the budget")
    fig.tight_layout()
    fig.savefig(os.path.join(out, "budget_curves.png"), dpi=110)
    plt.close(fig)

    arms = [a for a in ("off-policy", "+ RL", "+ on-policy", "+ off-policy, continued") if a in models]
    if not arms:
        return
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    for i, arm in enumerate(arms):
        m = models[arm]["think"]
        low, high = m["pass@1"]["wilson95"]
        left.bar(i - 0.2, m["pass@1"]["accuracy"], 0.4, yerr=[[m["pass@1"]["accuracy"] - low],
                 [high - m["pass@1"]["accuracy"]]], color="tab:blue", label="pass@1" if i == 0 else None)
        if m["pass@16"] is not None:
            left.bar(i + 0.2, m["pass@16"], 0.4, color="tab:orange", label="pass@16" if i == 0 else None)
        right.bar(i, findings["gpu_seconds"].get(arm, {}).get("train_seconds") or 0, 0.6, color="tab:grey")
    for ax, title in ((left, "dense student, thinking mode"), (right, "training GPU-seconds of the stage")):
        ax.set_xticks(range(len(arms)), arms)
        ax.set_title(title)
        ax.grid(alpha=0.3, axis="y")
    left.set_ylim(0, 1)
    left.legend()
    fig.suptitle("Table 21 at our scale")
    fig.tight_layout()
    fig.savefig(os.path.join(out, "table21.png"), dpi=110)
    plt.close(fig)


def main(argv=None):
    p = argparse.ArgumentParser(prog="distill_findings.py", description=__doc__.split("\n\n")[0])
    p.add_argument("runs", help="train/run_distill.sh's output folder")
    p.add_argument("--teacher", help="the teacher's evaluation.json (train/evaluate.py), for its budget curve")
    p.add_argument("--out", default="runs/findings", help="output folder (default runs/findings)")
    args = p.parse_args(argv)
    if not os.path.isdir(args.runs):
        p.error(f"{args.runs}: no such folder (train/run_distill.sh writes it)")
    if args.teacher and not os.path.exists(args.teacher):
        p.error(f"--teacher {args.teacher}: no such file")
    findings = collect(args.runs, args.teacher)
    os.makedirs(args.out, exist_ok=True)
    write_atomic(os.path.join(args.out, "findings.json"), json.dumps(findings, indent=1))
    text = markdown(findings)
    write_atomic(os.path.join(args.out, "findings.md"), text)
    plot(findings, args.out)
    print(text)


if __name__ == "__main__":
    main()
