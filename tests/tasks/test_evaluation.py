"""The evaluation harness (qwen3mini.evaluation, train/evaluate.py): scoring of planted replies, pass@k
aggregation, ThinkFollow dialogues and their scoring, and whole runs on the scripted checkpoint of
tests/infer/conftest.py (a tiny Qwen3 that thinks " one two three four five six" and answers "你 ok"), whose
token counts under every thinking budget are known exactly."""
import importlib.util
import json
import os
from dataclasses import asdict

import pytest

from qwen3mini.chat import ChatTokens, effective_mode, split_completion
from qwen3mini.evaluation import Selection, evaluate, make_dialogues, reply_mode, summarize, write_report
from qwen3mini.evaluation import report, thinkfollow
from qwen3mini.evaluation.scoring import Scored, score_reply, token_counts
from qwen3mini.generation import Completion
from qwen3mini.tasks import parse_question
from qwen3mini.tasks.splits import evaluation_set

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def load_file(name, *path):
    """A file that is not part of a package (a script, another folder's conftest) as a module."""
    spec = importlib.util.spec_from_file_location(name, os.path.join(REPO, *path))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


cli = load_file("qwen3mini_evaluate_cli", "train", "evaluate.py")

# Made-up ids: <|im_start|> 1, <think> 10, </think> 11, end of turn 2; the stop text is 3 tokens ending in
# </think> and "." (as the paper's does).
IDS = ChatTokens(turn_start=1, think=10, end_think=11, stops=[2], stop_thinking=[20, 11, 21])


# ------------------------------------------------------------------------------------------ one reply
@pytest.mark.parametrize("tokens, finish, forced_at, counts", [
    ([10, 5, 6, 7, 11, 8, 9, 2], "stop", None, (3, 2)),           # think block closed by the model
    ([10, 5, 6, 20, 11, 21, 8, 2], "stop", 3, (2, 1)),            # the budget forced its stop text after 2
    ([10, 20, 11, 21, 8, 9, 2], "stop", 1, (0, 2)),               # budget 0
    ([10, 5, 6, 7], "length", None, (3, 0)),                      # never closed: all thinking
    ([8, 9, 7, 2], "stop", None, (0, 3)),                         # non-thinking reply
    ([8, 9, 7], "length", None, (0, 3)),                          # ...cut by its length limit
])
def test_token_counts(tokens, finish, forced_at, counts):
    assert token_counts(Completion(tokens, len(tokens), finish, forced_at), IDS) == counts


def reply_text(thinking, answer):
    return f"<think>\n{thinking}\n</think>\n\n{answer}<|im_end|>"


def test_a_correct_reply_counts_and_a_wrong_one_does_not():
    problem = parse_question("What is 48213 + 9377?")
    done = Completion([10, 5, 11, 8, 2], 5, "stop")
    right = score_reply(problem, reply_text("3 + 7 = 10 ...", "48213 + 9377 = 57590.\n\n\\boxed{57590}"), done, IDS)
    assert right == Scored(True, 1, 1, True, True)
    for wrong in ("\\boxed{57591}", "57590", "\\boxed{57590"):
        assert not score_reply(problem, reply_text("...", wrong), done, IDS).correct
    # a \boxed{} inside a think block that never closed is not an answer
    assert not score_reply(problem, "<think>\nso \\boxed{57590}", Completion([10, 5], 2, "length"), IDS).correct
    # after the budget's stop text the answer counts; a non-thinking reply is all answer
    from qwen3mini.chat import STOP_THINKING
    assert score_reply(problem, f"<think>\n7 + 3{STOP_THINKING}\\boxed{{57590}}", done, IDS).correct
    assert score_reply(problem, "Adding: \\boxed{57,590}", Completion([8, 2], 2, "stop"), IDS).correct


