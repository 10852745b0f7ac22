"""infer/generate.py: batched generation to JSONL, with modes and the two-pass thinking budget.

Uses the scripted checkpoint of conftest.py: thinking " one two three four five six", answer "你 ok".
"""
import importlib.util
import json
import os
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SCRIPT = os.path.join(REPO, "infer", "generate.py")
STOP = ("Considering the limited time by the user, I have to give the solution based on the thinking directly "
        "now.\n</think>.\n\n")
GREEDY = dict(temperature=0.0, top_p=1.0, top_k=0, presence_penalty=0.0)


def load_generate_module():
    spec = importlib.util.spec_from_file_location("qwen3mini_generate_cli", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


gen = load_generate_module()


@pytest.fixture(scope="module")
def loaded(scripted_model, tokenizer):
    import qwen3mini
    return qwen3mini.load_model(scripted_model), tokenizer


def prompts(tokenizer, think, texts=("Hi", "A longer question, with more tokens in it?", "你好")):
    return [gen.prompt_ids(tokenizer, {"prompt": t}, think, raw=False) for t in texts]


def texts(tokenizer, result):
    return (gen.decode(tokenizer, result["completion_ids"]), gen.decode(tokenizer, result["thinking_ids"]),
            gen.decode(tokenizer, result["response_ids"]))


def test_batch_without_budget(loaded):
    model, tok = loaded
    results = gen.generate_batch(model, tok, prompts(tok, think=True), 64, GREEDY)
    for r in results:
        assert texts(tok, r) == ("<think> one two three four five six</think>\n\n你 ok<|im_end|>",
                                 " one two three four five six", "\n\n你 ok")
        assert r["finish_reason"] == "stop" and r["generated_tokens"] == 14


@pytest.mark.parametrize("budget", [0, 2, 5])
def test_batch_with_budget_inserts_the_stop_text(loaded, budget):
    model, tok = loaded
    thinking = "".join([" one", " two", " three", " four", " five"][:budget])
    for r in gen.generate_batch(model, tok, prompts(tok, think=True), 64, GREEDY, budget=budget):
        assert texts(tok, r) == ("<think>" + thinking + STOP + "你 ok<|im_end|>", thinking, "你 ok")
        assert r["finish_reason"] == "stop"
        assert r["generated_tokens"] == 1 + budget + 5          # <think>, budget, 你 (3 bytes), " ok", end


def test_budget_in_a_mixed_batch(loaded):
    """Rows that stop early, rows that hit the budget and rows without thinking share one batch."""
    model, tok = loaded
    thinking, direct = prompts(tok, think=True, texts=["a"]), prompts(tok, think=False, texts=["a long one"])
    results = gen.generate_batch(model, tok, thinking + direct + thinking, 64, GREEDY, budget=5)
    budgeted = ("<think> one two three four five" + STOP + "你 ok<|im_end|>", " one two three four five", "你 ok")
    assert [texts(tok, r) for r in results] == [budgeted, ("你 ok<|im_end|>", "", "你 ok"), budgeted]
    assert [r["generated_tokens"] for r in results] == [11, 5, 11]


def test_budget_larger_than_the_thinking_changes_nothing(loaded):
    model, tok = loaded
    plain = gen.generate_batch(model, tok, prompts(tok, think=True), 64, GREEDY)
    budgeted = gen.generate_batch(model, tok, prompts(tok, think=True), 64, GREEDY, budget=7)
    assert [r["completion_ids"] for r in budgeted] == [r["completion_ids"] for r in plain]


def test_no_think_and_length_limit(loaded):
    model, tok = loaded
    (r,) = gen.generate_batch(model, tok, prompts(tok, think=False, texts=["Hi"]), 64, GREEDY)
    assert texts(tok, r) == ("你 ok<|im_end|>", "", "你 ok")
    (r,) = gen.generate_batch(model, tok, prompts(tok, think=True, texts=["Hi"]), 4, GREEDY, budget=2)
    assert r["finish_reason"] == "length" and r["generated_tokens"] == 4
    assert texts(tok, r)[0] == "<think> one two" + STOP + "\ufffd"     # 你's first byte, alone
    assert r["response_ids"] == [tok.vocab.index(bytes([0xE4]))]


def test_command_line_jsonl_and_text_inputs(scripted_model, tmp_path):
    jsonl = tmp_path / "prompts.jsonl"
    jsonl.write_text(json.dumps({"prompt": "Hi", "id": "a"}) + "\n\n" +
                     json.dumps({"messages": [{"role": "system", "content": "S"},
                                              {"role": "user", "content": "Q /no_think"}], "id": "b"}) + "\n")
    out = tmp_path / "out.jsonl"
    proc = subprocess.run([sys.executable, SCRIPT, "--model", scripted_model, "--input", str(jsonl),
                           "--output", str(out), "--num-samples", "2", "--batch-size", "3",
                           "--thinking-budget", "1", "--seed", "0"],
                          capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert [(r["id"], r["index"], r["sample"]) for r in records] == [("a", 0, 0), ("a", 0, 1), ("b", 1, 0),
                                                                    ("b", 1, 1)]
    for r in records:
        assert r["completion"] == "<think> one" + STOP + "你 ok<|im_end|>"
        assert (r["thinking"], r["response"], r["finish_reason"]) == (" one", "你 ok", "stop")
        assert r["completion_tokens"] == 7 and r["prompt_tokens"] > 5


def test_text_input_is_one_prompt_per_line(tmp_path):
    text = tmp_path / "prompts.txt"
    text.write_text("first\n\nsecond line\n")
    assert gen.read_prompts(str(text)) == [{"prompt": "first"}, {"prompt": "second line"}]


def test_bad_input_names_the_line(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "ok"}\n{"nope": 1}\n')
    with pytest.raises(gen.ChatError, match=r"bad.jsonl:2: expected an object"):
        gen.read_prompts(str(bad))
    bad.write_text('{"prompt": "ok"}\nnot json\n')
    with pytest.raises(gen.ChatError, match=r"bad.jsonl:2: not valid JSON"):
        gen.read_prompts(str(bad))
