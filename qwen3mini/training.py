"""Training plumbing shared by every stage script (paper §3: S1 general, S2 reasoning, S3 long context) and,
later, by post-training.

One stage script = settings + data + model + ``Trainer(...).fit()``. Everything a stage does not decide lives
here, once:

* settings: a dataclass per stage, overridable from the command line (``parse_settings``);
* processes: one per GPU under ``torchrun``, DDP (gloo on CPU, nccl on GPU) or FSDP2 (``fully_shard``) when a
  model does not fit one device (``init_distributed``, ``wrap_model``);
* numerics: fp32 master weights, bf16 autocast, AdamW with weight decay on matrices only, gradient clipping
  and accumulation (``build_optimizer``, ``Trainer.train_step``);
* learning-rate schedules: warmup + cosine and warmup-stable-decay (``Schedule``);
* mixture of experts: the global-batch load-balancing loss of Qwen3 (paper §2, Qiu et al. 2025), with expert
  frequencies summed over every micro-batch and every data-parallel rank before the loss is formed
  (``expert_counts``, ``load_balancing_loss``);
* bookkeeping: JSONL logs, a tqdm bar, loss plots (PNG), and atomic checkpoints (model, optimizer, schedule,
  data position, RNG states) from which a killed run resumes to the same losses (``Trainer.save_checkpoint``).

A batch source is any object with ``next_batch() -> (inputs, targets)`` (LongTensors [B, T]) and
``state_dict()`` / ``load_state_dict()`` giving its position; ``ShardBatches`` makes one of
``train/data/shards.py``'s ``TokenShards``. ``run_stage`` is the whole of a stage after its model and data
exist: wrap, train, save the model in the HF layout (``save_pretrained``), plot, summarise.
"""
import argparse
import dataclasses
import json
import math
import os
import random
import shutil
import time
from contextlib import nullcontext
from dataclasses import dataclass

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F

from . import ops


# ====================================================================== settings
@dataclass
class TrainSettings:
    """What every stage decides the same way. Stage scripts subclass this and add their own fields."""
    out_dir: str = "runs/stage"
    seed: int = 1337
    # batch: global batch = micro_batch * grad_accum * world_size sequences of seq_len tokens
    seq_len: int = 512
    micro_batch: int = 16
    grad_accum: int = 1
    steps: int = 1000
    # optimizer (AdamW) and schedule
    lr: float = 3e-3
    min_lr: float = 3e-4
    schedule: str = "cosine"            # "cosine" | "wsd" | "constant"
    warmup_steps: int = 100
    decay_frac: float = 0.2             # WSD: share of the steps spent in the final decay
    weight_decay: float = 0.1
    beta1: float = 0.9
    beta2: float = 0.95
    grad_clip: float = 1.0
    # MoE: coefficient of the global-batch load-balancing loss (Qwen3 MoE configs use 0.001)
    lbl_coef: float = 0.001
    # numerics and speed
    device: str = "auto"                # "auto" | "cpu" | "cuda"
    dtype: str = "bfloat16"             # autocast dtype on GPU ("float32" disables autocast)
    compile: bool = False
    parallel: str = "ddp"               # "ddp" | "fsdp" (used only with more than one process)
    # bookkeeping
    log_every: int = 10
    eval_every: int = 250
    eval_batches: int = 10
    ckpt_every: int = 500
    resume: bool = True                 # continue from out_dir/ckpt if one is there
    progress: bool = True               # tqdm bar on rank 0


def parse_settings(cls, argv=None, presets=None, description=None):
    """Build ``cls`` from its defaults, then ``--preset NAME`` (a dict of overrides), then ``--field value``.

    Every dataclass field becomes an option of its own type; booleans take true/false/1/0.
    """
    presets = presets or {}
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--preset", choices=sorted(presets), default=None,
                        help="named group of settings applied before the other options")
    for f in dataclasses.fields(cls):
        kind = type(f.default) if f.default is not dataclasses.MISSING else str
        parser.add_argument(f"--{f.name}", dest=f.name, default=None,
                            type=_parse_bool if kind is bool else kind)
    args = parser.parse_args(argv)
    values = dict(presets.get(args.preset, {}))
    unknown = set(values) - {f.name for f in dataclasses.fields(cls)}
    if unknown:
        raise ValueError(f"preset {args.preset!r} sets unknown settings {sorted(unknown)}")
    values.update({k: v for k, v in vars(args).items() if k != "preset" and v is not None})
    return cls(**values)


