"""Reasoning RL (issue 18): the GRPO objective against a direct computation, rollout packing, the query pool,
2 processes against 1, and the stage end to end on the CPU with an exact resume."""
import dataclasses
import json
import math
import os
import random

import pytest
import torch
import torch.multiprocessing as mp

from qwen3mini.config import PRESETS
from qwen3mini.model import Qwen3ForCausalLM
from qwen3mini.training import distributed
from qwen3mini.training.distributed import DistInfo
from qwen3mini.training.grpo import GRPOLoss, group_advantages
from qwen3mini.training.logs import read_log
from qwen3mini.training.losses import IGNORE
from qwen3mini.training.optim import Schedule, build_optimizer
from qwen3mini.training.rollouts import QueryPool, RolloutSample, update_batches
from qwen3mini.training.settings import TrainSettings
from qwen3mini.training.stage import save_pretrained
from qwen3mini.training.trainer import Trainer

from test_training import _free_port

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TOKENIZER = os.path.join(ROOT, "checkpoints", "tokenizer-16k")
VOCAB = 64


def tiny_model(seed=0):
    distributed.seed_everything(seed)
    return Qwen3ForCausalLM(dataclasses.replace(PRESETS["tiny"], vocab_size=VOCAB))


def samples(count=6, seed=0):
    """Rollouts of unequal lengths: a prompt (no loss) then a completion, advantages of both signs."""
    rng = random.Random(seed)
    made = []
    for i in range(count):
        prompt, completion = rng.randint(2, 5), rng.randint(1, 7)
        ids = [rng.randrange(VOCAB) for _ in range(prompt + completion)]
        made.append(RolloutSample(ids, [False] * prompt + [True] * completion, rng.choice([-1.5, -0.5, 0.5, 1.0])))
    return made


# ------------------------------------------------------------------------------------------- advantages
def test_group_advantages():
    rewards = torch.tensor([[1.0, 0.0, 0.0, 1.0], [1.0, 1.0, 1.0, 1.0], [0.0, 0.0, 0.0, 1.0]])
    adv, equal = group_advantages(rewards)
    assert equal.tolist() == [False, True, False]
    torch.testing.assert_close(adv, torch.tensor([[.5, -.5, -.5, .5], [0., 0., 0., 0.], [-.25, -.25, -.25, .75]]))
    scaled, _ = group_advantages(rewards, scale_by_std=True)
    torch.testing.assert_close(scaled[0], torch.tensor([1.0, -1.0, -1.0, 1.0]))
    assert scaled[1].abs().sum() == 0 and scaled[2, 3] == pytest.approx(0.75 / math.sqrt(0.1875))


# ------------------------------------------------------------------------------------------- the loss
def direct_loss(model, batch, clip_low, clip_high, kl_coef, entropy_coef):
    """The GRPO loss written token by token: Σ over completion tokens of the clipped surrogate (+ KL, - entropy)."""
    total, count = 0.0, 0
    for rows in batch:
        inputs, targets, positions, advantages, old, ref = rows
        logits = model(inputs, position_ids=positions).float()
        for b in range(inputs.shape[0]):
            for t in range(inputs.shape[1]):
                if targets[b, t] == IGNORE:
                    continue
                logp_all = torch.log_softmax(logits[b, t], -1)
                logp = logp_all[targets[b, t]]
                ratio = torch.exp(logp - old[b, t])
                a = advantages[b, t]
                term = -torch.min(ratio * a, torch.clamp(ratio, 1 - clip_low, 1 + clip_high) * a)
                term = term + kl_coef * (torch.exp(ref[b, t] - logp) - (ref[b, t] - logp) - 1)
                term = term - entropy_coef * -(logp_all.exp() * logp_all).sum()
                total, count = total + term, count + 1
    return total / count


