"""qwen3mini.tools (issue 19): run_tool_call, the batched tool loop (generate_with_tools: its
tokens against the chat template's rendering, the mask, call counting, invalid calls) and the chat's ToolSession.

The loop is driven by a scripted generate_replies (planted replies, as tests/train/test_sft.py's
test_answered_directly does) and, once, by a real tiny random model; no downloads (the 16k tokenizer ships)."""
import dataclasses
import json
import os
import types

import pytest
import torch

from qwen3mini import chat
from qwen3mini.chat import STOP_THINKING, ChatCompletion, decode_text, render, split_completion
from qwen3mini.generation import Completion
from qwen3mini.tools import CALCULATOR, TOOLS, ToolSession, describe_call, generate_with_tools, run_tool_call

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TOKENIZER_16K = os.path.join(REPO, "checkpoints", "tokenizer-16k")
TEMPLATE = os.path.join(REPO, "tests", "tokenizer", "qwen3_chat_template.jinja")
GREEDY = dict(temperature=0.0, top_p=1.0, top_k=0, presence_penalty=0.0)
SCHEMAS = [CALCULATOR.schema]


@pytest.fixture(scope="module")
def tok():
    from qwen3mini.tokenizer import load_tokenizer
    return load_tokenizer(TOKENIZER_16K)


def tiny_model(max_position_embeddings=1024):
    from qwen3mini.config import PRESETS
    from qwen3mini.model import Qwen3ForCausalLM
    torch.manual_seed(0)
    return Qwen3ForCausalLM(dataclasses.replace(PRESETS["tiny"], vocab_size=16384,
                                                max_position_embeddings=max_position_embeddings)).eval()


def call(expression, name="calculator"):
    return ('<tool_call>\n' + json.dumps({"name": name, "arguments": {"expression": expression}}) +
            '\n</tool_call>')


# ---------------------------------------------------------------------------------------------- tools
def test_run_tool_call_valid_and_invalid():
    assert run_tool_call({"name": "calculator", "arguments": {"expression": "347 * 86"}}) == ("29842", True)
    assert run_tool_call({"name": "calculator", "arguments": {"expression": "1/0"}}) == \
        ("error: division by zero (the '/' at position 2)", False)
    result, valid = run_tool_call({"name": "search", "arguments": {"q": "x"}})
    assert not valid and result == "error: unknown tool 'search'; the tools are: calculator"
    result, valid = run_tool_call({"name": "calculator", "arguments": {"expr": "1"}})
    assert not valid and result.startswith('error: the calculator takes exactly one argument: {"expression"')
    assert run_tool_call({"name": "calculator", "arguments": {"expression": 5}}) == \
        ("error: the expression must be a string, got int", False)
    assert run_tool_call({"name": "calculator", "arguments": "1+1"})[1] is False
    assert run_tool_call("calculator(1+1)")[1] is False
    assert run_tool_call({"name": "<|im_end|>", "arguments": {}}) == \
        ("error: unknown tool (a name that is not plain); the tools are: calculator", False)   # no markup echoed
    assert run_tool_call({"name": "calculator", "arguments": {"expression": "1"}}, tools=[])[1] is False
    # what the parser of the chat protocol hands over
    parsed = split_completion(call("12 * 12") + "<|im_end|>").tool_calls[0]
    assert run_tool_call(parsed) == ("144", True)
    assert describe_call({**parsed, "result": "144", "valid": True}) == "[calculator] 12 * 12 = 144"


def test_the_schema_is_in_qwen3s_tools_format(tok):
    schema = TOOLS["calculator"].schema
    assert schema["type"] == "function" and schema["function"]["name"] == "calculator"
    assert schema["function"]["parameters"] == {
        "type": "object", "required": ["expression"],
        "properties": {"expression": {"type": "string",
                                      "description": schema["function"]["parameters"]["properties"]
                                      ["expression"]["description"]}}}
    text = tok.decode(render(tok, [{"role": "user", "content": "hi"}], True, tools=SCHEMAS))
    assert text.startswith("<|im_start|>system\n# Tools\n") and json.dumps(schema, ensure_ascii=False) in text