def _parse_bool(text):
    if text.lower() in ("1", "true", "yes", "on"):
        return True
    if text.lower() in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true/false, got {text!r}")


# ====================================================================== model shapes trained from scratch
# The vocabulary is the small tokenizer's (train/data: 16,384 ids); head_dim 64 instead of Qwen3's 128 keeps
# a few heads in a narrow model. "base" is the shipped dense model (~19M parameters, 38 MB in bf16);
# "base-moe" has the same active parameters per token (top-2 of 8 experts of half the dense MLP width);
# "100m" is the ~100M-parameter shape the throughput benchmark uses.
MODEL_SHAPES = {
    "tiny": dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                 num_key_value_heads=2, head_dim=16),
    "tiny-moe": dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                     num_key_value_heads=2, head_dim=16, num_experts=8, num_experts_per_tok=2,
                     moe_intermediate_size=64),
    "base": dict(hidden_size=384, intermediate_size=1024, num_hidden_layers=8, num_attention_heads=6,
                 num_key_value_heads=2, head_dim=64),
    "base-moe": dict(hidden_size=384, intermediate_size=1024, num_hidden_layers=8, num_attention_heads=6,
                     num_key_value_heads=2, head_dim=64, num_experts=8, num_experts_per_tok=2,
                     moe_intermediate_size=512),
    "100m": dict(hidden_size=768, intermediate_size=2560, num_hidden_layers=12, num_attention_heads=12,
                 num_key_value_heads=4, head_dim=64),
}


def model_config(shape: str, vocab_size: int, **fields):
    """A ``Qwen3Config`` of a named shape for a vocabulary of ``vocab_size`` ids (fp32 master weights,
    tied embeddings, RoPE base 10,000 as in S1/S2 before ABF; paper §3)."""
    from .config import Qwen3Config
    if shape not in MODEL_SHAPES:
        raise ValueError(f"model shape {shape!r}: expected one of {sorted(MODEL_SHAPES)}")
    values = dict(vocab_size=vocab_size, tie_word_embeddings=True, torch_dtype="float32", rope_theta=10_000.0,
                  max_position_embeddings=4096, norm_topk_prob=True, bos_token_id=None, eos_token_id=None)
    values.update(MODEL_SHAPES[shape])
    values.update(fields)
    return Qwen3Config(**values)


# ====================================================================== processes
@dataclass
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def init_distributed(device: str = "auto") -> DistInfo:
    """Join the process group that ``torchrun`` (or a test's spawn) describes in the environment.

    One process per GPU with nccl; on CPU, gloo. Without ``WORLD_SIZE`` this is a single process.
    """
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank, local_rank = int(os.environ.get("RANK", "0")), int(os.environ.get("LOCAL_RANK", "0"))
    if device == "cuda":
        torch.cuda.set_device(local_rank)
        torch_device = torch.device("cuda", local_rank)
    else:
        torch_device = torch.device("cpu")
    if world_size > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device == "cuda" else "gloo")
    return DistInfo(rank, world_size, local_rank, torch_device)


def close_distributed():
    """Leave the process group together. Every rank first waits at a barrier: a gloo rank that tears the group
    down while its peer's last collective is still completing can abort (SIGABRT, "terminate called without
    an active exception", seen once in CI after an FSDP run's final state-dict gather)."""
    if dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def all_reduce(tensor: torch.Tensor, op=None) -> torch.Tensor:
    """Sum (or ``op``) over data-parallel ranks in place; a no-op in a single process."""
    if dist.is_initialized() and dist.get_world_size() > 1:
        dist.all_reduce(tensor, op=op or dist.ReduceOp.SUM)
    return tensor


