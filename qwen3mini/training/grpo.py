"""GRPO, the objective of reasoning RL (paper §4.2): group-relative advantages and the clipped policy loss.

For each query the policy samples a group of G completions; each gets a reward (the verifier's 1 or 0). A
completion's advantage is its reward minus the group's mean (optionally divided by the group's standard
deviation), the same value for every one of its tokens. A group whose rewards are all equal carries no signal
(every advantage is 0) and is dropped. The loss of one completion token t, with ratio r = π_θ(t) / π_old(t):

    -min(r · A, clip(r, 1 - ε_low, 1 + ε_high) · A)   + β · KL_k3(π_ref ‖ π_θ)(t)   - α · H(π_θ)(t)

summed over every completion token of the batch and divided by the count of those tokens over all micro-batches
and ranks (token-level normalisation: the trainer's division; losses.py). ε_high > ε_low is "clip-higher": a
token whose probability the update raises may move further than one it lowers, which keeps the entropy from
collapsing. π_old is the policy that sampled the rollouts, recomputed by the training model before the first
update (the generation model runs in bf16, so its own log-probabilities differ by rounding); the rollout
batch is split into several mini-batches, one optimizer step each (off-policy reuse: from the second on,
r ≠ 1). KL_k3 = exp(ref - logp) - (ref - logp) - 1 is the unbiased, non-negative estimator of the KL to the
starting policy, logged always and added to the loss with weight β (default 0).

A micro-batch is packed like SFT's (sft.py): (inputs, targets, position_ids, advantages, old_logprobs,
ref_logprobs), LongTensors / float tensors [rows, seq_len], targets IGNORE outside the completions.
"""
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .distributed import unwrap
from .losses import IGNORE, LossFunction


def group_advantages(rewards: torch.Tensor, scale_by_std: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """(advantages [Q, G], equal [Q] bool) of rewards [Q, G]: reward minus the group mean, over the group's
    standard deviation when ``scale_by_std``; ``equal`` marks groups whose rewards are all the same."""
    rewards = rewards.float()
    advantages = rewards - rewards.mean(dim=1, keepdim=True)
    equal = (rewards == rewards[:, :1]).all(dim=1)
    if scale_by_std:
        std = rewards.std(dim=1, unbiased=False, keepdim=True)
        advantages = torch.where(equal[:, None], 0.0, advantages / std.clamp_min(1e-6))
    return advantages, equal


def token_logprobs(logits: torch.Tensor, targets: torch.Tensor, entropy_grad: bool = False, entropy: bool = True):
    """(log π(target), entropy of π or None) at every position, fp32 [B, T]; 0 where the target is IGNORE. The
    entropy keeps a graph only with ``entropy_grad`` (a bonus on it), sparing the [B, T, V] tensors it would
    hold; ``entropy=False`` skips it (π_old and π_ref need only the log-probabilities)."""
    logp = F.log_softmax(logits.float(), dim=-1)
    mask = targets != IGNORE
    picked = logp.gather(-1, targets.clamp_min(0)[..., None])[..., 0] * mask
    if not entropy:
        return picked, None
    with torch.set_grad_enabled(entropy_grad and torch.is_grad_enabled()):
        spread = -(logp.exp() * logp).sum(-1)
    return picked, spread * mask


@torch.no_grad()
def policy_logprobs(model, inputs, targets, position_ids) -> torch.Tensor:
    """log π(target) of a packed micro-batch under ``model``, without a graph (π_old and π_ref)."""
    return token_logprobs(unwrap(model)(inputs, position_ids=position_ids), targets, entropy=False)[0]


@dataclass
class GRPOLoss(LossFunction):
    """The clipped objective above over packed micro-batches. Metrics (summed over tokens, the trainer makes
    them means): ``clipped`` (share of tokens whose ratio the clip holds), ``kl``, ``entropy``, ``ratio``."""
    clip_low: float = 0.2
    clip_high: float = 0.28
    kl_coef: float = 0.0
    entropy_coef: float = 0.0
    entropy_hold_step: float = 0.0      # see hold_entropy
    entropy_level: float | None = None

    def __call__(self, model, micro_batch):
        inputs, targets, positions, advantages, old_logprobs, ref_logprobs = micro_batch
        mask = targets != IGNORE
        logp, entropy = token_logprobs(model(inputs, position_ids=positions), targets, self.entropy_coef > 0)
        ratio = torch.exp(torch.where(mask, logp - old_logprobs, 0.0))
        clipped_ratio = ratio.clamp(1 - self.clip_low, 1 + self.clip_high)
        per_token = -torch.minimum(ratio * advantages, clipped_ratio * advantages)
        log_ref_ratio = torch.where(mask, ref_logprobs - logp, 0.0)
        kl = torch.exp(log_ref_ratio) - log_ref_ratio - 1
        if self.kl_coef:
            per_token = per_token + self.kl_coef * kl
        if self.entropy_coef:
            per_token = per_token - self.entropy_coef * entropy
        held = ((ratio < 1 - self.clip_low) & (advantages < 0)) | ((ratio > 1 + self.clip_high) & (advantages > 0))
        metrics = {name: (value.detach().float() * mask).sum()
                   for name, value in (("clipped", held), ("kl", kl), ("entropy", entropy), ("ratio", ratio))}
        return (per_token * mask).sum(), mask.sum(), metrics

    def hold_entropy(self, entropy: float):
        """After an RL step whose mean token entropy was ``entropy``: with ``entropy_hold_step``, move the bonus's
        weight by that step to hold the entropy at the first step's level (up while below it, down while above,
        never below 0): a weight fixed in advance either lets the entropy fall or makes it climb, and no one
        value suits every start model."""
        if not self.entropy_hold_step:
            return
        if self.entropy_level is None:
            self.entropy_level = entropy
            return
        change = self.entropy_hold_step if entropy < self.entropy_level else -self.entropy_hold_step
        self.entropy_coef = max(0.0, self.entropy_coef + change)

    def state_dict(self) -> dict:
        return {"entropy_coef": self.entropy_coef, "entropy_level": self.entropy_level}

    def load_state_dict(self, state: dict):
        self.entropy_coef, self.entropy_level = state["entropy_coef"], state["entropy_level"]
