"""Thinking-mode fusion (issue 19, stage 3): rejection sampling, the Table 9 formats, the stage on the CPU."""
import dataclasses
import json
import random

import pytest

import qwen3mini
from qwen3mini.chat import ChatCompletion, split_completion
from qwen3mini.config import PRESETS
from qwen3mini.evaluation.thinkfollow import reply_mode
from qwen3mini.generation import Completion
from qwen3mini.model import Qwen3ForCausalLM
from qwen3mini.tasks import FAMILIES, traces
from qwen3mini.training import rollouts
from qwen3mini.training.fusion_samples import dialogue_sample, direct_answer, rejection_sampled, split_by_mode
from qwen3mini.training.sft import render_sample
from qwen3mini.training.task_samples import flagged_turn
from qwen3mini.training.stage import save_pretrained

from test_sft import TOKENIZER, tok  # noqa: F401  (the tokenizer fixture)


def problem(seed, family="add", difficulty=3):
    return FAMILIES[family].generate(random.Random(seed), difficulty)


def reply(text, finish="stop"):
    return ChatCompletion(Completion([1, 2], 2, finish), text, split_completion(text))


def test_rejection_sampling_keeps_the_first_right_filtered_reply(tok, monkeypatch):
    problems = [problem(i) for i in range(3)]
    good = [f"<think>\n{traces.thinking(p)}\n</think>\n\n{traces.answer(p)}" for p in problems]
    wrong = "<think>\nI guess.\n</think>\n\nThe answer is \\boxed{1}."
    planted = {0: [(wrong, "stop"), (good[0], "stop")], 1: [(wrong, "stop"), (wrong, "stop")],
               2: [(good[2], "length"), (good[2], "stop")]}                  # 2: cut by its token cap first

    def generate(model, tokenizer, prompts, limits, params):
        assert len(prompts) == 6 and params.temperature == 0.6 and params.top_k == 20      # the paper's settings
        return [reply(*planted[i // 2][i % 2]) for i in range(6)]
    monkeypatch.setattr(rollouts, "generate_replies", generate)
    kept = rejection_sampled(None, tok, problems, 2, {"temperature": 0.6, "top_p": 0.95, "top_k": 20}, seed=0)
    assert kept[1] is None
    assert kept[0] == {"role": "assistant", "reasoning_content": traces.thinking(problems[0]),
                       "content": traces.answer(problems[0])}
    assert kept[2]["reasoning_content"] == traces.thinking(problems[2])


def test_every_cell_gets_both_modes():
    """A cell with queries to spare asks disjoint ones in each mode; a small cell (the 1x1 products) asks its
    queries again directly, so that non-thinking mode sees every cell."""
    large = [problem(seed) for seed in range(300)]
    thinking, directly = split_by_mode(large, 150, 100)
    assert thinking == large[:150] and directly == large[150:250]
    small = [problem(seed, "mul", 1) for seed in range(11)]
    thinking, directly = split_by_mode(small, 150, 100)
    assert thinking == small and directly == small
    middle = [problem(seed) for seed in range(200)]
    thinking, directly = split_by_mode(middle, 150, 100)
    assert thinking == middle[:150] and directly == middle[150:] + middle[:50]
    assert split_by_mode(large, 150, 0) == (large[:150], [])


def test_table_9_formats(tok):
    rng, p = random.Random(0), problem(1)
    assert flagged_turn(p.question, "no-think", rng, 0.5)["content"].endswith(" /no_think")
    flags = {flagged_turn(p.question, "think", random.Random(i), 0.5)["content"].endswith(" /think") for i in range(20)}
    assert flags == {True, False}                                       # some thinking samples carry no flag
    ids, mask = render_sample(tok, [flagged_turn(p.question, "no-think", rng, 0), direct_answer(p)])
    assert tok.decode([t for t, m in zip(ids, mask) if m]).startswith("<think>\n\n</think>\n\n")   # the empty block
    pool = [problem(i, family) for i in range(10) for family in ("add", "sort")]
    for i in range(30):
        messages, last = dialogue_sample(random.Random(i), pool)
        assert messages[-1]["role"] == "user" and 3 <= len(messages) <= 7
        flags = [m["content"].rsplit(" ", 1)[-1] for m in messages if m["role"] == "user"]
        asked = next((f for f in reversed(flags) if f in ("/think", "/no_think")), "/think")
        text = tok.decode([t for t, m in zip(*render_sample(tok, messages + [last])) if m])
        assert reply_mode(text) == ("think" if asked == "/think" else "no-think")


def test_knowledge_and_instruction_samples(tok):
    from qwen3mini.tasks.instructions import CONSTRAINTS, strict
    from qwen3mini.tasks.knowledge import covers, load_knowledge
    from qwen3mini.tasks import verify
    from qwen3mini.training.fusion_samples import instruction_sample, knowledge_sample
    item = load_knowledge(split="train")[0]
    for mode in ("think", "no-think"):
        messages, last = knowledge_sample(item, mode, random.Random(0), 0.0)
        text = tok.decode([t for t, m in zip(*render_sample(tok, messages + [last])) if m])
        assert reply_mode(text) == mode and covers(item["answer"], split_completion(text).answer)
        for name in CONSTRAINTS:
            p = problem(3, "sort", 5)
            messages, last = instruction_sample(p, name, mode, random.Random(0), 0.0)
            assert messages[-1]["content"].startswith(p.question + CONSTRAINTS[name])
            text = tok.decode([t for t, m in zip(*render_sample(tok, messages + [last])) if m])
            assert reply_mode(text) == mode and strict(p, name, split_completion(text).answer), (name, mode)
        messages, last = instruction_sample(p, None, mode, random.Random(0), 0.0)     # the same question, plain
        assert messages[-1]["content"].removesuffix(" /think").removesuffix(" /no_think") == p.question
        text = tok.decode([t for t, m in zip(*render_sample(tok, messages + [last])) if m])
        answer = split_completion(text).answer
        assert reply_mode(text) == mode and verify(p, answer) and not strict(p, "number", answer)


def test_small_talk_samples(tok):
    from qwen3mini.tasks.small_talk import ASKS, TOPICS, replies_to
    from qwen3mini.training.fusion_samples import small_talk_sample
    rng, seen = random.Random(0), set()
    for _ in range(200):
        mode = rng.choice(("think", "no-think"))
        messages, last = small_talk_sample(mode, rng, 0.3)
        question = messages[-1]["content"].removesuffix(" /think").removesuffix(" /no_think")
        topic = next(t for t in TOPICS if question.rstrip("?!.").lower() in [a.lower() for a in ASKS[t]])
        seen.add(topic)
        text = tok.decode([t for t, m in zip(*render_sample(tok, messages + [last])) if m])
        assert reply_mode(text) == mode and split_completion(text).answer.strip() in replies_to(topic)
        assert (mode == "think") == bool(split_completion(text).thinking.strip())
    assert seen == set(TOPICS)


def test_tiny_stage_end_to_end(tmp_path, monkeypatch, capsys):
    from train import sft_mode_fusion
    start, cold = tmp_path / "start", tmp_path / "cold"
    model = Qwen3ForCausalLM(dataclasses.replace(PRESETS["tiny"], vocab_size=16384, max_position_embeddings=1024))
    save_pretrained(model, str(start), TOKENIZER, post_trained=True)
    cold.mkdir()
    (cold / "summary.json").write_text(json.dumps({"settings": {"ranges": "add:2,sort:3", "queries_per_cell": 6,
                                                                "val_per_cell": 1, "seed": 5}}))

    def solver_replies(model, tokenizer, problems, samples, sampling, seed, max_new_tokens):
        return [None if i % 2 else {"role": "assistant", "reasoning_content": traces.thinking(p),
                                    "content": traces.answer(p)} for i, p in enumerate(problems)]
    monkeypatch.setattr(sft_mode_fusion, "rejection_sampled", solver_replies)
    out, pool = tmp_path / "fusion", tmp_path / "pool.json"
    pool.write_text(json.dumps({"questions": ["What is 12345 + 67890?", "What is 11111 + 22222?"]}))  # stage 2's
    sft_mode_fusion.main(["--preset", "tiny", "--init_from", str(start), "--cold_start_dir", str(cold),
                          "--rl_pool", str(pool), "--out_dir", str(out), "--val_share", "0"])
    data = json.load(open(out / "data.json"))
    assert data["add/5"].get("think", 0) + data["add/5"].get("no_reply_kept", 0) == 2      # the pool's, sampled
    assert data["add/2"]["think"] == 1 and data["add/2"]["no_reply_kept"] == 1 and data["add/2"]["no-think"] == 2
    switched = data["add/3"].pop("template_switch", 0)          # some asked as --no-think asks (no flag)
    assert data["add/3"] == {"no-think": 2, "tokens": data["add/3"]["tokens"]}     # past the range: answered directly
    assert 0 < switched + sum(cell.get("template_switch", 0) for cell in data.values()) < 16
    assert sum(cell.get("dialogue", 0) for cell in data.values()) == 6
    assert sum(cell.get("knowledge", 0) for cell in data.values()) == 4
    assert sum(cell.get("instruction", 0) for cell in data.values()) == 4      # one per cell, and its twin
    assert data["instruction/none"]["instruction"] == 2
    assert sum(cell.get("tool", 0) for cell in data.values()) == 4                 # two samples a query
    assert data["small_talk/all"]["small_talk"] == 2
    assert "thinking-mode fusion: 6 steps" in capsys.readouterr().out
    final = qwen3mini.load_model(str(out / "final"))
    assert final.config.num_hidden_layers == PRESETS["tiny"].num_hidden_layers


def test_bad_settings():
    from train import sft_mode_fusion
    with pytest.raises(ValueError, match="--unflagged_share"):
        sft_mode_fusion.main(["--preset", "tiny", "--unflagged_share", "1.5"])
    with pytest.raises(ValueError, match="--init_from"):
        sft_mode_fusion.main(["--preset", "tiny", "--init_from", "/nonexistent"])
    with pytest.raises(ValueError, match="--direct_past_range 'add:11': add has difficulties 1 to 10"):
        sft_mode_fusion.main(["--preset", "tiny", "--direct_past_range", "add:11"])


def test_rl_pool_questions(tmp_path):
    from train.sft_mode_fusion import rl_pool_questions
    (tmp_path / "pool.json").write_text(json.dumps({"questions": ["What is 12 * 34?"]}))
    assert [p.answer for p in rl_pool_questions(str(tmp_path / "pool.json"))] == ["408"] and rl_pool_questions("") == []
    with pytest.raises(ValueError, match="--rl_pool .*missing.json: no such file"):
        rl_pool_questions(str(tmp_path / "missing.json"))