def seed_everything(seed: int):
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def wrap_model(model, info: DistInfo, parallel: str = "ddp", compile: bool = False):
    """Place ``model`` on its device and make it data-parallel; returns the module to call in training.

    ``parallel="ddp"`` keeps a full replica per process and all-reduces gradients. ``"fsdp"`` (FSDP2,
    ``fully_shard``) shards parameters, gradients and optimizer state over the processes, one decoder layer
    at a time, for models that do not fit one device. ``compile`` runs ``torch.compile`` on the model in
    place (state-dict keys stay unchanged).
    """
    model.to(info.device)
    if compile:
        model.compile()
    if not info.distributed:
        return model
    if parallel == "ddp":
        from torch.nn.parallel import DistributedDataParallel
        moe = getattr(getattr(model, "config", None), "is_moe", False)
        # Experts that no token of a micro-batch picked get no gradient there: DDP must be told.
        return DistributedDataParallel(model, device_ids=[info.local_rank] if info.device.type == "cuda" else None,
                                       find_unused_parameters=moe)
    if parallel == "fsdp":
        from torch.distributed.fsdp import fully_shard
        for layer in model.model.layers:
            fully_shard(layer)
        fully_shard(model)
        return model
    raise ValueError(f"parallel={parallel!r}: expected 'ddp' or 'fsdp'")


def unwrap(model):
    """The plain ``Qwen3ForCausalLM`` inside a DDP wrapper (FSDP2 and compile keep the module itself)."""
    return model.module if hasattr(model, "module") else model