# ---------------------------------------------------------------------------------------------- the loop
class Script:
    """A stand-in for chat.generate_replies: each conversation (found by its first user message in the prompt)
    gets its planted replies in order. A reply that does not end with <|im_end|> ran out of tokens; the
    thinking budget's stop text in a reply counts as forced. Records every call."""

    def __init__(self, tok, plan):
        self.tok, self.plan, self.calls = tok, {q: list(replies) for q, replies in plan.items()}, []

    def __call__(self, model, tokenizer, prompts, max_new_tokens, sampling, thinking_budget=None):
        self.calls.append(dict(prompts=[list(p) for p in prompts], max_new_tokens=list(max_new_tokens),
                               sampling=sampling))
        replies = []
        for prompt in prompts:
            text = self.tok.decode(prompt)
            question = next(q for q in self.plan if f"<|im_start|>user\n{q}<|im_end|>" in text)
            reply = self.plan[question].pop(0)
            before, stop, after = reply.partition(STOP_THINKING)
            tokens = self.tok.encode(before) + self.tok.encode(stop) + self.tok.encode(after)
            forced = len(self.tok.encode(before)) if stop else None
            completion = Completion(tokens, len(tokens) - len(self.tok.encode(stop)),
                                    "stop" if reply.endswith("<|im_end|>") else "length", forced)
            text = decode_text(self.tok, tokens)
            replies.append(ChatCompletion(completion, text, split_completion(text)))
        return replies


def scripted(monkeypatch, tok, plan):
    script = Script(tok, plan)
    monkeypatch.setattr(chat, "generate_replies", script)
    return script


def model_stub(context=4096):
    return types.SimpleNamespace(config=types.SimpleNamespace(max_position_embeddings=context))


def jinja_render(messages, think):
    """The conversation through Qwen3's own Jinja template (transformers' settings), as a second opinion."""
    jinja2 = pytest.importorskip("jinja2")
    env = jinja2.Environment(trim_blocks=True, lstrip_blocks=True)
    env.filters["tojson"] = lambda x: json.dumps(x, ensure_ascii=False)
    with open(TEMPLATE, encoding="utf-8") as f:
        return env.from_string(f.read()).render(messages=messages, tools=SCHEMAS, add_generation_prompt=False,
                                                enable_thinking=think)


QUESTION = "What is 347 * 86 + 12 / 4?"
THINK_REPLIES = [
    "<think>\nI need a product and a quotient.\n</think>\n\nLet me compute both.\n" + call("347 * 86") + "\n" +
    call("12 / 4") + "<|im_end|>",
    "<think>\n\n</think>\n\n" + call("29842 + 3") + "<|im_end|>",          # an empty think block, then a call
    "<think>\nThe tool says 29845.\n</think>\n\nThe answer is 29845.<|im_end|>"]
NO_THINK_REPLIES = ["Let me compute both.\n" + call("347 * 86") + "\n" + call("12 / 4") + "<|im_end|>",
                    call("29842 + 3") + "<|im_end|>",
                    "The answer is 29845.<|im_end|>"]


