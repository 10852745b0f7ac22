"""AdamW with weight decay on matrices only, and the learning-rate schedules of the stages."""
import math
from dataclasses import dataclass

import torch


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

    @classmethod
    def from_settings(cls, settings) -> "Schedule":
        return cls(settings.schedule, settings.lr, settings.min_lr, settings.warmup_steps, settings.steps,
                   settings.decay_frac)

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