# ====================================================================== optimizer and schedules
def build_optimizer(model, lr: float, weight_decay: float, betas=(0.9, 0.95), eps: float = 1e-8):
    """AdamW with decoupled weight decay on the matrices only (projections, embeddings, experts, router).

    Norm weights (RMSNorm, QK-Norm) are scales around 1: decaying them towards 0 only fights the loss.
    """
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if p.requires_grad:
            (decay if p.dim() >= 2 else no_decay).append(p)
    groups = [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    fused = all(p.device.type == "cuda" for p in decay + no_decay)
    return torch.optim.AdamW(groups, lr=lr, betas=betas, eps=eps, fused=fused or None)


@dataclass
class Schedule:
    """Learning rate as a function of the optimizer step (0-based).

    * ``cosine``: linear warmup to ``peak_lr``, then half a cosine down to ``min_lr`` at ``total_steps``.
    * ``wsd`` (warmup-stable-decay; MiniCPM, Hägele et al. 2024): warmup, hold ``peak_lr``, then decay
      linearly to ``min_lr`` over the last ``decay_frac`` of the steps. The stable phase can be extended or
      branched off without knowing the final length, which suits stages that continue each other.
    * ``constant``: warmup, then ``peak_lr``.
    """
    kind: str = "cosine"
    peak_lr: float = 3e-3
    min_lr: float = 3e-4
    warmup_steps: int = 100
    total_steps: int = 1000
    decay_frac: float = 0.2

    def __post_init__(self):
        if self.kind not in ("cosine", "wsd", "constant"):
            raise ValueError(f"schedule {self.kind!r}: expected 'cosine', 'wsd' or 'constant'")

    def lr(self, step: int) -> float:
        if step < self.warmup_steps:
            return self.peak_lr * (step + 1) / self.warmup_steps
        if self.kind == "constant":
            return self.peak_lr
        if self.kind == "cosine":
            progress = min(1.0, (step - self.warmup_steps) / max(1, self.total_steps - self.warmup_steps))
            return self.min_lr + (self.peak_lr - self.min_lr) * 0.5 * (1 + math.cos(math.pi * progress))
        decay_start = self.total_steps - int(round(self.decay_frac * self.total_steps))
        if step < decay_start:
            return self.peak_lr
        progress = min(1.0, (step - decay_start) / max(1, self.total_steps - decay_start))
        return self.peak_lr + (self.min_lr - self.peak_lr) * progress


# ====================================================================== MoE: global-batch load balancing
def expert_counts(router_logits, top_k: int) -> torch.Tensor:
    """How many tokens each layer routed to each expert: [layers, E] (float32, no gradient).

    ``router_logits``: one [N, E] tensor per MoE layer, as ``model(x, return_router_logits=True)`` returns.
    Top-k of the logits picks the same experts as top-k of the softmax the router uses.
    """
    rows = []
    for logits in router_logits:
        ids = logits.detach().topk(top_k, dim=-1).indices.flatten()
        rows.append(torch.bincount(ids, minlength=logits.shape[-1]).float())
    return torch.stack(rows)


def load_balancing_loss(router_logits, global_counts: torch.Tensor) -> torch.Tensor:
    """Switch-style load-balancing loss with the frequencies of the *global* batch (paper §2; Qiu et al. 2025).

    For each MoE layer:   LBL = E · Σ_e f_e · P_e
      f_e = share of the global batch's routing assignments (tokens × top-k, every micro-batch, every rank)
            that went to expert e, from ``global_counts`` (a constant: top-k has no gradient);
      P_e = mean router probability of expert e over *this* micro-batch's tokens (softmax over all E in fp32).
    The result is averaged over layers; a perfectly balanced router scores 1. (HF's
    ``load_balancing_loss_func`` normalises f_e by tokens instead of assignments, i.e. it is k times this.)

    Because f_e is a constant, the loss is linear in P_e, and the global batch's P_e is the mean of the
    micro-batches' P_e. So each micro-batch contributes ``load_balancing_loss(...) / grad_accum`` and DDP's
    gradient average over ranks turns the sum into exactly the global-batch loss and gradient.
    """
    frequencies = global_counts / global_counts.sum(dim=-1, keepdim=True)
    losses = []
    for layer, logits in enumerate(router_logits):
        mean_prob = torch.softmax(logits.float(), dim=-1).mean(dim=0)
        losses.append(logits.shape[-1] * (frequencies[layer] * mean_prob).sum())
    return torch.stack(losses).mean()


# ====================================================================== the training loop
class Trainer:
    """Runs optimizer steps of a causal-LM over a batch source, with logging, evaluation and checkpoints.

    ``model`` is the wrapped module from ``wrap_model``; ``train_data`` / ``val_data`` are batch sources.
    State that a resumed run must reproduce: model, optimizer, step, the data sources' positions and the RNG
    states of every rank (``save_checkpoint``).
    """

    def __init__(self, model, optimizer, schedule: Schedule, settings: TrainSettings, info: DistInfo,
                 train_data, val_data=None, name: str = "train"):
        self.model, self.optimizer, self.schedule = model, optimizer, schedule
        self.settings, self.info, self.name = settings, info, name
        self.train_data, self.val_data = train_data, val_data
        self.config = unwrap(model).config
        self.step = 0
        self.tokens_per_step = settings.micro_batch * settings.seq_len * settings.grad_accum * info.world_size
        self.log_path = os.path.join(settings.out_dir, "log.jsonl")
        self.ckpt_root = os.path.join(settings.out_dir, "ckpt")
        use_bf16 = settings.dtype == "bfloat16" and info.device.type == "cuda"
        self.autocast = (torch.autocast("cuda", dtype=torch.bfloat16) if use_bf16 else nullcontext())
        self.elapsed = 0.0                     # training seconds, carried over resumes
        # The loss upcasts [tokens, vocab] logits to fp32: compiled, the upcast fuses into the log-softmax
        # instead of writing and re-reading a full fp32 copy.
        self.lm_loss = torch.compile(lm_loss) if settings.compile else lm_loss

    # ---------------------------------------------------------------- one optimizer step
    def _forward(self, inputs):
        if self.config.is_moe:
            return self.model(inputs, return_router_logits=True)
        return self.model(inputs), None

    @torch.no_grad()
    def _count_experts_ahead(self, micro_batches) -> torch.Tensor:
        """Global-batch expert counts before any gradient is taken, when the step has several micro-batches.

        The loss of micro-batch 1 needs f_e of all micro-batches, which only exist after their forward
        passes. A forward pass without gradients over the step's micro-batches gets them, at ~1/3 of a
        step's cost. It runs the reference ops, as the training passes do (``qwen3mini.ops`` picks them
        whenever gradients are needed), so it routes every token to the same experts.
        """
        model = unwrap(self.model)
        counts = 0
        for inputs, _ in micro_batches:
            with self.autocast, ops.backend("reference"):
                _, router_logits = model(inputs, return_router_logits=True)
            counts = counts + expert_counts(router_logits, self.config.num_experts_per_tok)
        return counts

    def train_step(self) -> dict:
        s = self.settings
        micro_batches = [tuple(t.to(self.info.device, non_blocking=True) for t in self.train_data.next_batch())
                         for _ in range(s.grad_accum)]
        lr = self.schedule.lr(self.step)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        counts = None
        if self.config.is_moe and s.grad_accum > 1:
            counts = all_reduce(self._count_experts_ahead(micro_batches))
        lm_total = torch.zeros((), device=self.info.device)
        lbl_total = torch.zeros((), device=self.info.device)
        for i, (inputs, targets) in enumerate(micro_batches):
            last = i == len(micro_batches) - 1
            no_sync = self.model.no_sync if (hasattr(self.model, "no_sync") and not last) else nullcontext
            with no_sync():
                with self.autocast:
                    logits, router_logits = self._forward(inputs)
                lm = self.lm_loss(logits, targets)
                loss = lm / s.grad_accum
                if router_logits is not None:
                    if counts is None:                     # one micro-batch: its forward gives the counts
                        counts = all_reduce(expert_counts(router_logits, self.config.num_experts_per_tok))
                    lbl = load_balancing_loss(router_logits, counts) / s.grad_accum
                    loss = loss + s.lbl_coef * lbl
                    lbl_total += lbl.detach()
                loss.backward()
            lm_total += lm.detach() / s.grad_accum
        grad_norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), s.grad_clip)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.step += 1
        stats = torch.stack([lm_total, lbl_total])
        all_reduce(stats)
        stats /= self.info.world_size
        record = {"step": self.step, "loss": stats[0].item(), "lr": lr, "grad_norm": float(grad_norm)}
        if counts is not None:
            record.update(expert_load_stats(counts))
            record["lbl"] = stats[1].item()
        return record

    # ---------------------------------------------------------------- evaluation
    @torch.no_grad()
    def evaluate(self) -> float:
        """Mean validation loss over ``eval_batches`` batches (the same batches every time), all ranks."""
        if self.val_data is None:
            return float("nan")
        model = unwrap(self.model)
        model.eval()
        start = self.val_data.state_dict()
        total = torch.zeros((), device=self.info.device)
        for _ in range(self.settings.eval_batches):
            inputs, targets = (t.to(self.info.device) for t in self.val_data.next_batch())
            with self.autocast:
                logits = model(inputs)
            total += self.lm_loss(logits, targets)
        self.val_data.load_state_dict(start)
        model.train()
        all_reduce(total)
        return total.item() / (self.settings.eval_batches * self.info.world_size)

    # ---------------------------------------------------------------- the loop
    def fit(self) -> list:
        """Train until ``settings.steps``; resume first if a checkpoint exists. Returns the log records."""
        s = self.settings
        if s.resume and self.load_checkpoint():
            self._truncate_log(self.step)
        elif self.info.is_main:
            os.makedirs(s.out_dir, exist_ok=True)
            open(self.log_path, "w").close()
        bar = None
        if s.progress and self.info.is_main:
            from tqdm import tqdm
            bar = tqdm(total=s.steps, initial=self.step, desc=self.name, dynamic_ncols=True)
        records = []
        if self.info.device.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        while self.step < s.steps:
            record = self.train_step()
            now = time.perf_counter()
            self.elapsed += now - t0
            t0 = now
            record.update(tokens=self.step * self.tokens_per_step, time=round(self.elapsed, 3))
            if self.step % s.eval_every == 0 or self.step == s.steps:
                record["val_loss"] = self.evaluate()
                t0 = time.perf_counter()                  # evaluation is not training time
            self._log(record)
            records.append(record)
            if bar is not None:
                bar.update(1)
                bar.set_postfix(loss=f"{record['loss']:.3f}", lr=f"{record['lr']:.2e}")
            if self.step % s.ckpt_every == 0 or self.step == s.steps:
                self.save_checkpoint()
                t0 = time.perf_counter()
        if bar is not None:
            bar.close()
        return records

    def _log(self, record: dict):
        if not self.info.is_main:
            return
        line = {k: (round(v, 6) if isinstance(v, float) else v) for k, v in record.items()}
        if self.step % self.settings.log_every and "val_loss" not in line:
            line.pop("expert_load", None)                   # the full per-expert table only now and then
        with open(self.log_path, "a") as f:
            f.write(json.dumps(line) + "\n")

    def _truncate_log(self, step: int):
        """After a resume, drop log lines of steps the killed run made after its last checkpoint."""
        if not self.info.is_main or not os.path.exists(self.log_path):
            return
        with open(self.log_path) as f:
            kept = [line for line in f if line.strip() and json.loads(line)["step"] <= step]
        with open(self.log_path, "w") as f:
            f.writelines(kept)

    # ---------------------------------------------------------------- checkpoints
    def save_checkpoint(self):
        """Write ``out_dir/ckpt/step-N`` atomically, then point ``out_dir/ckpt/latest`` at it.

        Files: ``state.pt`` (model, optimizer, step, schedule, settings; full tensors, gathered from FSDP
        shards) and ``rank-R.pt`` per process (RNG states and that rank's data positions). Everything goes
        into a temporary folder first; the rename and the ``latest`` pointer make it visible at once, so a
        kill at any moment leaves the previous checkpoint intact.
        """
        from torch.distributed.checkpoint.state_dict import StateDictOptions, get_state_dict
        final = os.path.join(self.ckpt_root, f"step-{self.step:07d}")
        tmp = final + ".tmp"
        if self.info.is_main:
            shutil.rmtree(tmp, ignore_errors=True)
            os.makedirs(tmp)
        _barrier()
        model_state, optim_state = get_state_dict(
            self.model, self.optimizer, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
        rank_state = {"rng": _rng_state(), "train_data": self.train_data.state_dict(),
                      "val_data": self.val_data.state_dict() if self.val_data is not None else None}
        torch.save(rank_state, os.path.join(tmp, f"rank-{self.info.rank}.pt"))
        if self.info.is_main:
            torch.save({"model": model_state, "optimizer": optim_state, "step": self.step,
                        "elapsed": self.elapsed, "schedule": dataclasses.asdict(self.schedule),
                        "settings": dataclasses.asdict(self.settings), "world_size": self.info.world_size},
                       os.path.join(tmp, "state.pt"))
        _barrier()
        if self.info.is_main:
            shutil.rmtree(final, ignore_errors=True)
            os.replace(tmp, final)
            _write_atomic(os.path.join(self.ckpt_root, "latest"), os.path.basename(final))
            for old in os.listdir(self.ckpt_root):          # keep only the newest checkpoint
                if old.startswith("step-") and old != os.path.basename(final):
                    shutil.rmtree(os.path.join(self.ckpt_root, old), ignore_errors=True)
        _barrier()

    def load_checkpoint(self) -> bool:
        """Restore the newest checkpoint in ``out_dir/ckpt``; False if there is none."""
        from torch.distributed.checkpoint.state_dict import StateDictOptions, set_state_dict
        pointer = os.path.join(self.ckpt_root, "latest")
        if not os.path.exists(pointer):
            return False
        with open(pointer) as f:
            folder = os.path.join(self.ckpt_root, f.read().strip())
        state = torch.load(os.path.join(folder, "state.pt"), map_location="cpu", weights_only=False)
        if state["world_size"] != self.info.world_size:
            raise ValueError(f"{folder}: saved with {state['world_size']} processes, resuming with "
                             f"{self.info.world_size}; the data positions would not line up")
        set_state_dict(self.model, self.optimizer, model_state_dict=state["model"],
                       optim_state_dict=state["optimizer"], options=StateDictOptions(full_state_dict=True))
        self.step, self.elapsed = state["step"], state["elapsed"]
        rank_state = torch.load(os.path.join(folder, f"rank-{self.info.rank}.pt"), weights_only=False)
        self.train_data.load_state_dict(rank_state["train_data"])
        if self.val_data is not None and rank_state["val_data"] is not None:
            self.val_data.load_state_dict(rank_state["val_data"])
        _set_rng_state(rank_state["rng"])
        if self.info.is_main:
            print(f"resumed from {folder} at step {self.step}")
        return True


def lm_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean next-token cross-entropy in fp32. logits [B, T, V], targets [B, T]."""
    return F.cross_entropy(logits.float().flatten(0, 1), targets.flatten())


def expert_load_stats(counts: torch.Tensor) -> dict:
    """Per-expert load of one step: each expert's share of the routing assignments times E (1 = balanced)."""
    load = counts / counts.sum(dim=-1, keepdim=True) * counts.shape[-1]
    return {"expert_load_max": load.max().item(), "expert_load_min": load.min().item(),
            "expert_load": [[round(x, 3) for x in row] for row in load.tolist()]}


def _barrier():
    if dist.is_initialized() and dist.get_world_size() > 1:
        dist.barrier()


def _write_atomic(path: str, text: str):
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _rng_state() -> dict:
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict):
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


