"""The training loop: optimizer steps of a model over a batch source, with evaluation and checkpoints.

A batch source is any object with ``next_batch()`` (one micro-batch, a tuple of tensors the loss function
understands) and ``state_dict()`` / ``load_state_dict()`` giving its position. The loss function follows
losses.py's protocol; numerics: fp32 master weights, bf16 autocast on a GPU, gradient accumulation over
``grad_accum`` micro-batches, gradient clipping.
"""
import dataclasses
import os
import time
from contextlib import nullcontext

import torch

from .checkpoints import load_checkpoint, save_checkpoint
from .distributed import DistInfo, all_reduce, unwrap
from .logs import RunLog
from .losses import CausalLMLoss
from .optim import Schedule
from .settings import TrainSettings


class Trainer:
    """``model`` is the wrapped module from ``wrap_model``; ``train_data`` / ``val_data`` are batch sources (RL,
    which brings its own micro-batches to ``train_step``, passes its query pool: the checkpoints keep its place);
    ``loss_fn`` defaults to pre-training's ``CausalLMLoss``. A resumed run reproduces the losses of an
    uninterrupted one: model, optimizer, step, the data positions and every rank's RNG states are saved."""

    def __init__(self, model, optimizer, schedule: Schedule, settings: TrainSettings, info: DistInfo,
                 train_data, val_data=None, name: str = "train", loss_fn=None):
        self.model, self.optimizer, self.schedule = model, optimizer, schedule
        self.settings, self.info, self.name = settings, info, name
        self.train_data, self.val_data = train_data, val_data
        self.loss_fn = loss_fn or CausalLMLoss(unwrap(model).config, settings.lbl_coef, settings.compile)
        self.step, self.elapsed = 0, 0.0                # elapsed: training seconds, carried over resumes
        self.tokens_per_step = settings.micro_batch * settings.seq_len * settings.grad_accum * info.world_size
        self.log = RunLog(settings.out_dir, info.is_main, settings.log_every)
        self.ckpt_root = os.path.join(settings.out_dir, "ckpt")
        use_bf16 = settings.dtype == "bfloat16" and info.device.type == "cuda"
        self.autocast = torch.autocast("cuda", dtype=torch.bfloat16) if use_bf16 else nullcontext()

    # ---------------------------------------------------------------- the loop
    def fit(self) -> list:
        """Train until ``settings.steps``, resuming first from a checkpoint if there is one. Returns the log
        records of the steps this call made."""
        s = self.settings
        resumed = s.resume and self.load_checkpoint()
        self.log.start(self.step if resumed else None)
        if self.step >= s.steps:
            self._say(f"{self.ckpt_root}: already at step {self.step} of --steps {s.steps}, nothing to train "
                      f"(raise --steps to continue; another --out_dir or --resume false starts over)")
            return []
        bar = _progress_bar(s.steps, self.step, self.name) if s.progress and self.info.is_main else None
        records = []
        clock = _Clock(self.info.device)
        while self.step < s.steps:
            record = self.train_step()
            self.elapsed += clock.lap()
            record.update(tokens=self.step * self.tokens_per_step, time=round(self.elapsed, 3))
            if self.step % s.eval_every == 0 or self.step == s.steps:
                record["val_loss"] = self.evaluate()
                clock.lap()                             # evaluation is not training time
            self.log.write(record)
            records.append(record)
            if bar is not None:
                bar.update(1)
                bar.set_postfix(loss=f"{record['loss']:.3f}", lr=f"{record['lr']:.2e}")
            if self.step % s.ckpt_every == 0 or self.step == s.steps:
                self.save_checkpoint()
                clock.lap()
        if bar is not None:
            bar.close()
        return records

    # ---------------------------------------------------------------- one optimizer step
    def train_step(self, micro_batches=None) -> dict:
        """One optimizer step over ``micro_batches`` (default: ``grad_accum`` of them from the batch source;
        RL passes the micro-batches of one mini-batch of its rollouts)."""
        if micro_batches is None:
            micro_batches = [self.train_data.next_batch() for _ in range(self.settings.grad_accum)]
        micro_batches = [self._to_device(micro_batch) for micro_batch in micro_batches]
        lr = self.schedule.lr(self.step)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        with self.autocast:
            self.loss_fn.begin_step(self.model, micro_batches)
        tokens, sums = 0, {}
        for i, micro_batch in enumerate(micro_batches):
            with self._gradient_sync(last=i == len(micro_batches) - 1):
                with self.autocast:
                    loss, count, metrics = self.loss_fn(self.model, micro_batch)
                loss.backward()
            tokens += count
            metrics = {"loss": loss.detach(), **metrics}      # a loss function may log another "loss"
            sums = {k: sums.get(k, 0) + v for k, v in metrics.items()}
        # Every loss is a sum over tokens: one division by the global token count makes it the global mean.
        totals = all_reduce(torch.stack([torch.as_tensor(tokens, dtype=torch.float32, device=self.info.device),
                                         *(v.float() for v in sums.values())]))
        global_tokens = totals[0].item()
        self._scale_gradients(self.info.world_size / max(global_tokens, 1.0))   # DDP/FSDP averaged over ranks
        grad_norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.settings.grad_clip)
        if global_tokens > 0:               # no loss token (RL: every group's rewards equal): nothing to learn,
            self.optimizer.step()           # and Adam's momentum alone must not move the weights
        self.optimizer.zero_grad(set_to_none=True)
        self.step += 1
        means = dict(zip(sums, (totals[1:] / max(global_tokens, 1.0)).tolist()))
        record = {"step": self.step, "loss": means.pop("loss"), "lr": lr, "grad_norm": float(grad_norm),
                  "loss_tokens": global_tokens}
        record.update(self.loss_fn.end_step())
        return {**record, **means}

    @torch.no_grad()
    def evaluate(self) -> float:
        """Mean validation loss per token over ``eval_batches`` batches (the same ones every time), all ranks."""
        if self.val_data is None:
            return float("nan")
        model = unwrap(self.model)
        model.eval()
        start = self.val_data.state_dict()
        totals = torch.zeros(2, device=self.info.device)
        for _ in range(self.settings.eval_batches):
            with self.autocast:
                loss, count, _ = self.loss_fn(model, self._to_device(self.val_data.next_batch()))
            totals += torch.stack([loss.float(), torch.as_tensor(count, dtype=torch.float32, device=totals.device)])
        self.val_data.load_state_dict(start)
        model.train()
        all_reduce(totals)
        return (totals[0] / totals[1]).item()

    def _to_device(self, micro_batch):
        return tuple(t.to(self.info.device, non_blocking=True) for t in micro_batch)

    def _gradient_sync(self, last: bool):
        """DDP all-reduces gradients in the backward pass of the last micro-batch only."""
        return self.model.no_sync() if hasattr(self.model, "no_sync") and not last else nullcontext()

    def _scale_gradients(self, factor: float):
        for p in self.model.parameters():
            if p.grad is not None:
                p.grad.mul_(factor)

    def _say(self, text: str):
        if self.info.is_main:
            print(text, flush=True)

    # ---------------------------------------------------------------- checkpoints (checkpoints.py)
    def save_checkpoint(self):
        state = {"elapsed": self.elapsed, "schedule": dataclasses.asdict(self.schedule),
                 "settings": dataclasses.asdict(self.settings), "loss_fn": self.loss_fn.state_dict()}
        rank_state = {"train_data": self.train_data.state_dict(),
                      "val_data": self.val_data.state_dict() if self.val_data is not None else None}
        save_checkpoint(self.ckpt_root, self.step, self.model, self.optimizer, self.info, state, rank_state)

    def load_checkpoint(self) -> bool:
        """Restore the newest checkpoint in ``out_dir/ckpt``; False if there is none."""
        restored = load_checkpoint(self.ckpt_root, self.model, self.optimizer, self.info)
        if restored is None:
            return False
        folder, state, rank_state = restored
        self.step, self.elapsed = state["step"], state["elapsed"]
        self.loss_fn.load_state_dict(state.get("loss_fn", {}))
        self.train_data.load_state_dict(rank_state["train_data"])
        if self.val_data is not None and rank_state["val_data"] is not None:
            self.val_data.load_state_dict(rank_state["val_data"])
        self._say(f"resumed from {folder} at step {self.step}")
        return True


class _Clock:
    """Seconds between calls of ``lap``, with the GPU's queued work finished first."""

    def __init__(self, device):
        self.cuda = device.type == "cuda"
        self.last = self._now()

    def _now(self):
        if self.cuda:
            torch.cuda.synchronize()
        return time.perf_counter()

    def lap(self) -> float:
        now = self._now()
        seconds, self.last = now - self.last, now
        return seconds


def _progress_bar(total, initial, name):
    from tqdm import tqdm
    return tqdm(total=total, initial=initial, desc=name, dynamic_ncols=True)
