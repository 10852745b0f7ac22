"""Training plumbing (qwen3mini/training/): learning, DDP equivalence, exact resume, global-batch LBL."""
import os
import signal
import socket
import subprocess
import sys
import time

import pytest
import torch
import torch.multiprocessing as mp

from qwen3mini.training import distributed, moe_loss, optim, settings
from qwen3mini.training.logs import read_log
from qwen3mini.config import PRESETS
from qwen3mini.model import Qwen3ForCausalLM

sys.path.insert(0, os.path.dirname(__file__))
from helpers import ToyBatches, tiny_run  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))


# ---------------------------------------------------------------------------------------------- learning
@pytest.fixture(scope="module")
def dense_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("dense")
    trainer, records = tiny_run(str(out), steps=30, ckpt_every=10)
    return out, records


def test_tiny_model_loss_falls(dense_run):
    out, records = dense_run
    first, last = records[0]["loss"], records[-1]["loss"]
    assert first > 5.5                                   # ~ln(512) at initialisation
    assert last < first - 2.0, (first, last)
    log = read_log(str(out / "log.jsonl"))
    assert [r["step"] for r in log] == list(range(1, 31))
    assert "val_loss" in log[-1] and log[-1]["val_loss"] < first


def test_checkpoint_is_atomic_and_complete(dense_run):
    root = dense_run[0] / "ckpt"
    assert (root / "latest").read_text() == "step-0000030"
    assert sorted(os.listdir(root)) == ["latest", "step-0000030"]       # older ones removed, no .tmp left
    state = torch.load(root / "step-0000030" / "state.pt", weights_only=False)
    assert state["step"] == 30 and state["schedule"]["total_steps"] == 30
    assert set(state) >= {"model", "optimizer", "settings", "elapsed"}
    rank = torch.load(root / "step-0000030" / "rank-0.pt", weights_only=False)
    assert rank["train_data"] == {"draws": 30} and set(rank["rng"]) >= {"python", "numpy", "torch"}


# ---------------------------------------------------------------------------------------------- schedules
def test_schedules():
    cos = optim.Schedule("cosine", peak_lr=1.0, min_lr=0.1, warmup_steps=10, total_steps=110)
    assert cos.lr(0) == pytest.approx(0.1) and cos.lr(9) == pytest.approx(1.0)
    assert cos.lr(60) == pytest.approx(0.55) and cos.lr(110) == pytest.approx(0.1)
    wsd = optim.Schedule("wsd", peak_lr=1.0, min_lr=0.0, warmup_steps=10, total_steps=100, decay_frac=0.2)
    assert wsd.lr(50) == 1.0 and wsd.lr(79) == 1.0
    assert wsd.lr(90) == pytest.approx(0.5) and wsd.lr(100) == pytest.approx(0.0)
    with pytest.raises(ValueError, match="schedule 'linear'"):
        optim.Schedule("linear")


def test_weight_decay_groups():
    model = Qwen3ForCausalLM(PRESETS["tiny"])
    opt = optim.build_optimizer(model, 1e-3, 0.1)
    decay, no_decay = opt.param_groups
    assert decay["weight_decay"] == 0.1 and no_decay["weight_decay"] == 0.0
    assert all(p.dim() >= 2 for p in decay["params"]) and all(p.dim() == 1 for p in no_decay["params"])
    names = {id(p): n for n, p in model.named_parameters()}
    assert all(names[id(p)].endswith("norm.weight") for p in no_decay["params"])


def test_parse_settings():
    s = settings.parse_settings(settings.TrainSettings, ["--preset", "p", "--lr", "0.5", "--compile", "true"],
                                presets={"p": {"steps": 7, "lr": 0.1}})
    assert (s.steps, s.lr, s.compile) == (7, 0.5, True)
    with pytest.raises(SystemExit):
        settings.parse_settings(settings.TrainSettings, ["--no_such_setting", "1"])