def test_summarize_greedy_figures_and_unbiased_pass_at_k():
    greedy = [Scored(True, 10, 4, True, True), Scored(False, 20, 0, False, True)]
    sampled = [[True, False, False, False], [False] * 4]
    figures = summarize(greedy, sampled)
    assert (figures["n"], figures["correct"], figures["pass@1"]) == (2, 1, 0.5)
    assert figures["wilson95"] == pytest.approx([0.0945, 0.9055], abs=1e-4)
    assert (figures["mean_thinking_tokens"], figures["mean_answer_tokens"], figures["self_ended"]) == (15, 2, 0.5)
    assert figures["thought"] == 1.0
    # item 1: 1 of 4 right: pass@1 1/4, pass@2 1 - C(3,2)/C(4,2) = 1/2, pass@4 1; item 2: 0
    assert figures["samples"] == 4
    assert figures["pass@k"] == pytest.approx({"1": 0.125, "2": 0.25, "4": 0.5})
    assert summarize(greedy)["pass@k"] is None and summarize(greedy)["samples"] == 0
    assert list(summarize(greedy, [[True] * 6, [False] * 6])["pass@k"]) == ["1", "2", "4", "6"]


# ------------------------------------------------------------------------------------------ ThinkFollow
def test_reply_mode():
    assert reply_mode("<think>\nLet me add.\n</think>\n\n\\boxed{3}") == "think"
    assert reply_mode("<think>\nLet me add and add and") == "think"          # cut while thinking
    assert reply_mode("<think>\n\n</think>\n\n\\boxed{3}") == "no-think"
    assert reply_mode("<think>\n\n") is None                                  # open and empty: undecided
    assert reply_mode("\\boxed{3}") is None                                   # no think block at all


PROBLEMS = evaluation_set("add", 2, 10) + evaluation_set("sort", 3, 10)


def test_dialogues_flags_and_earlier_replies():
    dialogues = make_dialogues(300, PROBLEMS)
    assert make_dialogues(5, PROBLEMS) == dialogues[:5]                       # dialogue i does not depend on count
    kinds = set()
    for d in dialogues:
        users = [m for m in d.messages if m["role"] == "user"]
        assert 2 <= len(users) <= 4 and d.messages[-1]["role"] == "user"
        assert [m["role"] for m in d.messages] == ["user", "assistant"] * (len(users) - 1) + ["user"]
        # the last flag anywhere wins, no flag means thinking: as the chat protocol reads the conversation
        assert d.expected == effective_mode(d.messages, think=True)
        mode = "think"
        for turn, flag in enumerate(d.flags[:-1]):           # earlier replies are correct, in the mode asked
            mode = flag or mode
            parts = split_completion(d.messages[2 * turn + 1]["content"])
            assert bool(parts.thinking) == (mode == "think")
            assert "\\boxed{" in parts.answer
        kinds.add((d.flags[-1] is not None, any(d.flags), d.expected))
    # flag in the last turn (either mode), flag only in an earlier turn (either mode), no flag at all
    assert kinds == {(True, True, "think"), (True, True, "no-think"), (False, True, "think"),
                     (False, True, "no-think"), (False, False, "think")}


def test_thinkfollow_scores_planted_replies():
    user = lambda text: {"role": "user", "content": text}                    # noqa: E731
    said = {"role": "assistant", "content": "<think>\n\n</think>\n\n\\boxed{1}"}
    dialogues = [thinkfollow.Dialogue([user("a /no_think"), said, user("b")], ["no-think", None], "no-think"),
                 thinkfollow.Dialogue([user("a /no_think"), said, user("b /think")], ["no-think", "think"], "think"),
                 thinkfollow.Dialogue([user("a"), said, user("b")], [None, None], "think"),
                 thinkfollow.Dialogue([user("a /think"), said, user("b")], ["think", None], "think")]
    thinks, skips = "<think>\nHmm.\n</think>\n\nx", "<think>\n\n</think>\n\nx"
    result = thinkfollow.score(dialogues, [skips, thinks, skips, "x"])
    assert (result["n"], result["correct"], result["accuracy"]) == (4, 2, 0.5)
    assert result["by_kind"] == {"expected think": {"n": 3, "correct": 1}, "expected no-think": {"n": 1, "correct": 1},
                                 "flag in the last turn": {"n": 1, "correct": 1},
                                 "flag only in an earlier turn": {"n": 2, "correct": 1},
                                 "no flag": {"n": 1, "correct": 0}}
    assert result["replied_modes"] == {"think": 1, "no-think": 2, "neither": 1}


