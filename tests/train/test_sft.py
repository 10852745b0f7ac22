"""SFT plumbing (qwen3mini/training/sft.py) and the cold-start stage (train/sft_cold_start.py) on the CPU."""
import dataclasses
import json
import os
import random

import pytest
import torch

import qwen3mini
from qwen3mini.config import PRESETS
from qwen3mini.model import Qwen3ForCausalLM
from qwen3mini.tasks import FAMILIES, traces
from qwen3mini.training.distributed import DistInfo
from qwen3mini.training.losses import IGNORE, CausalLMLoss
from qwen3mini.training.sft import PackedBatches, pack_rows, packed_row, render_sample
from qwen3mini.training.stage import save_pretrained
from qwen3mini.training.task_samples import parse_ranges, switched_by_template, unique_answer

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TOKENIZER = os.path.join(ROOT, "checkpoints", "tokenizer-16k")


@pytest.fixture(scope="module")
def tok():
    return qwen3mini.load_tokenizer(TOKENIZER)


def problem(seed=0, family="add", difficulty=3):
    return FAMILIES[family].generate(random.Random(seed), difficulty)


def conversation(p, think=True, flag=" /think", history=()):
    reply = {"role": "assistant", "content": traces.answer(p)}
    if think:
        reply["reasoning_content"] = traces.thinking(p)
    return [*history, {"role": "user", "content": p.question + flag}, reply]


# ------------------------------------------------------------------------------------------- the loss mask
@pytest.mark.parametrize("think, flag", [(True, " /think"), (True, ""), (False, " /no_think")])
def test_prompt_tokens_are_what_inference_sees(tok, think, flag):
    p = problem()
    messages = conversation(p, think, flag)
    ids, mask = render_sample(tok, messages)
    prompt = tok.encode(tok.apply_chat_template(messages[:-1], tokenize=False, add_generation_prompt=True))
    first = mask.index(True)
    assert ids[:first] == prompt and not any(mask[:first]) and all(mask[first:])
    reply = tok.decode(ids[first:])
    expected = f"<think>\n{traces.thinking(p)}\n</think>\n\n" if think else "<think>\n\n</think>\n\n"
    assert reply == expected + traces.answer(p) + "<|im_end|>"


def test_hard_switch_sample_keeps_the_empty_block_in_the_prompt(tok):
    """enable_thinking=False: the prompt is what the hard switch opens (no flag, the template's empty think block)
    and only the answer is learnt; the same tokens rendered the default way learn the block too."""
    p = problem()
    messages = conversation(p, think=False, flag="")
    ids, mask = render_sample(tok, messages, enable_thinking=False)
    hard = tok.encode(tok.apply_chat_template(messages[:-1], tokenize=False, add_generation_prompt=True,
                                              enable_thinking=False))
    first = mask.index(True)
    assert ids[:first] == hard and all(mask[first:])
    assert tok.decode(ids[first:]) == traces.answer(p) + "<|im_end|>"
    default_ids, default_mask = render_sample(tok, messages)
    assert default_ids == ids and tok.decode(ids[default_mask.index(True):]).startswith("<think>\n\n</think>")
    with pytest.raises(ValueError, match="differently"):             # a thinking reply under the hard switch
        render_sample(tok, conversation(p, think=True, flag=""), enable_thinking=False)


def test_switched_by_template_takes_single_turn_no_think_samples_only():
    p, rng = problem(), random.Random(0)
    direct = conversation(p, think=False, flag=" /no_think")
    assert switched_by_template(direct[:-1], direct[-1], rng, 0.0) == (direct[:-1], True)
    messages, enable_thinking = switched_by_template(direct[:-1], direct[-1], rng, 0.99)
    assert messages == [{"role": "user", "content": p.question}] and enable_thinking is False
    assert direct[0]["content"].endswith(" /no_think")                # the sample itself is left as it was
    thinking = conversation(p, think=True, flag=" /think")
    dialogue = conversation(p, think=False, flag=" /no_think", history=conversation(problem(1), think=False))
    call = [{"role": "user", "content": p.question + " /no_think"},
            {"role": "assistant", "content": "", "tool_calls": [{"name": "calculator", "arguments": {}}]}]
    for sample in (thinking, dialogue, call):
        assert switched_by_template(sample[:-1], sample[-1], rng, 0.99) == (sample[:-1], True)
    shares = [switched_by_template(direct[:-1], direct[-1], random.Random(i), 0.5)[1] for i in range(200)]
    assert 60 < shares.count(False) < 140


def test_multi_turn_history_drops_earlier_thinking(tok):
    first, second = problem(1), problem(2)
    messages = conversation(second, history=conversation(first))
    ids, mask = render_sample(tok, messages)
    prompt = tok.apply_chat_template(messages[:-1], tokenize=False, add_generation_prompt=True)
    assert tok.encode(prompt) == ids[:mask.index(True)]
    assert traces.thinking(first) not in prompt and traces.answer(first) in prompt
    assert sum(mask) == len(tok.encode(tok.decode(ids[mask.index(True):])))


