"""Strong-to-weak distillation (issue 20, paper §4.5): the reverse-KL loss against a direct computation, zero
when student and teacher agree, 2 processes against 1, and both distillation stages end to end on the CPU."""
import copy
import dataclasses
import json
import os

import pytest
import torch

from qwen3mini.config import PRESETS
from qwen3mini.model import Qwen3ForCausalLM
from qwen3mini.tasks import traces
from qwen3mini.training import distributed
from qwen3mini.training.distill import TeacherKLLoss
from qwen3mini.training.distributed import DistInfo
from qwen3mini.training.logs import read_log
from qwen3mini.training.losses import IGNORE
from qwen3mini.training.optim import Schedule
from qwen3mini.training.rollouts import packed_steps
from qwen3mini.training.settings import TrainSettings
from qwen3mini.training.stage import save_pretrained
from qwen3mini.training.trainer import Trainer

from test_grpo import assert_two_processes_equal_one, samples, tiny_model
from test_sft import TOKENIZER

SETTINGS = dict(out_dir="/nonexistent", lr=1e-2, weight_decay=0.0, grad_clip=1e9, device="cpu", dtype="float32",
                progress=False)


def sgd_trainer(model, info, loss_fn):
    """A trainer whose step is plain SGD (Adam's first step is sign(g): it would hide errors)."""
    return Trainer(model, torch.optim.SGD(model.parameters(), lr=1e-2), Schedule("constant", 1e-2, 1e-2, 0, 1),
                   TrainSettings(**SETTINGS), info, train_data=None, loss_fn=loss_fn)


def direct_loss(student, teacher, micro_batches, divergence="reverse"):
    """The KL written out position by position: Σ_v p_s(v) (log p_s(v) - log p_t(v)) (reverse; forward swaps
    p_s and p_t) at each position whose target is a sampled token, averaged over those positions of every
    micro-batch."""
    total, count = 0.0, 0
    for inputs, targets, positions, _ in micro_batches:
        s_logits = student(inputs, position_ids=positions).float()
        t_logits = teacher(inputs, position_ids=positions).float().detach()
        for b in range(inputs.shape[0]):
            for t in range(inputs.shape[1]):
                if targets[b, t] == IGNORE:
                    continue
                p = torch.exp(s_logits[b, t]) / torch.exp(s_logits[b, t]).sum()
                q = torch.exp(t_logits[b, t]) / torch.exp(t_logits[b, t]).sum()
                if divergence == "forward":
                    p, q = q, p
                total, count = total + (p * (torch.log(p) - torch.log(q))).sum(), count + 1
    return total / count


@pytest.mark.parametrize("divergence", ["reverse", "forward"])
def test_kl_equals_the_direct_computation(divergence):
    """Masking of prompts and padding, the KL over the whole vocabulary and the division by the token count of
    the whole step (two micro-batches of unequal counts): the trainer's step moves the weights as a step on the
    directly computed mean does."""
    info, teacher = DistInfo(), tiny_model(7)
    model, reference = tiny_model(), tiny_model()
    steps = packed_steps(samples(6), seq_len=16, micro_batch=2, minibatches=1, pad_id=0, info=info, seed=0)
    assert len(steps) == 1 and len(steps[0]) >= 2
    record = sgd_trainer(model, info, TeacherKLLoss(model.config, teacher, divergence=divergence)).train_step(steps[0])
    expected = direct_loss(reference, teacher, steps[0], divergence)
    assert record["loss"] == pytest.approx(expected.item(), rel=1e-5) and record["kl"] == record["loss"] > 0
    assert record["loss_tokens"] == sum(sum(s.mask[1:]) for s in samples(6))
    optimizer = torch.optim.SGD(reference.parameters(), lr=1e-2)
    expected.backward()
    optimizer.step()
    for (name, a), b in zip(model.state_dict().items(), reference.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6, msg=name)