# ------------------------------------------------------------------------------------------ whole runs
@pytest.fixture(scope="module")
def scripted(tmp_path_factory):
    """(directory, model, tokenizer) of the scripted checkpoint."""
    from qwen3mini.chat import load
    from qwen3mini.tokenizer import load_tokenizer, qwen3_tokenizer_dir
    fixtures = load_file("infer_conftest", "tests", "infer", "conftest.py")
    tokenizer_dir = qwen3_tokenizer_dir()
    directory = fixtures.build_scripted_checkpoint(str(tmp_path_factory.mktemp("scripted")), tokenizer_dir,
                                                   load_tokenizer(tokenizer_dir))
    model, tokenizer, _ = load(directory, device="cpu")
    return directory, model, tokenizer


SELECTION = dict(families=["add", "sort"], difficulties=[3], limit=1, budgets=[0, 2, 16], samples=2,
                 thinkfollow=12, max_new_tokens=32, batch_size=8)


@pytest.fixture(scope="module")
def results(scripted):
    _, model, tokenizer = scripted
    return evaluate(model, tokenizer, Selection(**SELECTION), log=lambda line: None)


def test_budget_accounting_on_the_scripted_model(results):
    """Thinking " one two three four five six" (6 tokens) then "\\n\\n" + 你 (3 byte tokens) + " ok"; after the
    budget's stop text, which ends in "\\n\\n", the answer is 4 tokens; in non-thinking mode too."""
    cells = {(c["family"], c["difficulty"], c["mode"], c["budget"]): c for c in results["cells"]}
    assert len(cells) == 2 * (2 + 3)                     # (add 3, sort 3) x (think, no-think, 3 budgets)
    expected = {("think", None): (6, 5), ("think", 0): (0, 4), ("think", 2): (2, 4), ("think", 16): (6, 5),
                ("no-think", None): (0, 4)}
    for (family, difficulty, mode, budget), cell in cells.items():
        assert (cell["mean_thinking_tokens"], cell["mean_answer_tokens"]) == expected[mode, budget]
        assert (cell["n"], cell["correct"], cell["self_ended"]) == (1, 0, 1.0)   # "你 ok" is never right
        assert cell["thought"] == (mode == "think" and budget != 0)
        assert cell["samples"] == (2 if budget is None else 0)
        assert cell["pass@k"] == ({"1": 0.0, "2": 0.0} if budget is None else None)
        assert cell["example"]["question"] == evaluation_set(family, difficulty)[0].question
        assert cell["misses"] == [{**cell["example"], "answer": evaluation_set(family, difficulty)[0].answer}]
    assert cells["add", 3, "think", 2]["example"]["reply"].startswith("<think> one two" + "\n\nConsidering")


def test_a_cell_keeps_its_first_four_misses(scripted):
    """The scripted model answers "你 ok" to everything: each of 6 items is a miss, and the cell keeps the first
    4 (question, right answer, reply) in the order of the test set."""
    _, model, tokenizer = scripted
    selection = Selection(families=["add"], difficulties=[3], modes=["think"], limit=6, budgets=[], samples=0,
                          thinkfollow=0, instructions=0, knowledge=0, tools=0, max_new_tokens=32, batch_size=8)
    cell, = evaluate(model, tokenizer, selection, log=lambda line: None)["cells"]
    items = evaluation_set("add", 3)[:4]
    assert cell["correct"] == 0 and cell["n"] == 6
    assert [(m["question"], m["answer"]) for m in cell["misses"]] == [(p.question, p.answer) for p in items]
    assert all(m["reply"].startswith("<think> one two") for m in cell["misses"])