@pytest.mark.parametrize("think", [True, False])
def test_tokens_are_the_templates_rendering_of_the_conversation(tok, monkeypatch, think):
    """The row's tokens (the model's own, then the tool turns the loop appends) are exactly what the chat
    template renders for the final conversation after the prompt, in both modes; the mask marks the model's."""
    replies = THINK_REPLIES if think else NO_THINK_REPLIES
    script = scripted(monkeypatch, tok, {QUESTION: replies})
    conversation = [{"role": "system", "content": "Be exact."}, {"role": "user", "content": QUESTION}]
    rollout = generate_with_tools(model_stub(), tok, [conversation], ["calculator"], 500, GREEDY, think=think)[0]

    assert rollout.prompt == render(tok, conversation, think, tools=SCHEMAS)
    full = conversation + rollout.messages
    rendered = tok.apply_chat_template(full, tools=SCHEMAS, enable_thinking=think)
    assert rendered == rollout.prompt + rollout.tokens + tok.encode("\n")      # the template ends "<|im_end|>\n"
    assert tok.decode(rollout.prompt + rollout.tokens) + "\n" == jinja_render(full, think)

    # the mask: True on the model's tokens exactly, False on the two tool turns the loop inserted
    sampled = [t for t, m in zip(rollout.tokens, rollout.mask) if m]
    assert sampled == [t for reply in replies for t in tok.encode(reply)]
    reopen = "<|im_start|>assistant\n" + ("" if think else "<think>\n\n</think>\n\n")
    inserted, runs = [], []
    for token, model_token in zip(rollout.tokens, rollout.mask):
        if not model_token:
            inserted.append(token)
        elif inserted:
            runs, inserted = runs + [tok.decode(inserted)], []
    assert runs == ["\n<|im_start|>user\n<tool_response>\n29842\n</tool_response>\n<tool_response>\n3\n"
                    "</tool_response><|im_end|>\n" + reopen,
                    "\n<|im_start|>user\n<tool_response>\n29845\n</tool_response><|im_end|>\n" + reopen]
    # each round's prompt is the previous one grown by the tokens: one sequence, as RL needs
    prompts = [c["prompts"][0] for c in script.calls]
    assert prompts[0] == rollout.prompt
    assert all(later[:len(earlier)] == earlier for earlier, later in zip(prompts, prompts[1:]))
    assert prompts[-1] + tok.encode(replies[-1]) == rollout.prompt + rollout.tokens

    reasoning = ["I need a product and a quotient.", "\n", "The tool says 29845."] if think else ["\n"] * 3
    calls = [{"name": "calculator", "arguments": {"expression": e}} for e in ("347 * 86", "12 / 4", "29842 + 3")]
    assert rollout.messages == [
        {"role": "assistant", "content": "Let me compute both.", "reasoning_content": reasoning[0],
         "tool_calls": calls[:2]},
        {"role": "tool", "content": "29842"}, {"role": "tool", "content": "3"},
        {"role": "assistant", "content": "", "reasoning_content": reasoning[1], "tool_calls": calls[2:]},
        {"role": "tool", "content": "29845"},
        {"role": "assistant", "content": "The answer is 29845.", "reasoning_content": reasoning[2]}]
    assert rollout.calls == [{**c, "result": r, "valid": True} for c, r in zip(calls, ("29842", "3", "29845"))]
    assert rollout.all_calls_valid and rollout.finish == "stop" and not rollout.truncated
    assert rollout.answer == "The answer is 29845."


def test_rows_are_batched_and_budgets_shared_over_rounds(tok, monkeypatch):
    plan = {"direct?": ["<think>\nEasy.\n</think>\n\n4<|im_end|>"],
            "two calls?": ["<think>\nA.\n</think>\n\n" + call("2 + 2") + "<|im_end|>",
                           "<think>\nB.\n</think>\n\n" + call("4 * 4") + "<|im_end|>",
                           "<think>\nC.\n</think>\n\n16<|im_end|>"],
            "one call?": ["<think>\nD.\n</think>\n\n" + call("10 - 1") + "<|im_end|>",
                          "<think>\nE.\n</think>\n\n9<|im_end|>"]}
    script = scripted(monkeypatch, tok, plan)
    conversations = [[{"role": "user", "content": q}] for q in plan]
    rollouts = generate_with_tools(model_stub(), tok, conversations, ["calculator"], [300, 200, 100],
                                   {**GREEDY, "seed": 7})
    assert [len(c["prompts"]) for c in script.calls] == [3, 2, 1]       # every row still going, in one batch
    assert [c["sampling"]["seed"] for c in script.calls] == [7, 8, 9]    # a fresh random stream per round
    first = [len(tok.encode(plan[q][0])) for q in plan]
    assert script.calls[0]["max_new_tokens"] == [300, 200, 100]
    assert script.calls[1]["max_new_tokens"] == [200 - first[1], 100 - first[2]]   # sampled tokens only
    assert [r.answer for r in rollouts] == ["4", "16", "9"]
    assert [len(r.calls) for r in rollouts] == [0, 2, 1] and all(r.finish == "stop" for r in rollouts)
    for r, q in zip(rollouts, plan):
        assert sum(r.mask) == sum(len(tok.encode(reply)) for reply in plan[q])


def test_max_calls(tok, monkeypatch):
    again = "<think>\nMore.\n</think>\n\n" + call("1 + 1") + "<|im_end|>"
    two = again.replace("<|im_end|>", "\n" + call("2 + 2") + "<|im_end|>")
    scripted(monkeypatch, tok, {"loop?": [again] * 5, "parallel?": [two, "4<|im_end|>"]})
    rows = generate_with_tools(model_stub(), tok, [[{"role": "user", "content": "loop?"}],
                                                   [{"role": "user", "content": "parallel?"}]],
                               ["calculator"], 1000, GREEDY, max_calls=2)
    loop, parallel = rows
    assert loop.finish == "max_calls" and len(loop.calls) == 2 and len(loop.replies) == 3
    assert loop.mask[-1] and tok.decode(loop.tokens[-1:]) == "<|im_end|>"   # ends on the model's unanswered turn
    assert loop.messages[-1]["tool_calls"] == [{"name": "calculator", "arguments": {"expression": "1 + 1"}}]
    assert [m["role"] for m in loop.messages] == ["assistant", "tool"] * 2 + ["assistant"]
    assert parallel.finish == "stop" and len(parallel.calls) == 2           # two calls in one reply fit exactly
    scripted(monkeypatch, tok, {"parallel?": [two]})
    row = generate_with_tools(model_stub(), tok, [[{"role": "user", "content": "parallel?"}]], ["calculator"], 1000,
                              GREEDY, max_calls=1)[0]
    assert row.finish == "max_calls" and row.calls == [] and len(row.replies) == 1   # none run: they would pass it