def test_loss_and_step_equal_the_direct_computation():
    """Advantages per token, clipping (π_old set off so that ratios leave the clip range both ways), masking
    of prompts and padding, and the division by the token count of the whole mini-batch: one trainer step
    moves the weights exactly as a step on the directly computed mean loss does."""
    info = DistInfo()
    model, reference = tiny_model(), tiny_model()
    steps = update_batches(samples(6), model, tiny_model(1), seq_len=16, micro_batch=2, minibatches=1, pad_id=0,
                           info=info, seed=0)
    assert len(steps) == 1 and len(steps[0]) >= 2                      # two micro-batches of unequal token counts
    for rows in steps[0]:                                              # an off-policy π_old: ratios far from 1
        signs = torch.arange(rows[4].numel()).view_as(rows[4]) % 2 * 2 - 1
        rows[4].add_(0.6 * signs * (rows[1] != IGNORE))
    settings = TrainSettings(out_dir="/nonexistent", steps=1, warmup_steps=0, lr=1e-2, weight_decay=0.0,
                             grad_clip=1e9, device="cpu", dtype="float32", progress=False)
    loss_fn = GRPOLoss(clip_low=0.2, clip_high=0.28, kl_coef=0.05, entropy_coef=0.01)
    sgd = torch.optim.SGD(model.parameters(), lr=1e-2)     # (Adam's first step is sign(g): it hides errors)
    trainer = Trainer(model, sgd, Schedule("constant", 1e-2, 1e-2, 0, 1), settings, info, train_data=None,
                      loss_fn=loss_fn)
    record = trainer.train_step(steps[0])

    expected = direct_loss(reference, steps[0], 0.2, 0.28, 0.05, 0.01)
    assert record["loss"] == pytest.approx(expected.item(), rel=1e-5, abs=1e-6)
    assert 0 < record["clipped"] < 1 and record["kl"] > 0
    optimizer = torch.optim.SGD(reference.parameters(), lr=1e-2)
    expected.backward()
    optimizer.step()
    for (name, a), b in zip(model.state_dict().items(), reference.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6, msg=name)


def test_update_batches_pack_mask_and_pad():
    info, batch = DistInfo(), samples(5, seed=3)
    steps = update_batches(batch, tiny_model(), None, seq_len=20, micro_batch=1, minibatches=3, pad_id=0,
                           info=info, seed=0)
    assert len(steps) == 3 and len({len(s) for s in steps}) == 1       # every optimizer step the same size
    rows = [mb for step in steps for mb in step]
    targets = torch.cat([mb[1] for mb in rows])
    assert (targets != IGNORE).sum() == sum(sum(s.mask[1:]) for s in batch)   # completion tokens, the first none
    for inputs, targets, positions, advantages, old, ref in rows:
        assert torch.equal(old, ref) and (old[targets == IGNORE] == 0).all() and (old[targets != IGNORE] < 0).all()
        assert set(advantages[targets != IGNORE].tolist()) <= {s.advantage for s in batch}


def test_query_pool_epochs_and_resume():
    pool = QueryPool(list(range(5)), seed=1)
    first = pool.take(3)
    state = pool.state_dict()
    rest = pool.take(4)
    assert sorted(first + rest[:2]) == list(range(5))                  # an epoch serves every item once
    again = QueryPool(list(range(5)), seed=1)
    again.load_state_dict(state)
    assert again.take(4) == rest


# ------------------------------------------------------------------------------------------- 2 ranks = 1
def rank_worker(rank, world_size, port, result_path, update):
    """One of ``world_size`` gloo processes: ``update(info)``'s parameters, saved by rank 0."""
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world_size),
                      LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    params = update(distributed.init_distributed("cpu"))
    if rank == 0:
        torch.save(params, result_path)
    distributed.close_distributed()


