"""The chat: qwen3mini.chat (the protocol) in process, and infer/chat.py driven as a real process (pipes, and a
pseudo-terminal for Ctrl-C / Ctrl-D / dim thinking).

The model is a tiny scripted Qwen3 checkpoint with the real 151,936-row vocabulary and the real tokenizer
(conftest.py): it thinks " one two three four five six" and answers "你 ok" (the 你 as three byte tokens, so the
streamed text must be reassembled across tokens). ``QWEN3MINI_CHAT_LOG`` makes the chat log every prompt,
prefill and token it feeds or reads, which is what most assertions look at.
"""
import importlib.util
import json
import os
import pty
import re
import select
import signal
import subprocess
import sys
import time

import pytest
import torch

import qwen3mini.chat as protocol

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CHAT = os.path.join(REPO, "infer", "chat.py")
STOP = ("\n\nConsidering the limited time by the user, I have to give the solution based on the thinking "
        "directly now.\n</think>\n\n")
THINKING_TEXT = " one two three four five six"
SUMMARY = re.compile(r"\[thinking (\d+) tokens( \(budget reached\))? · answer (\d+) tokens · [\d.]+ tokens/s")
TIMEOUT = 240      # seconds per chat process; generous for a loaded 2-core machine


def load_chat_script():
    """infer/chat.py as a module, for its command-line parts (scripts are not a package)."""
    spec = importlib.util.spec_from_file_location("qwen3mini_chat_cli", CHAT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


cli = load_chat_script()


def run_chat(model, args, log, stdin="", env=None):
    """Run chat.py to completion; returns (CompletedProcess, logged events)."""
    env = {**os.environ, "QWEN3MINI_CHAT_LOG": str(log), **(env or {})}
    proc = subprocess.run([sys.executable, CHAT, "--model", model, *args], input=stdin, capture_output=True,
                          text=True, encoding="utf-8", env=env, timeout=TIMEOUT)
    events = [json.loads(line) for line in open(log, encoding="utf-8")] if os.path.exists(log) else []
    return proc, events


def turns(events):
    """Split the event log into turns (each starts with a "prompt" event)."""
    out = []
    for event in events:
        if event["event"] == "prompt":
            out.append([])
        if out:
            out[-1].append(event)
    return out


def first(turn, kind):
    return next(e for e in turn if e["event"] == kind)


def generated_texts(turn):
    return [e["text"] for e in turn if e["event"] == "token"]


# ------------------------------------------------------------------------------------------- no model needed
def test_sampling_defaults_follow_the_mode_and_flags_win():
    args = cli.parse_args([])
    assert args.think and args.thinking_budget is None
    assert protocol.sampling_settings("think", vars(args)) == dict(temperature=0.6, top_p=0.95, top_k=20,
                                                                   presence_penalty=0.0)
    assert protocol.sampling_settings("no-think", vars(args)) == dict(temperature=0.7, top_p=0.8, top_k=20,
                                                                      presence_penalty=1.5)
    args = cli.parse_args(["--no-think", "--temperature", "0", "--top-k", "5", "--thinking-budget", "7"])
    assert not args.think and args.thinking_budget == 7
    assert protocol.sampling_settings("no-think", vars(args)) == dict(temperature=0.0, top_p=0.8, top_k=5,
                                                                      presence_penalty=1.5)


@pytest.mark.parametrize("argv", [["--think", "--no-think"], ["--thinking-budget", "-1"], ["--top-p", "0"],
                                  ["--dtype", "int8"], ["--max-new-tokens", "0"], ["--quantize", "int4"]])
def test_bad_flags_are_rejected(argv, capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.parse_args(argv)
    assert exit_info.value.code == 2
    assert "error" in capsys.readouterr().err


@pytest.mark.parametrize("flag,value", [("--temperature", "nan"), ("--presence-penalty", "nan"),
                                        ("--top-p", "nan"), ("--temperature", "-1"), ("--top-k", "-1"),
                                        ("--presence-penalty", "inf")])
def test_out_of_range_sampling_flags_name_the_flag(flag, value, capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.parse_args([flag, value])
    assert exit_info.value.code == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert last.startswith(f"chat.py: error: argument {flag} must be ") and ", got " in last


def test_missing_model_is_a_clear_error(tmp_path, monkeypatch, capsys):
    import qwen3mini.checkpoint
    missing_default = str(tmp_path / "checkpoints" / "qwen3mini-chat")
    monkeypatch.setattr(qwen3mini.checkpoint, "SHIPPED_CHECKPOINT", missing_default)
    assert cli.main(["--model", missing_default, "--prompt", "hi"]) == 2
    assert re.fullmatch(r"chat\.py: error: --model: no model at .*qwen3mini-chat: the shipped model is written "
                        r"there by the training scripts \(train/\)\. .*\n", capsys.readouterr().err)
    proc = subprocess.run([sys.executable, CHAT, "--model", str(tmp_path / "nope"), "--prompt", "hi"],
                          capture_output=True, text=True, timeout=TIMEOUT)
    assert proc.returncode == 2
    assert "no such directory" in proc.stderr and "Traceback" not in proc.stderr


@pytest.mark.parametrize("value,message", [("abc", "QWEN3MINI_MAX_CONTEXT='abc': not a whole number of tokens"),
                                           ("-5", "QWEN3MINI_MAX_CONTEXT=-5: the context must be >= 1 token"),
                                           ("0", "QWEN3MINI_MAX_CONTEXT=0: the context must be >= 1 token")])
def test_a_bad_max_context_names_the_variable(value, message):
    with pytest.raises(protocol.ChatError) as error:
        cli.max_context_from_env({"QWEN3MINI_MAX_CONTEXT": value})
    assert str(error.value) == message
    assert cli.max_context_from_env({}) is None and cli.max_context_from_env({"QWEN3MINI_MAX_CONTEXT": "64"}) == 64


def test_bad_environment_is_one_line_before_any_loading(tmp_path):
    """Both are reported before the model loads (the --model given does not even exist)."""
    env = {**os.environ, "QWEN3MINI_MAX_CONTEXT": "abc"}
    proc = subprocess.run([sys.executable, CHAT, "--model", str(tmp_path / "nope"), "--prompt", "hi"],
                          capture_output=True, text=True, env=env, timeout=TIMEOUT)
    assert (proc.returncode, proc.stderr) == (2, "chat.py: error: QWEN3MINI_MAX_CONTEXT='abc': not a whole "
                                                 "number of tokens\n")
    env = {**os.environ, "QWEN3MINI_CHAT_LOG": str(tmp_path / "missing" / "log.jsonl")}
    proc = subprocess.run([sys.executable, CHAT, "--model", str(tmp_path / "nope"), "--prompt", "hi"],
                          capture_output=True, text=True, env=env, timeout=TIMEOUT)
    assert (proc.returncode, proc.stderr) == (2, f"chat.py: error: QWEN3MINI_CHAT_LOG={tmp_path}/missing/"
                                                 f"log.jsonl: no such directory {tmp_path}/missing\n")


# ------------------------------------------------------------------------------- one-shot and piped runs
def test_no_think_puts_the_empty_think_block_in_the_prompt(scripted_model, tmp_path):
    proc, events = run_chat(scripted_model, ["--no-think", "--prompt", "Hello", "--seed", "0"], tmp_path / "log")
    assert proc.returncode == 0, proc.stderr
    prompt = first(events, "prompt")
    assert prompt["text"] == "<|im_start|>user\nHello<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n"
    assert prompt["sampling"] == dict(temperature=0.7, top_p=0.8, top_k=20, presence_penalty=1.5)
    assert proc.stdout == "你 ok\n"
    summary = SUMMARY.search(proc.stderr)
    assert summary and summary.group(1) == "0" and summary.group(3) == "4"


def test_int8_weights_give_the_same_scripted_reply(scripted_model, tmp_path):
    proc, _ = run_chat(scripted_model, ["--quantize", "int8", "--no-think", "--prompt", "Hello", "--seed", "0"],
                       tmp_path / "log")
    assert (proc.returncode, proc.stdout) == (0, "你 ok\n"), proc.stderr


def test_thinking_budget_flag_inserts_the_stop_text_after_n_tokens(scripted_model, tmp_path):
    proc, events = run_chat(scripted_model, ["--thinking-budget", "4", "--prompt", "Think", "--seed", "1"],
                            tmp_path / "log")
    assert proc.returncode == 0, proc.stderr
    (turn,) = turns(events)
    assert first(turn, "prompt")["text"].endswith("<|im_start|>user\nThink<|im_end|>\n<|im_start|>assistant\n")
    kinds = [e["event"] for e in turn]
    stop_at = kinds.index("stop_thinking")
    before = [e["text"] for e in turn[:stop_at] if e["event"] == "token"]
    assert before == ["<think>", " one", " two", " three", " four"]      # exactly 4 tokens after <think>
    assert turn[stop_at]["after"] == 4 and turn[stop_at]["text"] == STOP
    assert "".join(generated_texts(turn[stop_at:])) == "你 ok"              # ...and then the model answers
    assert proc.stdout == "<think> one two three four" + STOP + "你 ok\n"
    summary = SUMMARY.search(proc.stderr)
    assert summary.groups()[:3] == ("4", " (budget reached)", "4")


@pytest.fixture(scope="module")
def piped(scripted_model, tmp_path_factory):
    """One piped conversation in thinking mode that exercises switches, history, budgets and commands."""
    lines = ["Hello /no_think", "Why? /think", ":budget -5", ":budget 3", "Budget please", ":budget 0", "Zero",
             ":budget off", ":no-think", "Plain", ":bogus", "", ":reset", "Fresh"]
    log = tmp_path_factory.mktemp("piped") / "log"
    # --top-p 1 skips the nucleus sort over the whole vocabulary, the slowest part of sampling a tiny model
    proc, events = run_chat(scripted_model, ["--seed", "0", "--top-p", "1"], log, stdin="\n".join(lines) + "\n")
    return proc, turns(events)


def test_piped_stdin_is_one_turn_per_line_and_eof_exits_cleanly(piped):
    proc, conversation = piped
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    assert len(conversation) == 6
    assert len(SUMMARY.findall(proc.stderr)) == 6
    assert "unknown command ':bogus'" in proc.stderr
    assert "[the budget must be a whole number of tokens >= 0, or off; got '-5']" in proc.stderr
    assert "unknown command ':budget" not in proc.stderr


def test_soft_switches_reach_the_model_verbatim(piped):
    _, conversation = piped
    first_prompt, second_prompt = first(conversation[0], "prompt"), first(conversation[1], "prompt")
    assert first_prompt["text"] == "<|im_start|>user\nHello /no_think<|im_end|>\n<|im_start|>assistant\n"
    assert "<|im_start|>user\nWhy? /think<|im_end|>\n<|im_start|>assistant\n" in second_prompt["text"]
    # sampling follows the mode the last switch selects (paper §4.6)
    assert first_prompt["sampling"]["temperature"] == 0.7 and second_prompt["sampling"]["temperature"] == 0.6


def test_history_drops_earlier_thinking_and_reuses_the_kv_cache(piped):
    _, conversation = piped
    assert "".join(generated_texts(conversation[0])) == "<think>" + THINKING_TEXT + "</think>\n\n你 ok"
    second = first(conversation[1], "prompt")["text"]
    assert second == ("<|im_start|>user\nHello /no_think<|im_end|>\n<|im_start|>assistant\n你 ok<|im_end|>\n"
                      "<|im_start|>user\nWhy? /think<|im_end|>\n<|im_start|>assistant\n")
    prefill = first(conversation[1], "prefill")
    # the cache kept everything up to the previous "<|im_start|>assistant\n"; the thinking was rolled back
    assert prefill["text"] == "你 ok<|im_end|>\n<|im_start|>user\nWhy? /think<|im_end|>\n<|im_start|>assistant\n"
    assert prefill["reused"] == len(first(conversation[0], "prompt")["ids"])


def test_budget_command_and_budget_zero(piped):
    proc, conversation = piped
    budget3, budget0 = conversation[2], conversation[3]
    assert [e["event"] for e in budget3 if e["event"] in ("token", "stop_thinking")][:5] == \
        ["token"] * 4 + ["stop_thinking"]
    assert generated_texts(budget3)[:4] == ["<think>", " one", " two", " three"]
    assert first(budget3, "stop_thinking")["after"] == 3
    assert generated_texts(budget0)[0] == "<think>" and first(budget0, "stop_thinking")["after"] == 0
    assert "<think> one two three" + STOP + "你 ok\n" in proc.stdout
    assert "<think>" + STOP + "你 ok\n" in proc.stdout
    # the history keeps the answer only: neither the thinking nor the stop text
    assert first(budget0, "prompt")["text"].count("assistant\n你 ok<|im_end|>") == 3


def test_no_think_command_and_reset(piped):
    _, conversation = piped
    plain, fresh = first(conversation[4], "prompt")["text"], first(conversation[5], "prompt")["text"]
    assert plain.endswith("<|im_start|>user\nPlain<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n")
    assert fresh == "<|im_start|>user\nFresh<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n"


def test_multibyte_characters_split_across_tokens_stream_intact(piped, tokenizer):
    proc, conversation = piped
    byte_tokens = [tokenizer.vocab.index(bytes([b])) for b in "你".encode()]
    tokens = [e for e in conversation[0] if e["event"] == "token"]
    pieces = {e["id"]: e["text"] for e in tokens if e["id"] in byte_tokens}
    assert [pieces[t] for t in byte_tokens] == ["", "", "你"]     # nothing shown until the character is whole
    assert "\ufffd" not in proc.stdout and proc.stdout.count("你 ok") == 6


def test_an_overlong_conversation_drops_old_turns_or_refuses(endless_model, tmp_path):
    """A 64-token context: the endless reply is cut when the context is full, the next turn drops it with a
    notice, and a message that cannot fit even alone is refused; the chat carries on and exits with 0."""
    lines = ["First message", "Second message", " ".join(["word"] * 60), "Third message"]
    proc, events = run_chat(endless_model, ["--no-think", "--temperature", "0"], tmp_path / "log",
                            stdin="\n".join(lines) + "\n", env={"QWEN3MINI_MAX_CONTEXT": "64"})
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    conversation = turns(events)
    assert len(conversation) == 3                               # the 60-word message never reached the model
    for turn in conversation:
        end = first(turn, "end")
        assert end["finish"] == "context"
        assert len(first(turn, "prompt")["ids"]) + len(end["generated"]) == 64
    assert "cut: context full" in proc.stderr
    assert "dropped the 1 oldest turn(s) to fit the 64-token context" in proc.stderr
    assert "First message" not in first(conversation[1], "prompt")["text"]
    assert re.search(r"message not sent: the prompt would be \d+ tokens and the context holds 64", proc.stderr)


# ------------------------------------------------------------------------------------- a real terminal
class Terminal:
    """chat.py on a pseudo-terminal: it is the controlling terminal, so ^C really sends SIGINT."""

    def __init__(self, argv, env):
        self.pid, self.fd = pty.fork()
        if self.pid == 0:  # child
            os.execve(sys.executable, [sys.executable, CHAT, *argv], env)
        self.output = b""

    def send(self, data: bytes):
        os.write(self.fd, data)

    def expect(self, pattern: bytes, after: int = 0, timeout: float = TIMEOUT) -> int:
        """Read until ``pattern`` appears in the output past offset ``after``; return the offset after it."""
        deadline = time.time() + timeout
        while pattern not in self.output[after:]:
            if time.time() > deadline:
                raise AssertionError(f"timed out waiting for {pattern!r}; output so far: {self.output[-2000:]!r}")
            ready, _, _ = select.select([self.fd], [], [], 0.5)
            if ready:
                try:
                    self.output += os.read(self.fd, 65536)
                except OSError:   # the child closed the terminal
                    break
        if pattern not in self.output[after:]:
            raise AssertionError(f"process ended without {pattern!r}; output: {self.output[-2000:]!r}")
        return self.output.index(pattern, after) + len(pattern)

    def kill(self):
        """Make sure the child is gone (a no-op once ``wait`` has reaped it)."""
        if self.pid is not None:
            os.kill(self.pid, signal.SIGKILL)
            os.waitpid(self.pid, 0)
            self.pid = None
        os.close(self.fd)

    def wait(self, timeout: float = 60) -> int:
        deadline = time.time() + timeout
        while time.time() < deadline:
            try:
                if select.select([self.fd], [], [], 0.2)[0]:
                    self.output += os.read(self.fd, 65536)
            except OSError:
                pass
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                self.pid = None
                return os.waitstatus_to_exitcode(status)
        raise AssertionError(f"chat did not exit; output: {self.output[-2000:]!r}")


def test_ctrl_c_stops_a_reply_and_ctrl_d_exits(endless_model, tmp_path):
    log = tmp_path / "log"
    env = {**os.environ, "QWEN3MINI_CHAT_LOG": str(log)}
    term = Terminal(["--model", endless_model, "--seed", "0"], env)
    try:
        at = term.expect(b">>> ")
        # CPython's readline prints the prompt before it blocks in select(); a SIGINT that lands in between is
        # only acted on at the next keystroke (a lost wakeup inside input(), not ours). A person cannot type that
        # fast, a test can: give input() time to block first. (One CI run hung here for the full timeout.)
        time.sleep(0.5)
        term.send(b"\x03")                                 # ^C at the prompt: just a new prompt
        at = term.expect(b">>> ", at)
        term.send(b"Hello\r")
        at = term.expect(b" ok ok ok", at)                 # the endless reply is streaming
        term.send(b"\x03")
        at = term.expect(b"interrupted; this turn was discarded", at)
        at = term.expect(b">>> ", at)
        term.send(b"Again\r")
        at = term.expect(b" ok ok ok", at)
        term.send(b"\x03")
        at = term.expect(b">>> ", at)
        term.send(b"\x04")                                 # ^D: exit
        assert term.wait() == 0
    finally:
        term.kill()
    out = term.output.decode("utf-8", errors="replace")
    assert "Traceback" not in out
    assert "\x1b[2m<think> one two three four five six</think>" in out     # thinking is dim on a terminal
    conversation = turns([json.loads(line) for line in open(log, encoding="utf-8")])
    assert [first(t, "end")["finish"] for t in conversation] == ["interrupted", "interrupted"]
    # the interrupted turn was discarded: the next prompt is the new message alone
    assert first(conversation[1], "prompt")["text"] == "<|im_start|>user\nAgain<|im_end|>\n<|im_start|>assistant\n"
    assert first(conversation[1], "prefill")["reused"] > 0   # ...and its prefix still came from the cache


# ------------------------------------------------------------------------------------------ bad input
def test_piped_input_that_is_not_utf8_stops_with_an_error(scripted_model, tmp_path):
    log = tmp_path / "log"
    proc = subprocess.run([sys.executable, CHAT, "--model", scripted_model, "--no-think", "--seed", "0"],
                          input=b"Hello\n\xff\xfe oops\nNever sent\n", capture_output=True, timeout=TIMEOUT,
                          env={**os.environ, "QWEN3MINI_CHAT_LOG": str(log)})
    stderr = proc.stderr.decode()
    assert proc.returncode == 1 and "Traceback" not in stderr
    assert "[stdin line 2: the input is not UTF-8; stopping]" in stderr
    assert len(turns([json.loads(line) for line in open(log, encoding="utf-8")])) == 1


def test_a_prompt_that_is_not_utf8_is_refused(scripted_model):
    proc = subprocess.run([sys.executable, CHAT.encode(), b"--model", scripted_model.encode(), b"--prompt",
                           b"\xff oops"], capture_output=True, timeout=TIMEOUT)
    assert proc.returncode == 2 and proc.stderr.decode().endswith("error: argument --prompt: not valid UTF-8\n")


# ------------------------------------------------------------------------------------------ base models
def test_a_base_model_gets_short_replies_by_default(endless_base_model, tmp_path):
    """A base model never ends a turn: without --max-new-tokens its replies stop at the base default, not at
    the end of the context (the endless model's context is 1,024 tokens)."""
    import qwen3mini.chat as protocol
    proc, events = run_chat(endless_base_model, ["--no-think", "--temperature", "0", "--prompt", "Hi"],
                            tmp_path / "log")
    assert proc.returncode == 0, proc.stderr
    end = first(events, "end")
    assert end["finish"] == "length" and len(end["generated"]) == protocol.BASE_MAX_NEW_TOKENS
    assert "cut at --max-new-tokens" in proc.stderr


def test_the_banner_names_the_real_kv_cache_dtype_and_a_base_model(scripted_model, endless_base_model):
    import qwen3mini.chat as protocol
    for path, post_trained in ((scripted_model, True), (endless_base_model, False)):
        model, tokenizer, info = protocol.load(path, device="cpu")
        session = protocol.ChatSession(model, tokenizer, max_context=64)
        text = "\n".join(cli.banner(session, info, info.reply_limit()))
        assert "KV cache 0.2 KiB/token in float32 on cpu; context 64 tokens" in text and "bf16" not in text
        assert ("base model (not post-trained)" in text) != post_trained
        if not post_trained:
            assert f"replies stop after {protocol.BASE_MAX_NEW_TOKENS} tokens" in text
