"""Sampling: decoding settings and the sampler that turns next-token logits into tokens on the device.

Sampling follows the order of Hugging Face's logits processors: presence penalty, temperature, top-k, top-p,
min-p (settings: docs/qwen3.md §2.4). ``temperature == 0`` is greedy (argmax, first index on ties). The PyTorch
code below is the reference; on the CUDA backend, plain sampling at a temperature (no filter, no penalty: what
RL rollouts use) runs as one kernel instead (``ops.cuda.GumbelSampler``), a draw from the same distribution.
"""
from dataclasses import dataclass

import torch

from . import ops


@dataclass
class SamplingParams:
    """Decoding settings (Qwen3's recommendations: thinking T=0.6, top_p=0.95, top_k=20; non-thinking T=0.7,
    top_p=0.8, top_k=20; presence_penalty 0..2 against repetition; docs/qwen3.md §2.4).

    temperature: 0 means greedy. top_k: 0 means off. presence_penalty: subtracted once from the logit of every
    token already generated in this call (vLLM's definition; prompt tokens are not penalised). seed: makes
    sampling reproducible (a private ``torch.Generator``, or the CUDA kernel's own Philox stream: the same seed
    gives the same tokens on one path, not across the two); None draws from torch's global generator."""
    temperature: float = 1.0
    top_k: int = 0
    top_p: float = 1.0
    min_p: float = 0.0
    presence_penalty: float = 0.0
    seed: int | None = None

    def __post_init__(self):                # (written so that NaN fails every check)
        if not self.temperature >= 0:
            raise ValueError(f"temperature must be >= 0, got {self.temperature}")
        if self.top_k < 0:
            raise ValueError(f"top_k must be >= 0 (0 = off), got {self.top_k}")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")
        if not 0 <= self.min_p <= 1:
            raise ValueError(f"min_p must be in [0, 1], got {self.min_p}")
        if not abs(self.presence_penalty) < float("inf"):
            raise ValueError(f"presence_penalty must be a finite number, got {self.presence_penalty}")

    @property
    def greedy(self) -> bool:
        """Every token is the argmax of the raw logits (no temperature, no penalty to apply first)."""
        return self.temperature == 0 and not self.presence_penalty


class Sampler:
    """Turns next-token logits [B, V] into tokens [B] on the device (no host synchronisation)."""

    def __init__(self, params: SamplingParams, batch_size: int, vocab_size: int, device):
        self.params = params
        self.generator = None
        if params.seed is not None and params.temperature > 0:
            self.generator = torch.Generator(device=device).manual_seed(params.seed)
        self.seen = None
        if params.presence_penalty:
            self.seen = torch.zeros(batch_size, vocab_size, dtype=torch.bool, device=device)
        self.fused = None       # the one-kernel sampler, where it applies (used while the CUDA backend runs)
        unfiltered = not (params.top_k or params.top_p < 1 or params.min_p or params.presence_penalty)
        if params.temperature > 0 and unfiltered and torch.device(device).type == "cuda":
            from .ops import cuda as cuda_ops
            if cuda_ops.gumbel_sampler_available(device):
                self.fused = cuda_ops.GumbelSampler(params.temperature, params.seed, device)

    def __call__(self, logits: torch.Tensor) -> torch.Tensor:
        tokens = self.pick(logits)
        self.observe(tokens)
        return tokens

    def pick(self, logits: torch.Tensor) -> torch.Tensor:
        """The next token of every row, from its logits [B, V]."""
        p = self.params
        if self.fused is not None and ops.backend_name(logits) == "cuda":
            return self.fused(logits)
        logits = logits.float()
        if self.seen is not None:
            logits = logits - p.presence_penalty * self.seen
        if p.temperature == 0:
            return logits.argmax(dim=-1)
        return self._sample(filter_logits(logits / p.temperature, p.top_k, p.top_p, p.min_p))

    def observe(self, tokens: torch.Tensor):
        """Note the tokens that were output (picked, or forced in their place) for the presence penalty."""
        if self.seen is not None:
            self.seen[torch.arange(len(tokens), device=tokens.device), tokens] = True

    def _sample(self, logits):
        # Exponential race (Gumbel-max in another guise): argmax p_i / q_i with q_i ~ Exp(1) draws i with
        # probability p_i, with no host sync (unlike torch.multinomial on some devices).
        probs = torch.softmax(logits, dim=-1)
        race = torch.empty_like(probs).exponential_(generator=self.generator).clamp_min_(1e-20)
        return (probs / race).argmax(dim=-1)


def filter_logits(logits: torch.Tensor, top_k: int = 0, top_p: float = 1.0, min_p: float = 0.0):
    """Set to -inf every logit outside the top-k, outside the top-p nucleus, or below min_p * max prob."""
    if top_k and top_k < logits.shape[-1]:
        kth = torch.topk(logits, top_k, dim=-1).values[..., -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p < 1.0:
        # Rank only the logits that can still survive: after a top-k cut that is a handful, not the whole
        # vocabulary (a full sort of Qwen3's 151,936 ids a token would cost more than a small model's step on a
        # CPU). Counting them makes the host wait for an accelerator, which a GPU loop must not: there, rank all.
        survivors = logits.shape[-1] if logits.device.type != "cpu" else int(torch.isfinite(logits).sum(dim=-1).max())
        sorted_logits, order = torch.topk(logits, max(survivors, 1), dim=-1)
        probs = torch.softmax(sorted_logits, dim=-1)
        # keep a token while the tokens ranked above it cover less than top_p (the best one always stays)
        keep_sorted = (probs.cumsum(dim=-1) - probs) < top_p
        keep = torch.zeros_like(logits, dtype=torch.bool).scatter(-1, order, keep_sorted)
        logits = logits.masked_fill(~keep, float("-inf"))
    if min_p > 0:
        probs = torch.softmax(logits, dim=-1)
        logits = logits.masked_fill(probs < min_p * probs.max(dim=-1, keepdim=True).values, float("-inf"))
    return logits