def test_thinkfollow_on_the_scripted_model(results):
    """The scripted model always thinks: it follows exactly the dialogues that ask for thinking."""
    follow, dialogues = results["thinkfollow"], make_dialogues(12, evaluation_set("add", 3)[:1] +
                                                               evaluation_set("sort", 3)[:1])
    thinking = sum(d.expected == "think" for d in dialogues)
    assert 0 < thinking < 12
    assert (follow["n"], follow["correct"]) == (12, thinking)
    assert follow["replied_modes"] == {"think": 12, "no-think": 0, "neither": 0}


def test_an_interrupted_evaluation_resumes_from_its_journal(scripted, results, tmp_path, monkeypatch):
    """Killed in its third phase (of 8: greedy and samples in each mode, three budgets, ThinkFollow), the run
    keeps the two before it; run again, it generates only the other six and gives the uninterrupted run's
    figures. A journal kept for another selection or model is not used. The key has the shape evaluate.py
    gives it (tuples, which come back from the file as lists)."""
    from qwen3mini.evaluation import Journal, harness
    _, model, tokenizer = scripted
    path = str(tmp_path / "journal.json")
    key = {"selection": asdict(Selection(**SELECTION)), "model": "scripted", "weights": [("model.safetensors", 1, 2.5)]}
    generate, calls = harness.Run.generate, []

    def interrupted(run, *args):
        calls.append(args[-1])
        if len(calls) == 3:
            raise KeyboardInterrupt
        return generate(run, *args)
    monkeypatch.setattr(harness.Run, "generate", interrupted)
    with pytest.raises(KeyboardInterrupt):
        evaluate(model, tokenizer, Selection(**SELECTION), log=lambda line: None, journal=Journal(path, key))
    assert sorted(Journal(path, key).phases) == ["greedy think None", "samples think"]
    assert Journal(path, dict(key, model="another")).phases == {}
    calls.clear()
    monkeypatch.setattr(harness.Run, "generate", lambda run, *args: calls.append(args[-1]) or generate(run, *args))
    resumed = evaluate(model, tokenizer, Selection(**SELECTION), log=lambda line: None, journal=Journal(path, key))
    assert len(calls) == 6 and not any(what.startswith("think, no budget") for what in calls)
    assert resumed["cells"] == results["cells"] and resumed["thinkfollow"] == results["thinkfollow"]
    assert resumed["generation"]["replies"] == results["generation"]["replies"]


def test_replies_come_back_in_the_order_of_the_prompts(scripted):
    """Rows are batched by their length limits, then put back in order: think and no-think prompts mixed."""
    from qwen3mini.evaluation.harness import Run
    _, model, tokenizer = scripted
    run = Run(model, tokenizer, Selection(batch_size=2), log=lambda line: None)
    problems = evaluation_set("add", 3)[:5]
    modes = ["think", "no-think", "no-think", "think", "no-think"]
    prompts = [run.prompt(p, mode) for p, mode in zip(problems, modes)]
    replies = run.generate(prompts, [30, 20, 10, 5, 40], {"temperature": 0.0}, None, "mixed")
    assert [r.text for r in replies] == ["<think> one two three four five six</think>\n\n你 ok<|im_end|>",
                                         "你 ok<|im_end|>", "你 ok<|im_end|>", "<think> one two three four",
                                         "你 ok<|im_end|>"]


def test_a_reply_may_always_run_to_the_ended_measure(scripted):
    """The harness never cuts a reply before REPLY_TOKENS (unless max_new_tokens or the context says so): a
    non-thinking reply that works the problem out loud must be able to show that it ends within 1,024 tokens,
    far past twice the solver's one-line answer (RL's rollout cap, reply_limit, stays that short)."""
    from qwen3mini.evaluation.general import REPLY_TOKENS
    from qwen3mini.evaluation.harness import Run, reply_limit
    _, model, tokenizer = scripted
    problem = evaluation_set("add", 3)[0]
    assert reply_limit(tokenizer, problem, "no-think", 3072) < REPLY_TOKENS
    for max_new_tokens, expected in ((3072, REPLY_TOKENS), (100, 100)):
        run = Run(model, tokenizer, Selection(max_new_tokens=max_new_tokens), log=lambda line: None)
        prompt = run.prompt(problem, "no-think")
        assert run.limit(problem, "no-think", prompt) == min(expected, run.room(prompt))