def test_invalid_calls_get_errors_in_order_and_the_model_goes_on(tok, monkeypatch):
    bad = ("Trying.\n" + call("1/0") + "\n" + call("2+2", name="search") + "\n<tool_call>\n{\"name\": "
           "\"calculator\", \"arguments\": \n</tool_call>\n" + '<tool_call>\n{"name": "calculator", "arguments": '
           '{"expr": "1"}}\n</tool_call>\n' + call("6 * 7") + "<|im_end|>")
    scripted(monkeypatch, tok, {"bad?": [bad, "Done: 42.<|im_end|>"]})
    conversation = [{"role": "user", "content": "bad?"}]
    row = generate_with_tools(model_stub(), tok, [conversation], ["calculator"], 1000, GREEDY, think=False,
                              max_calls=5)[0]
    assert [c["valid"] for c in row.calls] == [False, False, False, False, True] and not row.all_calls_valid
    assert [c["result"] for c in row.calls][:2] == ["error: division by zero (the '/' at position 2)",
                                                    "error: unknown tool 'search'; the tools are: calculator"]
    assert row.calls[2]["name"] is None and row.calls[2]["result"].startswith("error: not a tool call")
    assert row.calls[3]["result"].startswith("error: the calculator takes exactly one argument")
    assert row.calls[4]["result"] == "42"
    assert [m["content"] for m in row.messages if m["role"] == "tool"] == [c["result"] for c in row.calls]
    # a block that does not parse: the reply is kept verbatim, so the template still renders the model's tokens
    assert row.messages[0]["content"] == bad.removesuffix("<|im_end|>") and "tool_calls" not in row.messages[0]
    assert tok.apply_chat_template(conversation + row.messages, tools=SCHEMAS, enable_thinking=False) == \
        row.prompt + row.tokens + tok.encode("\n")
    assert row.finish == "stop" and row.answer == "Done: 42."


def test_out_of_tokens_and_out_of_context(tok, monkeypatch):
    scripted(monkeypatch, tok, {"cut?": ["<think>\nLong thoughts"],                         # no <|im_end|>
                                "full?": [call("1+1") + "<|im_end|>", "unused<|im_end|>"]})
    cut = generate_with_tools(model_stub(), tok, [[{"role": "user", "content": "cut?"}]], ["calculator"], 5,
                              GREEDY)[0]
    assert cut.finish == "length" and cut.truncated and cut.calls == [] and all(cut.mask)
    prompt = render(tok, [{"role": "user", "content": "full?"}], False, tools=SCHEMAS)
    room = len(prompt) + len(tok.encode(call("1+1") + "<|im_end|>")) + 3      # the tool turn does not fit
    full = generate_with_tools(model_stub(room), tok, [[{"role": "user", "content": "full?"}]], ["calculator"], 100,
                               GREEDY, think=False)[0]
    assert full.finish == "length" and len(full.calls) == 1 and len(full.replies) == 1 and not full.mask[-1]


def test_the_budgets_stop_text_is_masked(tok, monkeypatch):
    scripted(monkeypatch, tok, {"budget?": ["<think>\nhm" + STOP_THINKING + "7<|im_end|>"]})
    row = generate_with_tools(model_stub(), tok, [[{"role": "user", "content": "budget?"}]], ["calculator"], 100,
                              GREEDY, thinking_budget=2)[0]
    forced = [t for t, m in zip(row.tokens, row.mask) if not m]
    assert tok.decode(forced) == STOP_THINKING and row.answer == "7"


