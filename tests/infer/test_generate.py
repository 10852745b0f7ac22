"""Batched chat generation: qwen3mini.chat.generate_replies (modes, the thinking budget) and infer/generate.py
(JSONL in and out, nothing lost on bad input or interruption, --resume).

Uses the scripted checkpoint of conftest.py: thinking " one two three four five six", answer "你 ok".
"""
import importlib.util
import json
import re
import os
import subprocess
import sys

import pytest

from qwen3mini.chat import STOP_THINKING as STOP, generate_replies, render

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SCRIPT = os.path.join(REPO, "infer", "generate.py")
GREEDY = dict(temperature=0.0, top_p=1.0, top_k=0, presence_penalty=0.0)


def load_generate_script():
    """infer/generate.py as a module, for its command-line parts (scripts are not a package)."""
    spec = importlib.util.spec_from_file_location("qwen3mini_generate_cli", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


cli = load_generate_script()


@pytest.fixture(scope="module")
def loaded(scripted_model, tokenizer):
    import qwen3mini
    return qwen3mini.load_model(scripted_model), tokenizer


def prompts(tokenizer, think, texts=("Hi", "A longer question, with more tokens in it?", "你好")):
    return [render(tokenizer, [{"role": "user", "content": t}], think) for t in texts]


def texts(tokenizer, reply):
    return reply.text, reply.parts.thinking, reply.parts.answer


def test_batch_without_budget(loaded):
    model, tok = loaded
    results = generate_replies(model, tok, prompts(tok, think=True), 64, GREEDY)
    for r in results:
        assert texts(tok, r) == ("<think> one two three four five six</think>\n\n你 ok<|im_end|>",
                                 " one two three four five six", "你 ok")
        assert r.completion.finish_reason == "stop" and r.completion.generated_tokens == 14


@pytest.mark.parametrize("budget", [0, 2, 5])
def test_batch_with_budget_inserts_the_stop_text(loaded, budget):
    model, tok = loaded
    thinking = "".join([" one", " two", " three", " four", " five"][:budget])
    for r in generate_replies(model, tok, prompts(tok, think=True), 64, GREEDY, thinking_budget=budget):
        assert texts(tok, r) == ("<think>" + thinking + STOP + "你 ok<|im_end|>", thinking, "你 ok")
        assert r.completion.finish_reason == "stop"
        assert r.completion.generated_tokens == 1 + budget + 5  # <think>, budget, 你 (3 bytes), " ok", end


def test_budget_in_a_mixed_batch(loaded):
    """Rows that stop early, rows that hit the budget and rows without thinking share one batch."""
    model, tok = loaded
    thinking, direct = prompts(tok, think=True, texts=["a"]), prompts(tok, think=False, texts=["a long one"])
    results = generate_replies(model, tok, thinking + direct + thinking, 64, GREEDY, thinking_budget=5)
    budgeted = ("<think> one two three four five" + STOP + "你 ok<|im_end|>", " one two three four five", "你 ok")
    assert [texts(tok, r) for r in results] == [budgeted, ("你 ok<|im_end|>", "", "你 ok"), budgeted]
    assert [r.completion.generated_tokens for r in results] == [11, 5, 11]


def test_budget_larger_than_the_thinking_changes_nothing(loaded):
    model, tok = loaded
    plain = generate_replies(model, tok, prompts(tok, think=True), 64, GREEDY)
    budgeted = generate_replies(model, tok, prompts(tok, think=True), 64, GREEDY, thinking_budget=7)
    assert [r.completion.tokens for r in budgeted] == [r.completion.tokens for r in plain]


def test_no_think_and_length_limit(loaded):
    model, tok = loaded
    (r,) = generate_replies(model, tok, prompts(tok, think=False, texts=["Hi"]), 64, GREEDY)
    assert texts(tok, r) == ("你 ok<|im_end|>", "", "你 ok")
    (r,) = generate_replies(model, tok, prompts(tok, think=True, texts=["Hi"]), 4, GREEDY, thinking_budget=2)
    assert r.completion.finish_reason == "length" and r.completion.generated_tokens == 4
    assert texts(tok, r)[0] == "<think> one two" + STOP + "\ufffd"     # 你's first byte, alone
    response = r.completion.tokens[r.completion.forced_at + len(tok.encode(STOP)):]
    assert response == [tok.vocab.index(bytes([0xE4]))]


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
    assert cli.read_prompts(str(text)) == [{"prompt": "first"}, {"prompt": "second line"}]


def test_bad_input_names_the_line(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "ok"}\n{"nope": 1}\n')
    with pytest.raises(cli.ChatError, match=r"bad.jsonl:2: expected an object"):
        cli.read_prompts(str(bad))
    bad.write_text('{"prompt": "ok"}\nnot json\n')
    with pytest.raises(cli.ChatError, match=r"bad.jsonl:2: not valid JSON"):
        cli.read_prompts(str(bad))


# ------------------------------------------------------------------------------------- nothing lost, one line
def run_main(argv, capsys):
    """infer/generate.py's main in process: (exit code, stderr's last line)."""
    try:
        code = cli.main([str(a) for a in argv])
    except SystemExit as exit_info:                # argparse
        code = exit_info.code
    return code, capsys.readouterr().err.strip().splitlines()[-1]


@pytest.fixture
def files(tmp_path):
    """An input of three prompts and an existing output that bad runs must leave alone."""
    source, output = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    source.write_text("".join(json.dumps({"prompt": p, "id": i}) + "\n" for i, p in enumerate(["a", "b", "c"])))
    output.write_text("precious\n")
    return source, output


@pytest.mark.parametrize("flag,value,message", [
    ("--temperature", "nan", "argument --temperature must be a number >= 0 (0 = greedy), got nan"),
    ("--temperature", "-0.5", "argument --temperature must be a number >= 0 (0 = greedy), got -0.5"),
    ("--top-p", "1.5", "argument --top-p must be in (0, 1], got 1.5"),
    ("--top-k", "-1", "argument --top-k must be a whole number >= 0 (0 = off), got -1"),
    ("--presence-penalty", "nan", "argument --presence-penalty must be a finite number, got nan"),
    ("--batch-size", "0", "argument --batch-size: must be >= 1"),
    ("--thinking-budget", "-1", "argument --thinking-budget: needs thinking mode (not --no-think / --raw) and N >= 0"),
])
def test_bad_arguments_leave_the_output_alone(files, flag, value, message, capsys):
    source, output = files
    code, last = run_main(["--input", source, "--output", output, flag, value], capsys)
    assert (code, last) == (2, f"generate.py: error: {message}")
    assert output.read_text() == "precious\n"


def test_output_equal_to_input_is_refused(files, capsys):
    source, _ = files
    before = source.read_text()
    code, last = run_main(["--input", source, "--output", source], capsys)
    assert (code, last) == (2, f"generate.py: error: argument --output: {source} is the input file; writing it "
                               "would destroy the input")
    assert source.read_text() == before


def test_missing_output_directory_is_one_line(files, tmp_path, capsys):
    source, _ = files
    code, last = run_main(["--input", source, "--output", tmp_path / "nope" / "out.jsonl"], capsys)
    assert (code, last) == (2, f"generate.py: error: argument --output: no such directory {tmp_path}/nope")


def test_input_that_is_not_utf8_names_the_line(tmp_path):
    bad = tmp_path / "bad.txt"
    bad.write_bytes(b"fine\n\xff\xfeoops\n")
    with pytest.raises(cli.ChatError, match=r"^.*bad\.txt:2: not valid UTF-8 \(byte 0xff at column 1\)$"):
        cli.read_prompts(str(bad))


@pytest.mark.parametrize("messages,problem", [
    ([1], "messages[0] is not a message"), ([{"role": "user"}, "hi"], "messages[1] is not a message"),
    ([{"role": "robot", "content": "x"}], "messages[0] is not a message"),
    ([{"role": "user", "content": 5}], "messages[0] is not a message"),
    ("hi", '"messages" must be a non-empty list'), ([], '"messages" must be a non-empty list')])
def test_messages_that_are_not_messages_name_the_line(tmp_path, messages, problem):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "ok"}\n' + json.dumps({"messages": messages}) + "\n")
    with pytest.raises(cli.ChatError, match=r"bad\.jsonl:2: " + re.escape(problem)):
        cli.read_prompts(str(bad))