def test_modes_asked_for_by_flags(scripted):
    """--switch flags: the question ends in /no_think and the template stays in thinking mode, so the scripted
    model (which ignores flags) thinks in the no-think cells too; the template's switch leaves it no choice."""
    from qwen3mini.evaluation.harness import Run
    _, model, tokenizer = scripted
    flags = Selection(families=["add"], difficulties=[3], limit=1, modes=["no-think"], budgets=[], switch="flags")
    prompt = tokenizer.decode(Run(model, tokenizer, flags).prompt(evaluation_set("add", 3)[0], "no-think"))
    assert prompt.endswith("? /no_think<|im_end|>\n<|im_start|>assistant\n")
    (cell,) = evaluate(model, tokenizer, flags, log=lambda line: None)["cells"]
    assert (cell["mode"], cell["thought"], cell["mean_thinking_tokens"]) == ("no-think", 1.0, 6)


def test_report_json_and_plots(results, tmp_path):
    paths = write_report(results, str(tmp_path / "eval"))
    assert sorted(os.path.basename(p) for p in paths) == sorted([report.JSON_NAME, report.DIFFICULTY_PLOT,
                                                                 report.BUDGET_PLOT])
    for path in paths[1:]:
        with open(path, "rb") as f:
            assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    written = json.load(open(paths[0]))
    assert written["schema"] == "qwen3mini-evaluation/1"
    assert set(written) == {"schema", "selection", "sampling", "reply_limit", "cells", "thinkfollow", "generation",
                            "general", "ended_within_1024"}
    assert written["selection"] == {**SELECTION, "modes": ["think", "no-think"], "seed": 0, "switch": "template",
                                    "instructions": 0, "knowledge": 0, "tools": 0}
    assert written["general"] == {} and set(written["ended_within_1024"]) == {"think", "no-think"}
    assert written["sampling"]["think"] == dict(temperature=0.6, top_p=0.95, top_k=20, presence_penalty=0.0)
    assert set(written["cells"][0]) == {"family", "difficulty", "mode", "budget", "n", "correct", "pass@1",
                                        "wilson95", "mean_thinking_tokens", "mean_answer_tokens", "self_ended",
                                        "thought", "samples", "pass@k", "example", "misses"}
    # 2 sets of 1 item: 5 greedy cells each, 2 samples an item in both modes; 12 dialogues
    assert written["generation"]["replies"] == 2 * 5 + 2 * 2 * 2 + 12


def test_a_failed_write_keeps_the_earlier_result(results, tmp_path, monkeypatch):
    out = str(tmp_path)
    write_report(results, out)
    before = open(os.path.join(out, report.JSON_NAME)).read()

    def broken(results, path):
        raise RuntimeError("disk full")
    monkeypatch.setattr(report, "plot_accuracy_by_difficulty", broken)   # written after the JSON
    changed = dict(results, cells=results["cells"][:2])
    with pytest.raises(RuntimeError):
        write_report(changed, out)
    assert open(os.path.join(out, report.JSON_NAME)).read() == before
    assert not [name for name in os.listdir(out) if name.endswith(".tmp")]


# ------------------------------------------------------------------------------------------ the script
def test_command_line_writes_the_report(scripted, tmp_path, capsys):
    directory, _, _ = scripted
    out = tmp_path / "eval"
    cli.main(["--model", directory, "--out", str(out), "--families", "linear", "--difficulties", "1-2",
              "--limit", "1", "--samples", "0", "--budgets", "none", "--thinkfollow", "0", "--modes", "no-think",
              "--device", "cpu"])
    written = json.load(open(out / report.JSON_NAME))
    assert [(c["family"], c["difficulty"], c["mode"]) for c in written["cells"]] == [("linear", 1, "no-think"),
                                                                                     ("linear", 2, "no-think")]
    assert written["model"] == directory and written["thinkfollow"] is None
    assert sorted(os.listdir(out)) == [report.DIFFICULTY_PLOT, report.JSON_NAME]
    assert "linear" in capsys.readouterr().out