def test_a_real_tiny_model_through_the_loop(tok, monkeypatch):
    """The real generation path: a tiny random model continues a prompt that holds a planted call's tool turn
    (and, untouched, answers in a batch of its own)."""
    model = tiny_model()
    real, rounds = chat.generate_replies, []

    def first_round_planted(model_, tokenizer, prompts, max_new_tokens, sampling, thinking_budget=None):
        replies = real(model_, tokenizer, prompts, max_new_tokens, sampling, thinking_budget=thinking_budget)
        rounds.append(len(prompts))
        if len(rounds) == 1:                   # the first row's first reply is a call
            text = call("347 * 86") + "<|im_end|>"
            tokens = tok.encode(text)
            replies[0] = ChatCompletion(Completion(tokens, len(tokens), "stop"), text, split_completion(text))
        return replies
    monkeypatch.setattr(chat, "generate_replies", first_round_planted)
    conversations = [[{"role": "user", "content": "What is 347 * 86?"}], [{"role": "user", "content": "Hi"}]]
    rows = generate_with_tools(model, tok, conversations, ["calculator"], [48, 8], {**GREEDY, "seed": 0},
                             think=False)
    called, other = rows
    assert called.calls == [{"name": "calculator", "arguments": {"expression": "347 * 86"}, "result": "29842",
                             "valid": True}]
    assert len(called.replies) == 2 and called.finish in ("stop", "length")
    assert sum(called.mask) == len(tok.encode(call("347 * 86") + "<|im_end|>")) + \
        called.replies[1].completion.generated_tokens
    assert len(other.replies) == 1 and other.calls == [] and all(other.mask) and rounds == [2, 1]
    assert other.tokens == other.replies[0].completion.tokens


# ---------------------------------------------------------------------------------------------- the chat
def play(session, planted):
    """Make the session's generator stream planted token lists (each kept in the cache, as the real one does)."""
    def stream(limit, params, stops):
        for token in planted.pop(0)[:limit]:
            session.gen.append([token])
            yield token
            if token in stops:
                return
    session.gen.stream = stream


@pytest.mark.parametrize("think", [True, False])
def test_tool_session_runs_calls_and_keeps_the_kv_prefix(tok, think):
    events = []
    session = ToolSession(tiny_model(), tok, ["calculator"], system="Be exact.",
                          log=lambda event, **fields: events.append((event, fields)))
    replies = THINK_REPLIES if think else NO_THINK_REPLIES
    play(session, [tok.encode(r) for r in replies])
    shown = []
    reply = session.reply(QUESTION, think, GREEDY, max_new_tokens=200, on_text=lambda text, part: shown.append(text))
    text = "".join(shown)
    assert "\n[calculator] 347 * 86 = 29842\n" in text and "\n[calculator] 12 / 4 = 3\n" in text
    assert "\n[calculator] 29842 + 3 = 29845\n" in text and text.endswith("The answer is 29845.")
    assert reply.finish == "stop" and len(reply.calls) == 3 and reply.answer.lstrip("\n") == "The answer is 29845."
    assert len(reply.generated) == sum(len(tok.encode(r)) - 1 for r in replies)     # the <|im_end|>s not counted
    roles = [m["role"] for m in session.history]
    assert roles == ["user", "assistant", "tool", "tool", "assistant", "tool", "assistant"]
    assert session.history[1]["tool_calls"][0]["arguments"] == {"expression": "347 * 86"}
    # every continuation reused the whole cache: the model's tokens, its <|im_end|> included, matched the template
    prompts = [fields["ids"] for event, fields in events if event == "prompt"]
    prefills = [fields for event, fields in events if event == "prefill"]
    assert len(prompts) == 3 and all(p["reused"] == len(prompts[i]) + len(tok.encode(replies[i]))
                                     for i, p in enumerate(prefills[1:]))
    assert tok.decode(prompts[0]).startswith("<|im_start|>system\nBe exact.\n\n# Tools\n")

    # the next user turn: earlier thinking is dropped by the template, the tool chain stays
    play(session, [tok.encode("Fine.<|im_end|>")])
    session.reply("Thanks", think, GREEDY, max_new_tokens=20)
    last_prompt = tok.decode([f["ids"] for e, f in events if e == "prompt"][-1])
    assert "I need a product" not in last_prompt and "<tool_response>\n29845\n</tool_response>" in last_prompt


