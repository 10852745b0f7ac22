"""infer/chat.py, driven as a real process (pipes, and a pseudo-terminal for Ctrl-C / Ctrl-D / dim thinking).

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

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CHAT = os.path.join(REPO, "infer", "chat.py")
STOP = ("Considering the limited time by the user, I have to give the solution based on the thinking directly "
        "now.\n</think>.\n\n")
THINKING_TEXT = " one two three four five six"
SUMMARY = re.compile(r"\[thinking (\d+) tokens( \(budget reached\))? · answer (\d+) tokens · [\d.]+ tokens/s")
TIMEOUT = 240      # seconds per chat process; generous for a loaded 2-core machine


def load_chat_module():
    spec = importlib.util.spec_from_file_location("qwen3mini_chat_cli", CHAT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


chat = load_chat_module()


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
    args = chat.parse_args([])
    assert args.think and args.thinking_budget is None
    assert chat.sampling_settings("think", args) == dict(temperature=0.6, top_p=0.95, top_k=20,
                                                         presence_penalty=0.0)
    assert chat.sampling_settings("no-think", args) == dict(temperature=0.7, top_p=0.8, top_k=20,
                                                            presence_penalty=1.5)
    args = chat.parse_args(["--no-think", "--temperature", "0", "--top-k", "5", "--thinking-budget", "7"])
    assert not args.think and args.thinking_budget == 7
    assert chat.sampling_settings("no-think", args) == dict(temperature=0.0, top_p=0.8, top_k=5,
                                                            presence_penalty=1.5)


@pytest.mark.parametrize("argv", [["--think", "--no-think"], ["--thinking-budget", "-1"], ["--top-p", "0"],
                                  ["--dtype", "int8"], ["--max-new-tokens", "0"]])
def test_bad_flags_are_rejected(argv, capsys):
    with pytest.raises(SystemExit) as exit_info:
        chat.parse_args(argv)
    assert exit_info.value.code == 2
    assert "error" in capsys.readouterr().err


def test_the_last_soft_switch_wins():
    user = lambda text: {"role": "user", "content": text}  # noqa: E731
    assert chat.effective_mode([user("hi")], think=True) == "think"
    assert chat.effective_mode([user("hi /no_think")], think=True) == "no-think"
    assert chat.effective_mode([user("a /no_think"), {"role": "assistant", "content": "x"}, user("b /think")],
                               think=True) == "think"
    assert chat.effective_mode([user("a /no_think"), user("b")], think=True) == "no-think"
    assert chat.effective_mode([user("b /think")], think=False) == "no-think"   # empty think block forced


def test_thinking_tracker_counts_tokens_after_think():
    THINK_ID, END_ID = 10, 11
    tracker = chat.ThinkingTracker(THINK_ID, END_ID, budget=2)
    assert tracker.observe(THINK_ID) == chat.THINK and not tracker.over_budget
    assert tracker.observe(5) == chat.THINK and not tracker.over_budget
    assert tracker.observe(6) == chat.THINK and tracker.over_budget
    tracker.stop_thinking()
    assert tracker.observe(7) == chat.ANSWER and not tracker.over_budget
    assert (tracker.thinking_tokens, tracker.answer_tokens, tracker.budget_hit) == (2, 1, True)

    tracker = chat.ThinkingTracker(THINK_ID, END_ID, budget=5)       # the model ends its thinking itself
    parts = [tracker.observe(t) for t in (THINK_ID, 1, 2, END_ID, 3, 4)]
    assert parts == [chat.THINK] * 4 + [chat.ANSWER] * 2
    assert (tracker.thinking_tokens, tracker.answer_tokens, tracker.budget_hit) == (2, 2, False)

    tracker = chat.ThinkingTracker(THINK_ID, END_ID, budget=0)       # no <think>: the answer, never over budget
    assert tracker.observe(3) == chat.ANSWER and not tracker.over_budget


def test_prompt_phase():
    START, THINK_ID, END_ID = 1, 10, 11
    assert chat.prompt_phase([START, 5, START, 6], START, THINK_ID, END_ID) == "start"
    assert chat.prompt_phase([START, 5, START, 6, THINK_ID, 7, END_ID, 7], START, THINK_ID, END_ID) == chat.ANSWER
    assert chat.prompt_phase([START, 6, THINK_ID, 7], START, THINK_ID, END_ID) == chat.THINK
    # a think block of an earlier turn does not count
    assert chat.prompt_phase([START, THINK_ID, END_ID, START, 6], START, THINK_ID, END_ID) == "start"


def test_missing_model_is_a_clear_error(tmp_path, monkeypatch):
    missing_default = str(tmp_path / "checkpoints" / "qwen3mini-base")
    monkeypatch.setattr(chat, "DEFAULT_MODEL", missing_default)
    with pytest.raises(chat.ChatError, match="--model"):
        chat.resolve_model(missing_default)
    proc = subprocess.run([sys.executable, CHAT, "--model", str(tmp_path / "nope"), "--prompt", "hi"],
                          capture_output=True, text=True, timeout=TIMEOUT)
    assert proc.returncode == 2
    assert "no such directory" in proc.stderr and "Traceback" not in proc.stderr


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
    lines = ["Hello /no_think", "Why? /think", ":budget 3", "Budget please", ":budget 0", "Zero",
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


# ---------------------------------------------------------------------------------------- in-process session
def test_kv_cache_reuse_gives_the_logits_of_a_fresh_prefill(tokenizer):
    """With a random model whose attention matters, the reused-prefix cache must give the same next-token
    logits as running the whole rendered conversation from scratch."""
    import dataclasses
    from qwen3mini.config import PRESETS
    from qwen3mini.model import Qwen3ForCausalLM

    torch.manual_seed(0)
    config = dataclasses.replace(PRESETS["tiny"], vocab_size=151936)
    model = Qwen3ForCausalLM(config).eval()
    session = chat.ChatSession(model, tokenizer, system="Be brief.")
    sampling = dict(temperature=0.0, top_p=1.0, top_k=0, presence_penalty=0.0)
    quiet = chat.Display(out=open(os.devnull, "w"), err=open(os.devnull, "w"))
    for text in ("first question", "second question /no_think"):
        reply = session.reply(text, think=True, sampling=sampling, max_new_tokens=6, display=quiet)
        assert reply.finish in ("stop", "length")
    messages = session.system + session.history + [{"role": "user", "content": "third"}]
    ids = session.render(messages, think=True)
    cached = list(session.gen.tokens[0])
    reused_logits = session.prefill(ids)
    assert sum(1 for a, b in zip(cached, ids) if a == b) > len(ids) // 2     # most of the prompt was reused
    with torch.no_grad():
        fresh_logits = model(torch.tensor([ids]))[0, -1]
    torch.testing.assert_close(reused_logits, fresh_logits, rtol=1e-4, atol=1e-4)


def test_a_tokenizer_without_chat_tokens_is_refused():
    from qwen3mini.config import PRESETS
    from qwen3mini.model import Qwen3ForCausalLM
    from qwen3mini.tokenizer import Tokenizer

    bytes_only = Tokenizer([bytes([b]) for b in range(256)], merges=[])
    with pytest.raises(chat.ChatError, match=r"lacks Qwen3's chat tokens \['<\|im_start\|>'"):
        chat.ChatSession(Qwen3ForCausalLM(PRESETS["tiny"]), bytes_only)