@pytest.mark.parametrize("divergence", ["reverse", "forward"])
def test_zero_when_student_and_teacher_agree(divergence):
    info, model = DistInfo(), tiny_model()
    before = copy.deepcopy(model.state_dict())
    steps = packed_steps(samples(4), seq_len=16, micro_batch=2, minibatches=1, pad_id=0, info=info, seed=0)
    loss = TeacherKLLoss(model.config, copy.deepcopy(model), divergence=divergence)
    record = sgd_trainer(model, info, loss).train_step(steps[0])
    assert abs(record["kl"]) < 1e-6 and record["grad_norm"] < 1e-5 and record["teacher_nll"] > 0
    for name, value in model.state_dict().items():
        torch.testing.assert_close(value, before[name], rtol=0, atol=1e-7, msg=name)


# ------------------------------------------------------------------------------------------- 2 ranks = 1
def one_distill_update(info):
    """One distillation step (SGD) on this rank's share of a fixed global batch (rank r: pairs r, r + world...)."""
    model = tiny_model()
    wrapped = distributed.wrap_model(model, info)
    mine = [s for i, s in enumerate(samples(12, seed=5)) if (i // 2) % info.world_size == info.rank]
    trainer = sgd_trainer(wrapped, info, TeacherKLLoss(model.config, tiny_model(7)))
    for micro_batches in packed_steps(mine, 16, 2, 1, 0, info, seed=0):
        trainer.train_step(micro_batches)
    return {k: v.clone() for k, v in model.state_dict().items()}


def test_two_processes_equal_one_process(tmp_path):
    assert_two_processes_equal_one(tmp_path, one_distill_update)


# ------------------------------------------------------------------------------------------- the stages
def saved_tiny(path, seed, layers=2):
    """A tiny random chat model with the project's tokenizer, saved as a post-trained model."""
    distributed.seed_everything(seed)
    config = dataclasses.replace(PRESETS["tiny"], vocab_size=16384, max_position_embeddings=1024,
                                 num_hidden_layers=layers)
    save_pretrained(Qwen3ForCausalLM(config), str(path), TOKENIZER, post_trained=True)
    return str(path)


def test_on_policy_stage_end_to_end_and_resume(tmp_path, capsys):
    from train import distill_on_policy
    teacher, student = saved_tiny(tmp_path / "teacher", 1, layers=3), saved_tiny(tmp_path / "student", 2)
    args = ["--preset", "tiny", "--teacher", teacher, "--init_from", student, "--steps", "3"]
    distill_on_policy.main(args + ["--out_dir", str(tmp_path / "straight")])
    straight = read_log(str(tmp_path / "straight" / "log.jsonl"))
    assert [r["step"] for r in straight] == [1, 2, 3] and os.path.exists(tmp_path / "straight" / "curves.png")
    assert all(r["kl"] > 0 and r["teacher_nll"] > 0 and r["grad_norm"] > 0 and 0 <= r["reward"] <= 1
               for r in straight)
    assert "on-policy distillation: 3 steps" in capsys.readouterr().out
    split = ["--out_dir", str(tmp_path / "split")]
    distill_on_policy.main(args[:-1] + ["2"] + split)
    distill_on_policy.main(args + split)
    assert "resumed from" in capsys.readouterr().out
    timing = {"generate_seconds", "update_seconds", "time"}
    assert [{k: v for k, v in r.items() if k not in timing} for r in read_log(str(tmp_path / "split" / "log.jsonl"))] \
        == [{k: v for k, v in r.items() if k not in timing} for r in straight]


def test_off_policy_stage_end_to_end(tmp_path, monkeypatch, capsys):
    """A random teacher never passes a check, so the kept replies are planted: the solver's for every other
    task query, a fixed reply for every other general query."""
    from train import distill_off_policy
    teacher, student = saved_tiny(tmp_path / "teacher", 1), saved_tiny(tmp_path / "student", 2)

    def solver_replies(model, tokenizer, problems, tries, sampling, seed, max_new_tokens, batch_rows, mode):
        reply = {"think": lambda p: {"role": "assistant", "reasoning_content": traces.thinking(p),
                                     "content": traces.answer(p)},
                 "no-think": lambda p: {"role": "assistant", "content": traces.answer(p)}}[mode]
        return [None if i % 2 else reply(p) for i, p in enumerate(problems)]

    def general_replies(environment, generator, queries, tries, sampling, seed, batch_rows):
        return [None if i % 2 else ([1, 2, 3, 4], [False, False, True, True]) for i in range(len(queries))]
    monkeypatch.setattr(distill_off_policy, "rejection_sampled", solver_replies)
    monkeypatch.setattr(distill_off_policy, "rewarded_replies", general_replies)
    out = tmp_path / "off"
    distill_off_policy.main(["--preset", "tiny", "--teacher", teacher, "--init_from", student, "--out_dir", str(out),
                             "--val_share", "0"])
    data = json.load(open(out / "data.json"))
    assert data["add/1"]["think"] == 1 and data["add/1"]["think_rejected"] == 1
    assert data["sort/3"]["no-think"] == 1 and data["sort/3"]["no-think_rejected"] == 1
    assert sum(v for cell in data.values() for k, v in cell.items() if k in ("dialogue", "instruction", "tool")) == 2
    assert "off-policy distillation: 4 steps" in capsys.readouterr().out
    summary = json.load(open(out / "summary.json"))
    assert summary["teacher"] == teacher and os.path.exists(out / "final" / "tokenizer.json")

    # A second student reads the same samples back instead of sampling the teacher again; other sampling
    # settings sample again.
    calls = []
    monkeypatch.setattr(distill_off_policy, "rejection_sampled", lambda *a: calls.append(a) or solver_replies(*a))
    second = ["--preset", "tiny", "--teacher", teacher, "--init_from", student, "--val_share", "0",
              "--teacher_samples", str(out / "teacher_samples.pt")]
    distill_off_policy.main(second + ["--out_dir", str(tmp_path / "second")])
    assert not calls and json.load(open(tmp_path / "second" / "data.json")) == data
    distill_off_policy.main(second + ["--out_dir", str(tmp_path / "third"), "--per_cell", "1"])
    assert len(calls) == 2 and "sampling again" in capsys.readouterr().out

    # Sampling alone (run_distill.sh does it beside pre-training): the samples are written, no student is
    # trained, and a student then reads them instead of sampling.
    alone = tmp_path / "alone.pt"
    distill_off_policy.main(["--preset", "tiny", "--teacher", teacher, "--init_from", teacher, "--sample_only",
                             "true", "--teacher_samples", str(alone), "--out_dir", str(tmp_path / "sampling")])
    assert len(calls) == 4 and alone.exists() and not (tmp_path / "sampling" / "final").exists()
    distill_off_policy.main(second[:-1] + [str(alone), "--out_dir", str(tmp_path / "fourth")])
    assert len(calls) == 4 and json.load(open(tmp_path / "fourth" / "data.json")) == data


def test_bad_settings(tmp_path):
    from train import distill_off_policy, distill_on_policy
    student = saved_tiny(tmp_path / "student", 2)
    with pytest.raises(ValueError, match="--teacher"):
        distill_on_policy.main(["--preset", "tiny", "--init_from", student, "--teacher", "/nonexistent"])
    with pytest.raises(ValueError, match="--general_mix"):
        distill_off_policy.main(["--preset", "tiny", "--general_mix", "chess:1"])
    with pytest.raises(ValueError, match="--divergence sideways: expected one of reverse, forward"):
        distill_on_policy.main(["--preset", "tiny", "--divergence", "sideways"])
    teacher = saved_tiny(tmp_path / "teacher", 1)    # the same special tokens, two ordinary ids swapped
    for name in ("tokenizer.json", "vocab.json"):
        data = json.load(open(os.path.join(teacher, name)))
        vocab = data["model"]["vocab"] if name == "tokenizer.json" else data
        first, second = (token for token, i in vocab.items() if i in (1000, 1001))
        vocab[first], vocab[second] = vocab[second], vocab[first]
        json.dump(data, open(os.path.join(teacher, name), "w"))
    with pytest.raises(ValueError, match="--teacher .*: its vocabulary differs from the student's .first at id 1000"):
        distill_on_policy.main(["--preset", "tiny", "--init_from", student, "--teacher", teacher])
    with pytest.raises(ValueError, match="--init_from"):
        distill_off_policy.main(["--preset", "tiny", "--init_from", "/nonexistent"])