# ====================================================================== reports
def read_log(path: str) -> list:
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def plot_losses(runs: dict, png: str, key: str = "loss", x: str = "tokens", title: str = None):
    """One PNG with a curve per run. ``runs``: label -> JSONL log path (or list of such paths, concatenated)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for label, paths in runs.items():
        offset, xs, ys = 0, [], []
        for path in ([paths] if isinstance(paths, str) else paths):
            records = [r for r in read_log(path) if key in r]
            xs += [offset + r[x] for r in records]
            ys += [r[key] for r in records]
            all_records = read_log(path)
            offset += all_records[-1][x] if all_records else 0
        ax.plot(xs, ys, label=label, marker="o" if key == "val_loss" else None, markersize=3)
    ax.set_xlabel(x)
    ax.set_ylabel(key)
    ax.set_title(title or key)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(png, dpi=120)
    plt.close(fig)


def model_flops_per_token(config, seq_len: int) -> float:
    """Training FLOPs per token: 6·N (N = active matrix parameters, lm_head included, the embedding lookup
    not) + 12·L·nH·D·T for attention scores and values (PaLM appendix B; causal masking not discounted)."""
    n = config.num_parameters()
    matrix_params = n["active"] - config.vocab_size * config.hidden_size * (1 if config.tie_word_embeddings else 2)
    matrix_params += config.vocab_size * config.hidden_size                     # lm_head is a matmul
    attention = 12 * config.num_hidden_layers * config.num_attention_heads * config.head_dim * seq_len
    return 6 * matrix_params + attention


# ====================================================================== data, saving, one stage
class ShardBatches:
    """Batch source over a ``TokenShards`` (train/data/shards.py): its ``batch`` (fixed windows) or, with
    ``long=True``, its ``long_batch`` (S3's length mix). The position (samples drawn by all ranks) is the
    whole state; rank r reads slice r of each global micro-batch, so DDP sees what one process would."""

    def __init__(self, shards, micro_batch: int, seq_len: int, info: DistInfo, long: bool = False):
        self.shards, self.micro_batch, self.seq_len, self.info = shards, micro_batch, seq_len, info
        self.sample = shards.long_batch if long else shards.batch
        self.position = 0

    def next_batch(self):
        batch = self.sample(self.position, self.micro_batch, self.seq_len, rank=self.info.rank,
                            world_size=self.info.world_size)
        self.position += self.micro_batch * self.info.world_size
        return batch

    def state_dict(self):
        return {"position": self.position}

    def load_state_dict(self, state):
        self.position = state["position"]


def special_token_ids(tokenizer_dir: str) -> dict:
    """Ids of ``<|endoftext|>`` and ``<|im_end|>`` in a tokenizer (they differ from Qwen3's in a small vocab),
    read from the added tokens of its ``tokenizer.json``."""
    path = os.path.join(tokenizer_dir, "tokenizer.json")
    with open(path) as f:
        added = {t["content"]: t["id"] for t in json.load(f).get("added_tokens", [])}
    missing = {"<|endoftext|>", "<|im_end|>"} - set(added)
    if missing:
        raise ValueError(f"{path}: no added token {sorted(missing)}")
    return {name: added[name] for name in ("<|endoftext|>", "<|im_end|>")}


def save_pretrained(model, directory: str, tokenizer_dir: str = None, dtype=None, max_shard_size=None):
    """Save ``model`` in the HF layout: config.json, safetensors, and with ``tokenizer_dir`` its tokenizer
    files plus a ``generation_config.json`` (docs/qwen3.md §2.4: stop on ``<|im_end|>`` or ``<|endoftext|>``;
    Qwen3's non-thinking sampling settings, a base model has no thinking mode yet)."""
    from .checkpoint import save_model
    config = model.config
    if tokenizer_dir:
        ids = special_token_ids(tokenizer_dir)
        eot, im_end = ids["<|endoftext|>"], ids["<|im_end|>"]
        model.config = dataclasses.replace(config, bos_token_id=eot, eos_token_id=eot)
    save_model(model, directory, max_shard_size=max_shard_size, dtype=dtype)
    model.config = config
    if not tokenizer_dir:
        return
    for name in sorted(os.listdir(tokenizer_dir)):
        if name.endswith((".json", ".txt", ".model", ".jinja")) and name != "config.json":
            shutil.copy(os.path.join(tokenizer_dir, name), os.path.join(directory, name))
    generation = {"bos_token_id": eot, "eos_token_id": [im_end, eot], "pad_token_id": eot, "do_sample": True,
                  "temperature": 0.7, "top_p": 0.8, "top_k": 20}
    with open(os.path.join(directory, "generation_config.json"), "w") as f:
        json.dump(generation, f, indent=2)
        f.write("\n")


def gathered_model(model, info: DistInfo):
    """On rank 0, a CPU fp32 copy of the whole trained model (FSDP shards gathered); None elsewhere."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict
    from .model import Qwen3ForCausalLM
    state = get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
    if not info.is_main:
        return None
    copy = Qwen3ForCausalLM(unwrap(model).config)
    copy.load_state_dict({k: v.float() for k, v in state.items()})
    return copy


def run_stage(model, settings: TrainSettings, info: DistInfo, train_data, val_data, name: str,
              tokenizer_dir: str = None) -> dict:
    """Train ``model`` for one stage, then save ``out_dir/final`` (HF layout, fp32: the next stage's start),
    ``out_dir/loss.png`` and ``out_dir/summary.json``. Returns the summary."""
    config = model.config
    wrapped = wrap_model(model, info, settings.parallel, settings.compile)
    optimizer = build_optimizer(wrapped, settings.lr, settings.weight_decay, (settings.beta1, settings.beta2))
    schedule = Schedule(settings.schedule, settings.lr, settings.min_lr, settings.warmup_steps, settings.steps,
                        settings.decay_frac)
    trainer = Trainer(wrapped, optimizer, schedule, settings, info, train_data, val_data, name=name)
    records = trainer.fit()
    final = gathered_model(wrapped, info)
    summary = {}
    if info.is_main:
        save_pretrained(final, os.path.join(settings.out_dir, "final"), tokenizer_dir)
        log = read_log(trainer.log_path)
        plot_losses({f"{name} train": trainer.log_path}, os.path.join(settings.out_dir, "loss.png"),
                    title=f"{name}: training loss")
        evals = [r for r in log if "val_loss" in r]
        params = config.num_parameters()
        tokens = log[-1]["tokens"] if log else 0
        summary = {"stage": name, "steps": trainer.step, "tokens": tokens, "train_seconds": trainer.elapsed,
                   "tokens_per_second": tokens / max(trainer.elapsed, 1e-9) if records else None,
                   "final_loss": log[-1]["loss"] if log else None,
                   "final_val_loss": evals[-1]["val_loss"] if evals else None,
                   "parameters": params, "seq_len": settings.seq_len, "world_size": info.world_size,
                   "settings": dataclasses.asdict(settings), "config": config.to_hf_dict()}
        with open(os.path.join(settings.out_dir, "summary.json"), "w") as f:
            json.dump(summary, f, indent=2)
        print(f"{name}: {trainer.step} steps, {tokens / 1e6:.1f}M tokens, {trainer.elapsed:.0f} s, "
              f"loss {summary['final_loss']}, val {summary['final_val_loss']}")
    _barrier()
    return summary