# ---------------------------------------------------------------------------------------------- global-batch LBL
def direct_global_lbl(router_logits_per_layer, top_k):
    """The formula, written out on the whole global batch: per layer E · Σ_e f_e · P_e, mean over layers."""
    values = []
    for logits in router_logits_per_layer:                      # [N_global, E]
        n, e = logits.shape
        probs = torch.softmax(logits.float(), dim=-1)
        chosen = torch.zeros(n, e)
        chosen.scatter_(1, probs.topk(top_k, dim=-1).indices, 1.0)
        f = chosen.sum(0) / (n * top_k)
        p = probs.sum(0) / n
        values.append(e * (f * p).sum())
    return torch.stack(values).mean()


def test_lbl_over_micro_batches_equals_formula():
    torch.manual_seed(0)
    layers, micro, n, e, k = 3, 4, 10, 8, 2
    logits = torch.randn(layers, micro * n, e, requires_grad=True)
    expected = direct_global_lbl(list(logits), k)
    (grad_expected,) = torch.autograd.grad(expected, logits)
    chunks = [list(logits[:, m * n:(m + 1) * n]) for m in range(micro)]
    counts = sum(moe_loss.expert_counts(c, k) for c in chunks)
    total = sum(moe_loss.load_balancing_loss(c, counts) / micro for c in chunks)
    (grad,) = torch.autograd.grad(total, logits)
    torch.testing.assert_close(total, expected)
    torch.testing.assert_close(grad, grad_expected)
    # the per-micro-batch (local) loss is a different, larger number: the test can tell them apart
    local = sum(moe_loss.load_balancing_loss(c, moe_loss.expert_counts(c, k)) / micro for c in chunks)
    assert not torch.allclose(local, expected)


# ---------------------------------------------------------------------------------------------- DDP (gloo, 2 procs)
def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ddp_worker(rank, world_size, port, out_dir, kwargs, result_path):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank),
                      WORLD_SIZE=str(world_size), LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    trainer, records = tiny_run(out_dir, **kwargs)      # (a rank that raises is ended by mp.spawn, with its peer)
    model = distributed.gathered_model(trainer.model, trainer.info)     # FSDP shards gathered on rank 0
    if rank == 0:
        torch.save({"records": records, "params": model.state_dict()}, result_path)
    open(f"{result_path}.done{rank}", "w").close()     # this rank's work is over: only the teardown is left
    distributed.close_distributed()


def _run_ddp(tmp_path, world_size, **kwargs):
    """The ranks' result. A rank killed by SIGABRT after every rank finished its work is gloo's teardown race
    (``terminate called without an active exception`` while the group is destroyed; distributed.close_distributed
    says more), not a wrong update: the saved result stands. Any other failure fails the test."""
    result = str(tmp_path / "result.pt")
    try:
        mp.spawn(_ddp_worker, args=(world_size, _free_port(), str(tmp_path / "ddp"), kwargs, result),
                 nprocs=world_size, join=True)
    except mp.ProcessExitedException as error:
        finished = all(os.path.exists(f"{result}.done{rank}") for rank in range(world_size))
        if not (finished and error.signal_name == "SIGABRT"):
            raise
    return torch.load(result, weights_only=False)


