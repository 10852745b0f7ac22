"""train/distill_findings.py on a hand-made run folder: the tables' figures are the ones the files hold."""
import json
import os

from train import distill_findings


def cell(family, mode, correct, budget=None, pass16=None):
    return {"family": family, "difficulty": 1, "mode": mode, "budget": budget, "n": 10, "correct": correct,
            "pass@k": {"1": correct / 10, "16": pass16} if pass16 is not None else {}}


def evaluation(think_correct, pass16, follow):
    cells = [cell("add", "think", think_correct, pass16=pass16), cell("mul", "think", 4, pass16=pass16),
             cell("add", "no-think", 9), cell("mul", "no-think", 1),
             cell("add", "think", 2, budget=32), cell("mul", "think", 0, budget=32)]
    return {"cells": cells, "thinkfollow": {"n": 10, "correct": follow, "accuracy": follow / 10,
                                            "wilson95": [0.0, 1.0]}}


def write(path, data):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    json.dump(data, open(path, "w"))


def test_findings_of_a_run(tmp_path, capsys):
    runs = tmp_path / "distill"
    write(runs / "eval_student_off_policy" / "evaluation.json", evaluation(6, 0.8, 9))
    write(runs / "eval_student_on_policy" / "evaluation.json", evaluation(8, 0.9, 10))
    write(runs / "student" / "off_policy" / "summary.json", {"train_seconds": 50.0, "final_val_loss": 1.0})
    write(runs / "student" / "on_policy" / "summary.json", {"train_seconds": 120.04})
    write(runs / "student" / "s1" / "summary.json", {"final_val_loss": 3.5})
    write(runs / "student" / "long_context" / "long_context.json", {"variants": {
        "RoPE (no YaRN)": {"passkey_accuracy": {"1x": 0.0, "2x": 0.0}, "retrieval_accuracy": {"1x": 0.5}},
        "YaRN x4": {"passkey_accuracy": {"1x": 0.25}}}})
    (runs / "times.tsv").write_text("student_off_policy\t70\nstudent_on_policy\t100\nstudent_on_policy\t40\n")
    distill_findings.main([str(runs), "--out", str(tmp_path / "out")])
    findings = json.load(open(tmp_path / "out" / "findings.json"))
    on = findings["models"]["+ on-policy"]
    assert on["think"]["pass@1"]["accuracy"] == 12 / 20 and on["think"]["pass@16"] == 0.9
    assert on["no-think"]["multi_step"]["accuracy"] == 1 / 10
    assert on["budget_curve"] == {"32": 2 / 20, "unlimited": 12 / 20}
    assert findings["gpu_seconds"]["+ on-policy"] == {"stage_wall_seconds": 140, "train_seconds": 120.0}
    assert "+ RL" not in findings["models"] and "+ off-policy, continued" not in findings["models"]
    assert findings["students"]["student"]["val_loss"] == {"s1": 3.5, "s2": None, "s3": None, "off_policy": 1.0}
    out = capsys.readouterr().out
    assert "| + on-policy | 60.0 [39, 78] | 90.0 | 140 (120.0) |" in out
    assert "| student | 3.500 | - | - | 1.000 | 1x 0%, 2x 0% | 1x 25% | 1x 50% | - |" in out
    assert os.path.getsize(tmp_path / "out" / "table21.png") > 0

    # The second control, off-policy distillation continued, joins Table 21 once it is evaluated.
    write(runs / "eval_student_off_policy_more" / "evaluation.json", evaluation(7, 0.85, 9))
    write(runs / "student" / "off_policy_more" / "summary.json", {"train_seconds": 118.0})
    distill_findings.main([str(runs), "--out", str(tmp_path / "out")])
    assert "| + off-policy, continued | 55.0 [34, 74] | 85.0 | - (118.0) |" in capsys.readouterr().out
    assert os.path.getsize(tmp_path / "out" / "budget_curves.png") > 0
