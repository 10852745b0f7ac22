"""The thinking budget's stop text, two forms side by side (issue 19's budget curve): the report's, inserted right
at the cut (paper §4.3: "...directly now.\\n</think>.\\n\\n"), and the one the chat uses, Qwen's two-call
implementation (docs/qwen3.md §4: "\\n\\n" before the sentence, "\\n</think>\\n\\n" after it). Greedy thinking
replies to the first LIMIT test items of every cell at each budget, scored as train/evaluate.py scores them.

    python bench/budget_stop_forms.py report 0,16,32,64,128,256,512 20 OUT.json    # (--device cpu on the CPU)
    python bench/budget_stop_forms.py chat 0,16,32,64,128,256,512 20 OUT.json
"""
import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from qwen3mini import chat                                                  # noqa: E402
from qwen3mini.evaluation.harness import Cell, Run, Selection              # noqa: E402

FORMS = {"report": "Considering the limited time by the user, I have to give the solution based on the thinking "
                   "directly now.\n</think>.\n\n",
         "chat": chat.STOP_THINKING}

p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
p.add_argument("form", choices=sorted(FORMS))
p.add_argument("budgets", help="comma-separated thinking budgets, such as 0,32,128")
p.add_argument("limit", type=int, help="test items a cell")
p.add_argument("out", help="JSON: per budget, per cell, right of n and the answers' token counts")
p.add_argument("--model", default="checkpoints/qwen3mini-chat")
p.add_argument("--device", default=None)
args = p.parse_args()

chat.STOP_THINKING = FORMS[args.form]        # every reader of the stop text looks it up here at call time
model, tok, _ = chat.load(args.model, device=args.device)
selection = Selection(modes=["think"], limit=args.limit, batch_size=1100, difficulties=list(range(1, 15)))
run, sets, results = Run(model, tok, selection, log=lambda line: print(line, flush=True)), selection.test_sets(), {}
for budget in map(int, args.budgets.split(",")):
    cells = [Cell(family, difficulty, "think", budget, problems) for (family, difficulty), problems in sets.items()]
    run.greedy(cells, "think", budget)
    results[budget] = [{"family": c.family, "difficulty": c.difficulty, "n": len(c.greedy),
                        "correct": sum(s.correct for s in c.greedy),
                        "answer_tokens": [s.answer_tokens for s in c.greedy],
                        "example": c.example, "misses": c.misses} for c in cells]
    print(args.form, budget, sum(c["correct"] for c in results[budget]), "/", sum(c["n"] for c in results[budget]))
with open(args.out + ".tmp", "w") as f:
    json.dump(results, f)
os.replace(args.out + ".tmp", args.out)
