"""What the trainer minimises: a loss function over one micro-batch, summed over its tokens.

The protocol (``LossFunction``) lets every stage reuse the same trainer:

    loss_fn.begin_step(model, micro_batches)     # once per optimizer step, before the first micro-batch
    loss_sum, tokens, metrics = loss_fn(model, micro_batch)
    loss_fn.end_step() -> dict                   # extra log fields of the step

``loss_sum`` is the loss *summed* over the micro-batch's tokens (a scalar tensor with a graph), ``tokens``
the number of tokens it sums over, ``metrics`` name -> value also summed over tokens (detached). The
trainer adds up ``tokens`` over the step's micro-batches and all ranks, and divides the gradient and every
metric by that global count. So the loss is a mean over every token of the global batch, however the
tokens fall into micro-batches and ranks (token-level normalisation).

* pre-training (paper §3): next-token cross-entropy on every position (``CausalLMLoss``), plus the MoE's
  load balancing;
* SFT on packed conversations (paper §4.1, §4.3): the same loss with the targets of every token that is not
  the assistant's set to ``IGNORE``;
* GRPO (paper §4.2): ``loss_sum`` = Σ over completion tokens of the clipped ratio times the token's advantage
  (per-token weights in the micro-batch), ``tokens`` = the completion tokens;
* on-policy distillation (paper §4.5): ``loss_sum`` = Σ over the student's sampled tokens of the reverse
  KL(student || teacher) over the whole vocabulary, the teacher's logits computed in the loss function under
  ``torch.no_grad()`` (distill.py).

The model is in training mode for the training passes and in eval mode for the validation passes.
"""
from abc import ABC, abstractmethod

import torch
import torch.nn.functional as F

from .moe_loss import expert_counts, expert_load_stats, global_expert_counts, load_balancing_loss
from .distributed import all_reduce, unwrap

IGNORE = -100           # a target that no loss is taken on (F.cross_entropy's ignore_index)


class LossFunction(ABC):
    """The protocol above, with the hooks a plain loss does not need left empty."""

    def begin_step(self, model, micro_batches):
        pass

    @abstractmethod
    def __call__(self, model, micro_batch) -> tuple:
        """(loss summed over the micro-batch's tokens, token count, metrics summed over tokens)."""

    def end_step(self) -> dict:
        return {}

    def state_dict(self) -> dict:
        """What a resumed run needs of the loss beyond the model (a weight it adapts as it goes)."""
        return {}

    def load_state_dict(self, state: dict):
        pass


def cross_entropy_sum(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Next-token cross-entropy in fp32, summed over the positions whose target is not ``IGNORE``."""
    return F.cross_entropy(logits.float().flatten(0, 1), targets.flatten(), reduction="sum",
                           ignore_index=IGNORE)


class CausalLMLoss(LossFunction):
    """Cross-entropy of (inputs, targets) micro-batches (LongTensors [B, T]), or (inputs, targets, position_ids)
    for rows that pack several conversations (the model keeps attention inside each: sft.py); for an MoE also
    the global-batch
    load-balancing loss (moe_loss.py) weighted by ``lbl_coef``, logged as ``lbl``, in training passes.

    Metrics: ``loss`` (the cross-entropy alone) and, for an MoE, ``lbl``. The LBL of a micro-batch is
    weighted by its token count, which makes the trainer's global mean the LBL of the global batch (exact
    when every routed token is a loss token, as in pre-training).
    """

    def __init__(self, config, lbl_coef: float = 0.0, compile: bool = False):
        self.config, self.lbl_coef = config, lbl_coef
        # The loss upcasts [tokens, vocab] logits to fp32: compiled, the upcast fuses into the log-softmax
        # instead of writing and re-reading a full fp32 copy.
        self.cross_entropy = torch.compile(cross_entropy_sum) if compile else cross_entropy_sum
        self.counts = None                  # the step's global expert counts

    def begin_step(self, model, micro_batches):
        self.counts = None
        if self.config.is_moe and len(micro_batches) > 1:   # one micro-batch: its own forward gives them
            self.counts = global_expert_counts(model, micro_batches, self.config.num_experts_per_tok)

    def __call__(self, model, micro_batch):
        inputs, targets, *rest = micro_batch
        positions = rest[0] if rest else None
        tokens = (targets != IGNORE).sum()
        if not (self.config.is_moe and unwrap(model).training):
            loss, metrics = self.token_loss(model(inputs, position_ids=positions), micro_batch)
            return loss, tokens, metrics
        logits, router_logits = model(inputs, return_router_logits=True, position_ids=positions)
        if self.counts is None:
            self.counts = all_reduce(expert_counts(router_logits, self.config.num_experts_per_tok))
        loss, metrics = self.token_loss(logits, micro_batch)
        lbl = load_balancing_loss(router_logits, self.counts) * tokens
        return loss + self.lbl_coef * lbl, tokens, {**metrics, "lbl": lbl.detach()}

    def token_loss(self, logits, micro_batch) -> tuple:
        """(the loss of the model's ``logits`` summed over the micro-batch's loss tokens, metrics): here the
        cross-entropy of the targets; distillation (distill.py) puts its KL to the teacher in its place."""
        ce = self.cross_entropy(logits, micro_batch[1])
        return ce, {"loss": ce.detach()}

    def end_step(self) -> dict:
        return expert_load_stats(self.counts) if self.counts is not None else {}