@pytest.mark.parametrize("preset,parallel", [("tiny", "ddp"), ("tiny-moe", "ddp"), ("tiny", "fsdp")])
def test_ddp_two_processes_equal_one_process(tmp_path, preset, parallel):
    """2 ranks x 2 micro-batches of 2 rows == 1 process with one micro-batch of 8 rows (same global batch),
    with DDP and with FSDP2 (parameters, gradients and optimizer state sharded over the 2 ranks).

    For the MoE this also checks the global-batch LBL: its frequencies are summed over micro-batches and
    ranks, so the loss, and therefore every update, equals the single-process one; and the LBL logged for
    step 1 equals the formula written out on the step's whole batch."""
    common = dict(preset=preset, steps=4, seq_len=16, lbl_coef=0.1, log_every=2)
    ddp = _run_ddp(tmp_path, 2, micro_batch=2, grad_accum=2, parallel=parallel, **common)
    trainer, single = tiny_run(str(tmp_path / "single"), micro_batch=8, grad_accum=1, **common)
    for a, b in zip(ddp["records"], single):
        assert a["loss"] == pytest.approx(b["loss"], rel=1e-5, abs=1e-6)
        if preset == "tiny-moe":
            assert a["lbl"] == pytest.approx(b["lbl"], rel=1e-5)
            assert a["expert_load"] == b["expert_load"]
    for name, value in trainer.model.state_dict().items():
        torch.testing.assert_close(ddp["params"][name], value, rtol=1e-4, atol=1e-5, msg=name)
    if preset == "tiny-moe":
        distributed.seed_everything(0)
        model = Qwen3ForCausalLM(PRESETS["tiny-moe"])             # the same initial weights (same seed)
        rows = ToyBatches(512, 16, 8).next_batch()[0]             # step 1's 8 global rows
        _, router_logits = model(rows, return_router_logits=True)
        expected = direct_global_lbl(router_logits, PRESETS["tiny-moe"].num_experts_per_tok)
        assert ddp["records"][0]["lbl"] == pytest.approx(expected.item(), rel=1e-5)
        _check_expert_load_log(read_log(str(tmp_path / "single" / "log.jsonl")))


def test_ignored_targets_are_normalised_over_the_global_batch(tmp_path):
    """SFT and GRPO take the loss on some tokens only, so micro-batches and ranks hold different numbers of
    loss tokens. The trainer divides the step's summed losses by the token count of the whole global batch:
    2 ranks x 2 micro-batches must still equal 1 process with one micro-batch (a mean per micro-batch or per
    rank would weight the tokens of short micro-batches more, and differ)."""
    common = dict(preset="tiny", steps=3, seq_len=16, masked=True)
    ddp = _run_ddp(tmp_path, 2, micro_batch=2, grad_accum=2, **common)
    trainer, single = tiny_run(str(tmp_path / "single"), micro_batch=8, grad_accum=1, **common)
    for a, b in zip(ddp["records"], single):
        assert a["loss"] == pytest.approx(b["loss"], rel=1e-5, abs=1e-6)
    for name, value in trainer.model.state_dict().items():
        torch.testing.assert_close(ddp["params"][name], value, rtol=1e-4, atol=1e-5, msg=name)


def _check_expert_load_log(log):
    assert all(r["lbl"] >= 1.0 - 1e-4 for r in log)            # E·Σ f·P: 1 when balanced, more when not
    table = log[1]["expert_load"]                               # step 2 (log_every=2): the full table
    assert len(table) == 2 and len(table[0]) == 8               # layers x experts
    assert abs(sum(table[0]) - 8) < 1e-2                         # shares times E sum to E
    assert "expert_load" not in log[0] and "expert_load_max" in log[0]


# ---------------------------------------------------------------------------------------------- exact resume
def test_killed_run_resumes_to_identical_losses(tmp_path):
    steps = 30
    worker = [sys.executable, os.path.join(HERE, "helpers.py")]
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=os.pathsep.join(sys.path))
    subprocess.run(worker + [str(tmp_path / "straight"), str(steps)], check=True, env=env,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    straight = read_log(str(tmp_path / "straight" / "log.jsonl"))

    killed_dir = tmp_path / "killed"
    proc = subprocess.Popen(worker + [str(killed_dir), str(steps)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    latest = killed_dir / "ckpt" / "latest"
    deadline = time.time() + 120
    while not latest.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.002)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    saved_step = int(latest.read_text().split("-")[1])
    assert saved_step < steps, "the run finished before it could be killed"
    subprocess.run(worker + [str(killed_dir), str(steps)], check=True, env=env,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    resumed = read_log(str(killed_dir / "log.jsonl"))
    assert [r["step"] for r in resumed] == list(range(1, steps + 1))
    for a, b in zip(straight, resumed):
        assert a["loss"] == b["loss"] and a["lr"] == b["lr"], a["step"]
        assert a.get("val_loss") == b.get("val_loss") and a.get("lbl") == b.get("lbl")
