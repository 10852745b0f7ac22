"""Mixture of experts: the global-batch load-balancing loss of Qwen3 (paper §2; Qiu et al. 2025).

Expert frequencies are summed over every micro-batch of an optimizer step and every data-parallel rank
before the loss is formed, so the loss (and its gradient) is the one of the whole global batch.
"""
import torch

from .. import ops
from .distributed import all_reduce, unwrap


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

    Because f_e is a constant, the loss is linear in P_e, and the global batch's P_e is the token-weighted
    mean of the micro-batches' P_e. So each micro-batch contributes ``load_balancing_loss(...)`` times its
    token count, and the trainer's division of the step's sums by the global token count (losses.py) turns
    them into exactly the global-batch loss and gradient.
    """
    frequencies = global_counts / global_counts.sum(dim=-1, keepdim=True)
    losses = []
    for layer, logits in enumerate(router_logits):
        mean_prob = torch.softmax(logits.float(), dim=-1).mean(dim=0)
        losses.append(logits.shape[-1] * (frequencies[layer] * mean_prob).sum())
    return torch.stack(losses).mean()


@torch.no_grad()
def global_expert_counts(model, micro_batches, top_k: int) -> torch.Tensor:
    """Expert counts of a whole step (every micro-batch, every rank) before any gradient is taken.

    The loss of micro-batch 1 needs the frequencies of all micro-batches, which only exist after their
    forward passes: a forward pass without gradients over the step's inputs gets them. It runs the reference
    ops, as the training passes do (``qwen3mini.ops`` picks them whenever gradients are needed), so it routes
    every token to the same experts. ``micro_batches``: (inputs, targets) or (inputs, targets, position_ids).
    """
    model = unwrap(model)
    counts = 0
    for inputs, _, *positions in micro_batches:
        with ops.backend("reference"):
            _, router_logits = model(inputs, return_router_logits=True,
                                     position_ids=positions[0] if positions else None)
        counts = counts + expert_counts(router_logits, top_k)
    return all_reduce(counts)


def expert_load_stats(counts: torch.Tensor) -> dict:
    """Per-expert load of one step: each expert's share of the routing assignments times E (1 = balanced)."""
    load = counts / counts.sum(dim=-1, keepdim=True) * counts.shape[-1]
    return {"expert_load_max": load.max().item(), "expert_load_min": load.min().item(),
            "expert_load": [[round(x, 3) for x in row] for row in load.tolist()]}
