"""General RL (issue 19, stage 4): the queries of each kind, the rule-based rewards, the stage on the CPU."""
import dataclasses
import json
import random

import pytest

from qwen3mini.config import PRESETS
from qwen3mini.evaluation.thinkfollow import FLAGS
from qwen3mini.model import Qwen3ForCausalLM
from qwen3mini.tasks import FAMILIES, traces
from qwen3mini.tasks.instructions import CONSTRAINTS, reply_following
from qwen3mini.training.general_rl import FORMAT_CREDIT, KINDS, Query, make_query, reward
from qwen3mini.training.logs import read_log
from qwen3mini.training.stage import save_pretrained

from test_sft import TOKENIZER

PROBLEMS = [FAMILIES[f].generate(random.Random(i), 2) for i in range(10) for f in ("add", "sort", "chain")]


def thinking(problem, answer=None):
    return f"<think>\n{traces.thinking(problem)}\n</think>\n\n{answer or traces.answer(problem)}"


def direct(problem, answer=None):
    return f"<think>\n\n</think>\n\n{answer or traces.answer(problem)}"


@pytest.mark.parametrize("kind", KINDS)
def test_queries_of_every_kind(kind):
    for i in range(20):
        query = make_query(kind, random.Random(i), PROBLEMS)
        assert query.kind == kind and query.messages[-1]["role"] == "user" and query.mode in ("think", "no-think")
        last = query.messages[-1]["content"]
        if last.endswith(FLAGS["no-think"]):
            assert query.mode == "no-think"
        if not query.enable_thinking:                      # the hard switch: no flag, non-thinking mode
            assert kind in ("reasoning", "instruction") and query.mode == "no-think"
            assert not any(last.endswith(f) for f in FLAGS.values())
        if kind == "instruction":
            assert CONSTRAINTS[query.constraint] in last
        if kind == "tool":
            assert query.tools == ["calculator"] and 4 <= query.problem.difficulty <= 6
        else:
            assert query.problem.question in last and not query.tools
    if kind in ("reasoning", "instruction"):
        assert {make_query(kind, random.Random(i), PROBLEMS).enable_thinking for i in range(40)} == {True, False}


def test_rewards_need_every_rule():
    p = PROBLEMS[0]
    think, no_think = Query("reasoning", [], p, "think"), Query("reasoning", [], p, "no-think")
    wrong = f"\\boxed{{{int(p.answer) + 1}}}"
    assert reward(think, thinking(p), ended=True) == 1.0
    assert reward(think, thinking(p), ended=False) == 0.0                 # ran into the token cap
    assert reward(think, direct(p), ended=True) == 0.0                    # the wrong mode
    assert reward(no_think, direct(p), ended=True) == 1.0
    assert reward(no_think, thinking(p), ended=True) == 0.0
    assert reward(think, thinking(p, wrong), ended=True) == FORMAT_CREDIT  # the wrong answer, the format kept
    assert reward(think, thinking(p, wrong), ended=False) == 0.0
    assert reward(no_think, thinking(p, wrong), ended=True) == 0.0        # wrong answer and wrong mode
    for name in CONSTRAINTS:
        query = Query("instruction", [], p, "no-think", constraint=name)
        assert reward(query, direct(p, reply_following(p, name)), ended=True) == 1.0, name
        assert reward(query, direct(p, reply_following(p, name, str(int(p.answer) + 1))),
                      ended=True) == FORMAT_CREDIT, name
    assert reward(Query("instruction", [], p, "no-think", constraint="capitals"),
                  direct(p, f"the answer is {p.answer}"), ended=True) == 0.0      # lower case under "capitals"
    assert reward(no_think, direct(p, f"The answer is {int(p.answer) + 1}."), ended=True) == 0.0   # no \boxed{}
    hard = Query("reasoning", [], p, "no-think", enable_thinking=False)     # the empty block is in the prompt
    assert reward(hard, traces.answer(p), ended=True) == 1.0
    assert reward(hard, wrong, ended=True) == FORMAT_CREDIT
    assert reward(hard, direct(p), ended=True) == 0.0                     # a second block of its own
    after = f"{traces.thinking(p)}\n</think>\n\n{traces.answer(p)}"       # thinking written after the block
    assert reward(hard, after, ended=True) == 0.0
    assert 0 < FORMAT_CREDIT < 1


def test_tiny_stage_end_to_end(tmp_path, capsys):
    from train import rl_general
    start = tmp_path / "start"
    model = Qwen3ForCausalLM(dataclasses.replace(PRESETS["tiny"], vocab_size=16384, max_position_embeddings=1024))
    save_pretrained(model, str(start), TOKENIZER, post_trained=True)
    out = tmp_path / "run"
    rl_general.main(["--preset", "tiny", "--init_from", str(start), "--out_dir", str(out),
                     "--mix", "reasoning:0.25,dialogue:0.25,instruction:0.25,tool:0.25"])
    log = read_log(str(out / "log.jsonl"))
    assert [r["step"] for r in log] == [1, 2] and all(0 <= r["reward"] <= 1 for r in log)
    summary = json.load(open(out / "summary.json"))
    assert summary["pool"]["queries"] == {"reasoning": 2, "dialogue": 2, "instruction": 2, "tool": 2}
    assert "RL (general): 2 steps" in capsys.readouterr().out


def test_bad_mix():
    from train import rl_general
    with pytest.raises(ValueError, match="--mix"):
        rl_general.main(["--preset", "tiny", "--mix", "reasoning:0.5,chess:0.5"])
    with pytest.raises(ValueError, match="sum to 1"):
        rl_general.main(["--preset", "tiny", "--mix", "reasoning:0.5"])