def test_command_line_evaluates_int8_weights(scripted, tmp_path):
    directory, _, _ = scripted
    cli.main(["--model", directory, "--out", str(tmp_path), "--families", "add", "--difficulties", "1", "--limit", "1",
              "--samples", "0", "--budgets", "none", "--thinkfollow", "0", "--modes", "think", "--device", "cpu",
              "--quantize", "int8", "--instructions", "0", "--knowledge", "0", "--tools", "0"])
    written = json.load(open(tmp_path / report.JSON_NAME))
    assert written["quantize"] == "int8" and [c["family"] for c in written["cells"]] == ["add"]


@pytest.mark.parametrize("flag, value, message", [
    ("--families", "add,nope", "argument --families: unknown family 'nope'"),
    ("--difficulties", "40", "argument --difficulties: none of [40] exists for add (1 to 10)"),
    ("--difficulties", "a-b", "argument --difficulties: 'a-b' is not a number"),
    ("--modes", "think,fast", "argument --modes: expected think and/or no-think"),
    ("--budgets", "0,-3", "argument --budgets: '-3' is not a number"),
    ("--batch-size", "0", "argument --batch-size: must be >= 1"),
    ("--samples", "-1", "argument --samples: must be >= 0"),
    ("--quantize", "int4", "argument --quantize: invalid choice: 'int4'"),
])
def test_bad_arguments_are_one_line(flag, value, message, capsys):
    with pytest.raises(SystemExit):
        cli.parse_args(["--families", "add", flag, value])
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert error.startswith(f"evaluate.py: error: {message}")


def test_presets_and_budget_lists():
    args = cli.parse_args(["--preset", "tiny", "--samples", "3"])
    assert (args.selection.samples, args.selection.limit, args.selection.budgets) == (3, 2, [0, 16])
    assert args.selection.families == ["add", "sort"] and args.device == "cpu"
    assert cli.parse_args([]).selection.budgets == [0, 16, 32, 64, 128, 256, 512]
    assert cli.integers("1,2,5-7", "difficulties") == [1, 2, 5, 6, 7]


def test_a_missing_model_or_an_output_that_is_a_file_is_one_line(tmp_path, capsys):
    with pytest.raises(SystemExit, match=r"^evaluate\.py: .*missing"):
        cli.main(["--model", str(tmp_path / "missing"), "--out", str(tmp_path), "--families", "add"])
    (tmp_path / "taken").write_text("")
    with pytest.raises(SystemExit):
        cli.parse_args(["--out", str(tmp_path / "taken")])
    assert capsys.readouterr().err.strip().splitlines()[-1].endswith("taken is a file, not a directory")


# ---------------------------------------------------------------------------------------------- comparisons
def test_compare_gain_reach_and_edge_cells(tmp_path):
    from qwen3mini.evaluation.report import compare, comparison_markdown, plot_comparison

    def results(rates):
        return {"cells": [{"family": "sort", "difficulty": d, "mode": "think", "budget": None, "n": 50,
                           "correct": round(r * 50), "pass@1": r, "wilson95": [0, 1], "pass@k": {"1": r, "16": 1.0}}
                          for d, r in zip(range(3, 3 + len(rates)), rates)]
                + [{"family": "sort", "difficulty": 3, "mode": "no-think", "budget": None, "n": 50, "correct": 0,
                    "pass@1": 0.0, "wilson95": [0, 1], "pass@k": None}]}
    before, after = results([1.0, 0.9, 0.6, 0.3, 0.0]), results([1.0, 0.9, 0.7, 0.6, 0.1])
    figures = compare({"cold": before, "rl": after})
    assert figures["reach"] == {"cold": {"sort": 5}, "rl": {"sort": 6}}      # the last difficulty >= 0.5
    assert figures["edge_cells"] == ["sort/5", "sort/6"]                        # cold's pass@1 within the edge
    assert figures["edge_mean"] == pytest.approx({"cold": 0.45, "rl": 0.65})
    assert figures["cells"][0]["rl"]["pass@16"] == 1.0 and len(figures["cells"]) == 5   # think cells only
    text = comparison_markdown(figures)
    assert "| sort 6 (edge) | 0.30 | 0.60 | +0.30 |" in text and "| sort 7 | 0.00 | 0.10 | +0.10 |" in text
    plot_comparison(figures, str(tmp_path / "c.png"))
    assert (tmp_path / "c.png").read_bytes()[:4] == b"\x89PNG"
    assert compare({"cold": before, "rl": results([0.2])}, edge=(0.0, 0.1))["edge_cells"] == []