def one_rl_update(info):
    """One GRPO optimizer step (SGD) on this rank's share of a fixed global batch (rank r: groups r, r + world...).
    (Mini-batches after the first would differ: each rank splits its own rows.)"""
    model = tiny_model()
    wrapped = distributed.wrap_model(model, info)
    mine = [s for i, s in enumerate(samples(12, seed=5)) if (i // 2) % info.world_size == info.rank]
    settings = TrainSettings(out_dir="/nonexistent", lr=1e-2, weight_decay=0.0, grad_clip=1e9, device="cpu",
                             dtype="float32", progress=False)
    trainer = Trainer(wrapped, torch.optim.SGD(wrapped.parameters(), lr=1e-2), Schedule("constant", 1e-2, 1e-2, 0, 1),
                      settings, info, train_data=None, loss_fn=GRPOLoss())
    for micro_batches in update_batches(mine, wrapped, None, 16, 2, 1, 0, info, seed=0):
        trainer.train_step(micro_batches)
    return {k: v.clone() for k, v in model.state_dict().items()}


def assert_two_processes_equal_one(tmp_path, update):
    """``update`` run by 2 gloo processes on halves of its global batch gives one process's parameters."""
    result = str(tmp_path / "rank0.pt")
    mp.spawn(rank_worker, args=(2, _free_port(), result, update), nprocs=2, join=True)
    single = update(DistInfo())
    ranks = torch.load(result)
    for name, value in single.items():
        torch.testing.assert_close(ranks[name], value, rtol=1e-4, atol=1e-5, msg=name)


def test_two_processes_equal_one_process(tmp_path):
    assert_two_processes_equal_one(tmp_path, one_rl_update)


# ------------------------------------------------------------------------------------------- the stage
def test_tiny_stage_end_to_end_and_resume(tmp_path, capsys, monkeypatch):
    """The tiny preset on the CPU; a random model never solves a task, so the reward is planted (an even sum of
    the completion's tokens: correct) to give the groups unequal rewards and the policy updates to make. (Not the
    first token: after the cold start most completions begin with <think>, and whether every group was then equal
    depended on the run.) Groups of 4: all six groups equal has a chance of (1/8)^6."""
    from qwen3mini.evaluation import Scored
    from qwen3mini.training import rl
    from train import rl_reasoning, sft_cold_start

    def planted(problem, text, completion, ids):
        return Scored(sum(completion.tokens) % 2 == 0, 0, len(completion.tokens), completion.finish_reason == "stop",
                      False)
    monkeypatch.setattr(rl, "score_reply", planted)
    start, cold = tmp_path / "start", tmp_path / "cold"
    model = Qwen3ForCausalLM(dataclasses.replace(PRESETS["tiny"], vocab_size=16384, max_position_embeddings=1024))
    save_pretrained(model, str(start), TOKENIZER)
    sft_cold_start.main(["--preset", "tiny", "--init_from", str(start), "--out_dir", str(cold), "--steps", "2"])
    args = ["--preset", "tiny", "--init_from", str(cold / "final"), "--cold_start_dir", str(cold), "--group", "4",
            "--entropy_coef", "0.01", "--entropy_hold_step", "0.005", "--steps", "3", "--pass_low", "0",
            "--pass_high", "1"]
    rl_reasoning.main(args + ["--out_dir", str(tmp_path / "straight")])
    straight = read_log(str(tmp_path / "straight" / "log.jsonl"))
    assert [r["step"] for r in straight] == [1, 2, 3] and os.path.exists(tmp_path / "straight" / "curves.png")
    assert any(r["equal_groups"] < 1 and r["grad_norm"] > 0 and r["ratio"] > 0 for r in straight)
    assert straight[1]["entropy_coef"] == 0.01 and straight[2]["entropy_coef"] in (0.005, 0.015)  # the held weight
    pool = json.load(open(tmp_path / "straight" / "pool.json"))
    assert pool["kept"] == len(pool["questions"]) > 0
    # a run stopped after step 2 (its checkpoint), then continued, logs what the straight run logged
    split = ["--out_dir", str(tmp_path / "split")]
    rl_reasoning.main(args[:-6] + ["--steps", "2", "--pass_low", "0", "--pass_high", "1"] + split)
    rl_reasoning.main(args + split)
    assert "resumed from" in capsys.readouterr().out
    resumed = read_log(str(tmp_path / "split" / "log.jsonl"))
    timing = {"generate_seconds", "update_seconds", "time"}
    assert [{k: v for k, v in r.items() if k not in timing} for r in resumed] == \
        [{k: v for k, v in r.items() if k not in timing} for r in straight]


def test_entropy_hold_moves_the_bonus_toward_the_first_level():
    """The first step sets the level; each later one moves the weight by the step, up below the level, down
    above it, never under 0; the state a checkpoint keeps gives a fresh loss the same weight and level."""
    loss_fn = GRPOLoss(entropy_coef=0.002, entropy_hold_step=0.001)
    weights = []
    for entropy in (0.010, 0.008, 0.007, 0.011, 0.012, 0.013, 0.009):
        loss_fn.hold_entropy(entropy)
        weights.append(round(loss_fn.entropy_coef, 6))
    assert weights == [0.002, 0.003, 0.004, 0.003, 0.002, 0.001, 0.002] and loss_fn.entropy_level == 0.010
    for entropy in (0.02, 0.02, 0.02, 0.02):
        loss_fn.hold_entropy(entropy)
    assert loss_fn.entropy_coef == 0.0
    fresh = GRPOLoss(entropy_hold_step=0.001)
    fresh.load_state_dict(loss_fn.state_dict())
    assert (fresh.entropy_coef, fresh.entropy_level) == (0.0, 0.010)
    fixed = GRPOLoss(entropy_coef=0.01)
    fixed.hold_entropy(0.001)
    fixed.hold_entropy(0.0)
    assert fixed.entropy_coef == 0.01


def test_no_sample_anywhere_costs_one_token_per_step():
    steps = update_batches([], tiny_model(), None, seq_len=64, micro_batch=4, minibatches=2, pad_id=0,
                           info=DistInfo(), seed=0)
    assert [[tuple(mb[0].shape) for mb in step] for step in steps] == [[(1, 1)], [(1, 1)]]
    assert all((mb[1] == IGNORE).all() for step in steps for mb in step)