def test_an_interrupted_run_keeps_the_old_output_and_resume_finishes_it(files, scripted_model, monkeypatch,
                                                                         capsys):
    source, output = files
    argv = ["--model", scripted_model, "--input", source, "--output", output, "--batch-size", "2", "--seed", "0"]
    calls = []

    def interrupted_after_one_batch(*args, **kwargs):
        if calls:
            raise KeyboardInterrupt
        calls.append(1)
        return generate_replies(*args, **kwargs)
    monkeypatch.setattr(cli, "generate_replies", interrupted_after_one_batch)
    with pytest.raises(KeyboardInterrupt):
        cli.main([str(a) for a in argv])
    assert output.read_text() == "precious\n"                     # untouched until the run is complete
    partial = output.with_name("out.jsonl.partial")
    lines = partial.read_text().splitlines()
    assert [json.loads(line)["id"] for line in lines] == [0, 1]   # the first batch, flushed
    monkeypatch.undo()

    code, last = run_main(argv, capsys)                           # without --resume: refused, nothing touched
    assert (code, last) == (2, f"generate.py: error: {partial} holds an interrupted run: --resume continues it; "
                               "delete it to start over")
    # a crash in the middle of writing: the second line is cut; the first is kept as it is (marked to see it)
    first = {**json.loads(lines[0]), "completion": "kept"}
    partial.write_text(json.dumps(first) + "\n" + lines[1][:20])
    assert cli.main([str(a) for a in argv + ["--resume"]]) == 0
    records = [json.loads(line) for line in output.read_text().splitlines()]
    assert [(r["id"], r["index"], r["sample"]) for r in records] == [(0, 0, 0), (1, 1, 0), (2, 2, 0)]
    assert records[0]["completion"] == "kept" and records[1]["completion"] == "<think> one two three four five " \
        "six</think>\n\n你 ok<|im_end|>"
    assert not partial.exists()

    # resuming a finished run generates nothing; resuming from another input is refused
    assert cli.main([str(a) for a in argv + ["--resume"]]) == 0
    assert [json.loads(line) for line in output.read_text().splitlines()] == records
    partial.write_text(json.dumps({**records[0], "prompt": "changed"}) + "\n")
    code, last = run_main(argv + ["--resume"], capsys)
    assert code == 2 and last.endswith("line 1 is not sample 0 of input line 1: it comes from another input or "
                                       "other arguments; delete the file to start over")


def test_input_and_output_paths_are_checked_first(tmp_path):
    source = tmp_path / "in.txt"
    source.write_text("hi\n")
    for input_path, output, message in [
            (tmp_path / "missing.txt", tmp_path / "o.jsonl", f"argument --input: no such file {tmp_path}/missing.txt"),
            (tmp_path, tmp_path / "o.jsonl", f"argument --input: {tmp_path} is not a file"),
            (source, tmp_path, f"argument --output: {tmp_path} is a directory")]:
        with pytest.raises(cli.ChatError) as error:
            cli.check_paths(str(input_path), str(output))
        assert str(error.value) == message