def test_render_sample_needs_a_final_reply(tok):
    with pytest.raises(ValueError, match="assistant reply"):
        render_sample(tok, [{"role": "user", "content": "hi"}])


# ------------------------------------------------------------------------------------------- packing
def tiny_model(seed=0):
    torch.manual_seed(seed)
    return Qwen3ForCausalLM(dataclasses.replace(PRESETS["tiny"], torch_dtype="float32"))


def random_samples(lengths, vocab=512, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [(torch.randint(0, vocab, (n,), generator=g).tolist(), [i >= n // 2 for i in range(n)]) for n in lengths]


def test_packed_logits_equal_each_conversation_alone():
    model, samples = tiny_model(), random_samples([7, 12, 5, 9])
    rows = [[0, 1, 2], [3]]
    inputs, _, positions = (torch.stack(c) for c in zip(*(packed_row(samples, r, 30, 0) for r in rows)))
    for grad in (True, False):                      # the training path (SDPA with a mask) and ops.attention_prefill
        with torch.set_grad_enabled(grad):
            packed = model(inputs, position_ids=positions)
            for b, row in enumerate(rows):
                offset = 0
                for i in row:
                    ids = torch.tensor(samples[i][0])[None]
                    alone = model(ids)[0]
                    torch.testing.assert_close(packed[b, offset:offset + len(ids[0])], alone,
                                               rtol=1e-5, atol=1e-5)     # fp32, another reduction order
                    offset += len(ids[0])


def test_unpacked_path_unchanged():
    """position_ids of one sequence per row give what the equal-rows path gives."""
    model, ids = tiny_model(), torch.randint(0, 512, (2, 16))
    positions = torch.arange(16).repeat(2, 1)
    torch.testing.assert_close(model(ids, position_ids=positions), model(ids), rtol=1e-5, atol=1e-5)


def test_gradients_stay_inside_a_conversation():
    model, samples = tiny_model(), random_samples([6, 8])
    inputs, _, positions = (t[None] for t in packed_row(samples, [0, 1], 16, 0))
    embedded = []
    model.model.embed_tokens.register_forward_hook(lambda m, i, out: embedded.append(out) or out.retain_grad())
    logits = model(inputs, position_ids=positions)
    logits[0, 6:14].sum().backward()                 # the second conversation's outputs only
    grad = embedded[0].grad.abs().sum(-1)
    assert grad[:6].max() == 0 and grad[6:14].min() > 0


def test_bad_position_ids_named():
    with pytest.raises(ValueError, match="position_ids"):
        tiny_model()(torch.zeros(1, 4, dtype=torch.long), position_ids=torch.tensor([[0, 1, 3, 4]]))


def test_targets_only_on_reply_tokens_and_no_crossing():
    samples = [([1, 2, 3, 4], [False, False, True, True]), ([5, 6, 7], [False, True, True])]
    inputs, targets, positions = packed_row(samples, [0, 1], 9, 0)
    assert inputs.tolist() == [1, 2, 3, 4, 5, 6, 7, 0, 0]
    assert targets.tolist() == [IGNORE, 3, 4, IGNORE, 6, 7, IGNORE, IGNORE, IGNORE]
    assert positions.tolist() == [0, 1, 2, 3, 0, 1, 2, 0, 1]


def test_pack_rows_fits_and_keeps_every_sample():
    lengths = [random.Random(i).randint(1, 50) for i in range(200)]
    rows = pack_rows(lengths, 64, list(range(200)))
    assert sorted(i for r in rows for i in r) == list(range(200))
    assert all(sum(lengths[i] for i in r) <= 64 for r in rows)
    with pytest.raises(ValueError, match="seq_len"):
        pack_rows([65], 64, [0])


def test_loss_counts_reply_tokens_only():
    model, samples = tiny_model(), random_samples([10, 10])
    batch = tuple(t[None] for t in packed_row(samples, [0, 1], 24, 0))
    loss, tokens, _ = CausalLMLoss(model.config)(model, batch)
    assert int(tokens) == 2 * 5                      # tokens 5..9 of each sample, predicted from tokens 4..8
    assert torch.isfinite(loss)


# ------------------------------------------------------------------------------------------- the batch source
def test_batch_source_resumes_exactly():
    samples = random_samples([random.Random(i).randint(3, 20) for i in range(40)])
    source = PackedBatches(samples, 32, 3, DistInfo(), seed=5, pad_id=0, vocab_size=512)
    for _ in range(7):                               # past the first epoch's end
        source.next_batch()
    state = source.state_dict()
    expected = [source.next_batch() for _ in range(6)]
    resumed = PackedBatches(samples, 32, 3, DistInfo(), seed=5, pad_id=0, vocab_size=512)
    resumed.load_state_dict(state)
    for a, b in zip(expected, [resumed.next_batch() for _ in range(6)]):
        assert all(torch.equal(x, y) for x, y in zip(a, b))
    assert state["epoch"] >= 1


def test_ranks_read_disjoint_rows():
    samples = random_samples([10] * 12)
    one = PackedBatches(samples, 20, 2, DistInfo(), seed=1, pad_id=0, vocab_size=512).next_batch()[0]
    ranks = [PackedBatches(samples, 20, 1, DistInfo(rank=r, world_size=2), seed=1, pad_id=0,
                           vocab_size=512).next_batch()[0] for r in (0, 1)]
    assert torch.equal(torch.cat(ranks), one)


# ------------------------------------------------------------------------------------------- the data
def test_ranges_parsed_and_bad_ones_named():
    assert parse_ranges("add:1-6,countdown:3") == {"add": range(1, 7), "countdown": range(3, 4)}
    for bad in ("add:0-3", "nope:1-2", "add:x", ""):
        with pytest.raises(ValueError, match="--ranges"):
            parse_ranges(bad)


def test_unique_answer():
    assert unique_answer(problem(family="mul", difficulty=2))
    assert unique_answer(problem(family="countdown", difficulty=3))
    p = problem(family="add")
    assert not unique_answer(dataclasses.replace(p, answer=str(int(p.answer) + 1)))


# ------------------------------------------------------------------------------------------- the stage
def test_tiny_stage_end_to_end(tmp_path, capsys):
    from train import sft_cold_start
    start = tmp_path / "start"
    model = Qwen3ForCausalLM(dataclasses.replace(PRESETS["tiny"], vocab_size=16384, max_position_embeddings=1024))
    save_pretrained(model, str(start), TOKENIZER)
    out = tmp_path / "run"
    args = ["--preset", "tiny", "--init_from", str(start), "--out_dir", str(out), "--steps", "10",
            "--lr", "1e-2", "--min_lr", "1e-3", "--eval_every", "10"]
    sft_cold_start.main(args)
    printed = capsys.readouterr().out
    assert "think" in printed and "tokens" in printed
    log = [json.loads(line) for line in open(out / "log.jsonl")]
    assert log[-1]["loss"] < 0.7 * log[0]["loss"]
    final = qwen3mini.load_model(str(out / "final"))
    assert final.dtype == torch.bfloat16 and os.path.exists(out / "final" / "tokenizer.json")
    data = json.load(open(out / "data.json"))
    assert set(data) == {"add/1", "add/2", "sort/3", "sort/4", "linear/1"}
    # killed after its last checkpoint: a rerun with more steps resumes from it
    sft_cold_start.main(args[:-6] + ["--steps", "12", "--lr", "1e-2", "--min_lr", "1e-3", "--eval_every", "10"])
    assert "resumed from" in capsys.readouterr().out
    assert [json.loads(line)["step"] for line in open(out / "log.jsonl")][-1] == 12


def test_answered_directly(tok, monkeypatch):
    """The query filter runs the start model through the chat's generation path; a bare first line counts as
    the answer of a model that knows no \\boxed{}."""
    import types
    from qwen3mini import chat
    from qwen3mini.training.task_samples import answered_directly
    problems = [problem(i, "add", 2) for i in range(3)]
    model = Qwen3ForCausalLM(dataclasses.replace(PRESETS["tiny"], vocab_size=16384, max_position_embeddings=1024))
    assert len(answered_directly(model.eval(), tok, problems, batch_size=2)) == 3     # the real path runs
    texts = [problems[0].answer + "\nmore text", "The sum is \\boxed{" + problems[1].answer + "}", "12345"]

    def planted(model, tokenizer, prompts, max_new_tokens, sampling):
        assert all(tokenizer.decode(p).endswith("<think>\n\n</think>\n\n") for p in prompts)  # non-thinking
        return [types.SimpleNamespace(parts=chat.split_completion(texts.pop(0))) for _ in prompts]
    monkeypatch.setattr(chat, "generate_replies", planted)
    assert answered_directly(model, tok, problems, batch_size=2) == [True, True, False]


def test_draw_queries_distinct_held_out_and_ends_in_a_small_space():
    from qwen3mini.tasks import problem_hash
    from qwen3mini.tasks.splits import evaluation_set
    from qwen3mini.training.task_samples import draw_queries, evaluation_items
    exclude = evaluation_items()
    queries = draw_queries("add", 1, 1000, random.Random(0), exclude)    # far more than 1-digit sums exist
    hashes = [problem_hash(FAMILIES["add"], q) for q in queries]
    assert 10 < len(queries) < 1000 and len(set(hashes)) == len(hashes) and not set(hashes) & exclude
    assert evaluation_set("add", 1)[0] not in queries


def test_build_samples_balanced_with_the_query_filter(tok):
    from train import sft_cold_start as stage
    settings = stage.Settings(**{**stage.PRESETS["tiny"], "ranges": "add:2,sort:3", "drop_answered": True})
    judge = Qwen3ForCausalLM(dataclasses.replace(PRESETS["tiny"], vocab_size=16384, max_position_embeddings=1024))
    train, val, stats = stage.build_samples(settings, tok, judge.eval())
    assert set(stats.cells) == {"add/2", "sort/3"} and len(val) == 2 * settings.val_per_cell
    for cell in stats.cells.values():
        assert cell["drawn"] == settings.queries_per_cell + settings.val_per_cell and "answered_directly" in cell
    assert all(len(ids) <= settings.seq_len and any(mask) for ids, mask in train)


def test_build_samples_gives_a_small_cell_several_replies_per_query(tok):
    """1-digit sums (111 training queries) would weigh 30 times less than a cell of 3,500: each query gets up
    to --small_cell_replies replies of its own, the validation queries one each; and validation takes at most
    a quarter of a small cell's queries."""
    from train import sft_cold_start as stage
    counts = {}
    for replies in (1, 2, 5):
        settings = stage.Settings(**{**stage.PRESETS["tiny"], "ranges": "add:1", "queries_per_cell": 250,
                                     "small_cell_replies": replies})
        train, val, stats = stage.build_samples(settings, tok)
        assert len(val) == settings.val_per_cell
        counts[replies] = len(train)
        questions = [tok.decode(ids) for ids, _ in train]
        assert len(set(questions)) > len(train) // (2 * min(replies, 2))     # different flags, modes, slips
    drawn = stats.cells["add/1"]["drawn"] - 2
    assert counts == {1: drawn, 2: 2 * drawn, 5: 2 * drawn}        # 250 // 109 = 2 replies at most per query
    settings = stage.Settings(**{**stage.PRESETS["tiny"], "ranges": "mul:1", "val_per_cell": 8})
    train, val, stats = stage.build_samples(settings, tok)          # 11 one-digit products outside the test set
    assert len(val) == stats.cells["mul/1"]["drawn"] // 4 < 8 and len(train) > len(val)
    cell = stats.cells["mul/1"]                                     # some direct answers under the hard switch
    assert 0 < cell["template_switch"] < cell["no-think"]
    switched = [tok.decode(ids) for ids, mask in train if tok.decode([t for t, m in zip(ids, mask) if m])[0] != "<"]
    assert len(switched) == cell["template_switch"] and all("/no_think" not in text for text in switched)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_packed_rows_on_the_gpu(monkeypatch):
    """On a GPU packed rows in bf16 go to torch's FlashAttention varlen kernel; without it (as on an older torch)
    to the masked memory-efficient SDPA kernel (forced here: the call fails if that kernel cannot take it). Each
    agrees with every conversation alone, and the two give the same gradients up to bf16 rounding."""
    from torch.nn.attention import SDPBackend, sdpa_kernel
    import qwen3mini.model
    model, samples = tiny_model().cuda(), random_samples([40, 70, 30, 90])
    inputs, _, positions = (t[None].cuda() for t in packed_row(samples, [0, 1, 2, 3], 256, 0))
    calls, gradients = [], []
    varlen = qwen3mini.model.varlen_attn
    if varlen is None:
        pytest.skip("this torch has no torch.nn.attention.varlen")
    monkeypatch.setattr(qwen3mini.model, "varlen_attn", lambda *a, **k: calls.append(1) or varlen(*a, **k))
    for kernel in ("varlen", "masked"):
        if kernel == "masked":
            monkeypatch.setattr(qwen3mini.model, "varlen_attn", None)
        model.zero_grad()
        with torch.autocast("cuda", dtype=torch.bfloat16):
            with sdpa_kernel(SDPBackend.EFFICIENT_ATTENTION):   # (not the references: it takes no grouped heads)
                packed = model(inputs, position_ids=positions).float()
                packed.sum().backward()
            gradients.append(torch.cat([p.grad.flatten() for p in model.parameters()]))
            offset = 0
            for ids, _ in samples:
                alone = model(torch.tensor(ids, device="cuda")[None]).float()
                # bf16 activations (8 bits of mantissa) through 2 layers, two kernels: a few bf16 ulps of the logits
                torch.testing.assert_close(packed[:, offset:offset + len(ids)], alone, rtol=3e-2, atol=3e-2)
                offset += len(ids)
    assert calls, "the varlen kernel was not used"
    assert (gradients[0] - gradients[1]).norm() <= 2e-2 * gradients[1].norm()      # a few bf16 ulps, relative