# ---------------------------------------------------------------------------------------------- general abilities
def test_general_abilities_score_planted_replies(monkeypatch):
    """Instructions (strict), knowledge (coverage) and tool use (with and without the calculator), each on
    replies planted by a scripted generation path: right ones score, wrong or unended ones do not."""
    import types
    from qwen3mini.chat import ChatCompletion, split_completion
    from qwen3mini.evaluation import general
    from qwen3mini.generation import Completion
    from qwen3mini.tasks.instructions import reply_following
    from qwen3mini.tasks.knowledge import load_knowledge

    from qwen3mini.tokenizer import load_tokenizer
    tok = load_tokenizer(os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
                                      "checkpoints", "tokenizer-16k"))
    model = types.SimpleNamespace(config=types.SimpleNamespace(max_position_embeddings=4096))
    answers = {}                                        # prompt text -> the reply text to plant

    def planted(model, tokenizer, prompts, limits, sampling):
        texts = [answers[tokenizer.decode(p)] for p in prompts]
        return [ChatCompletion(Completion([0], 1, "stop"), t, split_completion(t)) for t in texts]
    monkeypatch.setattr(general, "generate_replies", planted)

    items = general.instruction_items(2)
    assert len(items) == 10 and len({name for _, name in items}) == 5
    for i, (p, name) in enumerate(items):     # every second reply right
        right = reply_following(p, name, None if i % 2 == 0 else str(int(p.answer.split(",")[0]) + 1))
        answers[tok.decode(general._ask(tok, general.constrained(p.question, name), "no-think"))] = \
            f"<think>\n\n</think>\n\n{right}"
    figures = general.evaluate_instructions(model, tok, ["no-think"], 2, 4, 64)["no-think"]
    assert figures["strict"]["correct"] == 5 and figures["by_constraint"]["json"]["follows"] == 1.0

    records = load_knowledge(split="test")
    first = {r["kind"]: r for r in reversed(records)}
    for r in records:
        answers[tok.decode(general._ask(tok, r["question"], "think"))] = \
            f"<think>\nRecall.\n</think>\n\n{r['answer'] if r is first[r['kind']] else 'No idea.'}"
    figures = general.evaluate_knowledge(model, tok, ["think"], 3, 8, 64)["think"]
    assert figures["covers"]["n"] == 3 * len(first) and figures["covers"]["correct"] == len(first)

    products = general.tool_items(2)
    assert [p.difficulty for p in products] == [4, 4, 5, 5, 6, 6]
    for p in products:
        answers[tok.decode(general._ask(tok, p.question, "no-think"))] = "<think>\n\n</think>\n\n\\boxed{7}"

    def with_tool(model, tokenizer, conversations, tools, max_new_tokens, sampling, think, max_calls):
        assert tools == ["calculator"]
        return [types.SimpleNamespace(answer=f"\\boxed{{{p.answer}}}", calls=[{"valid": True}], messages=[])
                for p in products]
    monkeypatch.setattr(general, "generate_with_tools", with_tool)
    figures = general.evaluate_tools(model, tok, ["no-think"], 2, 16, 64)["no-think"]
    assert figures["with_tool"]["accuracy"] == 1.0 and figures["without_tool"]["accuracy"] == 0.0
    assert figures["valid_calls"]["accuracy"] == 1.0 and figures["by_size"]["6x6"]["with_tool"] == 1.0