def test_tool_session_call_limit_and_interruption(tok):
    session = ToolSession(tiny_model(), tok, ["calculator"], max_calls=1)
    again = tok.encode(call("1 + 1") + "<|im_end|>")
    play(session, [again, again])
    shown = []
    reply = session.reply("loop", False, GREEDY, max_new_tokens=100, on_text=lambda text, part: shown.append(text))
    assert len(reply.calls) == 1 and "[tool-call limit: 1 calls per turn" in "".join(shown)
    assert [m["role"] for m in session.history] == ["user", "assistant", "tool", "assistant"]

    before = list(session.history)
    play(session, [again, again])
    stop = iter([False] * (len(again) + 1) + [True] * 100)
    reply = session.reply("again", False, GREEDY, max_new_tokens=100, interrupted=lambda: next(stop))
    assert reply.finish == "interrupted" and session.history == before      # the whole turn is discarded


# ---------------------------------------------------------------------------------------------- the scripts
@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory):
    import shutil
    from qwen3mini.checkpoint import save_model
    directory = tmp_path_factory.mktemp("tiny16k")
    save_model(tiny_model(), str(directory))
    for name in os.listdir(TOKENIZER_16K):
        shutil.copy(os.path.join(TOKENIZER_16K, name), directory)
    return str(directory)


def test_generate_script_records_the_calls(tok, tiny_checkpoint, tmp_path, monkeypatch):
    import importlib.util
    spec = importlib.util.spec_from_file_location("qwen3mini_generate_cli_tools", os.path.join(REPO, "infer",
                                                                                               "generate.py"))
    cli = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(cli)
    source = tmp_path / "q.jsonl"
    source.write_text(json.dumps({"prompt": "What is 347 * 86?", "id": 1}) + "\n" +
                      json.dumps({"prompt": "Hi", "id": 2}) + "\n")
    scripted(monkeypatch, tok, {"What is 347 * 86?": [call("347 * 86") + "<|im_end|>", "29842<|im_end|>"],
                                "Hi": ["Hello!<|im_end|>"]})
    out = tmp_path / "out.jsonl"
    assert cli.main(["--model", tiny_checkpoint, "--input", str(source), "--output", str(out), "--tools",
                     "calculator", "--no-think", "--max-new-tokens", "64", "--seed", "0"]) == 0
    first, second = [json.loads(line) for line in out.read_text().splitlines()]
    assert first["calls"] == [{"name": "calculator", "arguments": {"expression": "347 * 86"}, "result": "29842",
                               "valid": True}]
    assert first["all_calls_valid"] and first["finish_reason"] == "stop" and first["response"] == "29842"
    assert "<tool_response>\n29842\n</tool_response>" in first["completion"] and first["id"] == 1
    assert first["completion_tokens"] == len(tok.encode(call("347 * 86") + "<|im_end|>29842<|im_end|>"))
    assert second["calls"] == [] and second["response"] == "Hello!"
    with pytest.raises(SystemExit):
        cli.parse_args(["--input", str(source), "--output", str(out), "--tools", "calculator", "--raw"])
    with pytest.raises(SystemExit):
        cli.parse_args(["--input", str(source), "--output", str(out), "--tools", "abacus"])


def test_chat_script_offers_the_tools(tiny_checkpoint, tmp_path):
    """infer/chat.py --tools calculator, as a process: the prompt holds the tool's schema, a reply streams."""
    import subprocess
    import sys
    log = tmp_path / "chat.jsonl"
    result = subprocess.run([sys.executable, os.path.join(REPO, "infer", "chat.py"), "--model", tiny_checkpoint,
                             "--tools", "calculator", "--prompt", "What is 347 * 86?", "--max-new-tokens", "4",
                             "--seed", "0"], capture_output=True, text=True, timeout=240,
                            env=dict(os.environ, QWEN3MINI_CHAT_LOG=str(log)))
    assert result.returncode == 0, result.stderr
    events = [json.loads(line) for line in log.read_text().splitlines()]
    prompt = next(e for e in events if e["event"] == "prompt")["text"]
    assert prompt.startswith("<|im_start|>system\n# Tools\n") and '"name": "calculator"' in prompt
    assert 1 <= sum(e["event"] == "token" for e in events) <= 4


def test_tool_session_results_that_leave_no_room_end_the_turn(tok):
    first = render(tok, [{"role": "user", "content": "big"}], False, tools=SCHEMAS)
    session = ToolSession(tiny_model(), tok, ["calculator"], max_context=len(first) + 30 + 5)
    play(session, [tok.encode(call("1 + 1") + "<|im_end|>")])
    reply = session.reply("big", False, GREEDY, max_new_tokens=30)
    assert reply.finish == "context" and len(reply.calls) == 1 and session.history == []
