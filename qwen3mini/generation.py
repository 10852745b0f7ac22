"""Inference core: a pre-allocated KV cache, sampling, batched generation and a token stream for the chat.

    out = model.generate(input_ids, max_new_tokens=32)                     # greedy, LongTensor [B, T+32]
    outs = model.generate([[1, 2, 3], [4, 5]], 32, temperature=0.7, top_p=0.8, seed=0)   # list of lists

    gen = Generator(model, max_seq_len=4096)                               # the chat keeps one of these
    gen.append(prompt_ids)                                                 # prefill (extends the cache)
    for token in gen.stream(512, SamplingParams(temperature=0.6, top_p=0.95, top_k=20), stop_token_ids=[151645]):
        ...                                                                # each token is already in the cache

Sampling follows the order of Hugging Face's logits processors: presence penalty, temperature, top-k, top-p,
min-p (recommended settings: docs/qwen3.md §2.4). ``temperature == 0`` is greedy (argmax, first index on ties).
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
    sampling reproducible (a private ``torch.Generator``); None draws from torch's global generator."""
    temperature: float = 1.0
    top_k: int = 0
    top_p: float = 1.0
    min_p: float = 0.0
    presence_penalty: float = 0.0
    seed: int | None = None

    def __post_init__(self):
        if self.temperature < 0:
            raise ValueError(f"temperature must be >= 0, got {self.temperature}")
        if self.top_k < 0:
            raise ValueError(f"top_k must be >= 0 (0 = off), got {self.top_k}")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")
        if not 0 <= self.min_p <= 1:
            raise ValueError(f"min_p must be in [0, 1], got {self.min_p}")


class KVCache:
    """Keys and values of every layer for ``batch_size`` rows of up to ``max_seq_len`` tokens.

    k, v: [layers, batch, max_seq_len, kv_heads, head_dim] in the model dtype, allocated once;
    lengths: int32 [batch] on the device, the number of valid positions per row. Keys are stored after QK-Norm
    and RoPE (docs/qwen3.md §1.3). Row b's positions >= lengths[b] hold garbage and are never read."""

    def __init__(self, config, batch_size: int, max_seq_len: int, device, dtype):
        shape = (config.num_hidden_layers, batch_size, max_seq_len, config.num_key_value_heads, config.head_dim)
        self.k = torch.zeros(shape, device=device, dtype=dtype)
        self.v = torch.zeros(shape, device=device, dtype=dtype)
        self.lengths = torch.zeros(batch_size, device=device, dtype=torch.int32)

    @classmethod
    def for_model(cls, model, batch_size: int, max_seq_len: int) -> "KVCache":
        check_context(model.config, max_seq_len, "KV cache max_seq_len")
        return cls(model.config, batch_size, max_seq_len, model.device, model.dtype)

    @property
    def batch_size(self) -> int:
        return self.k.shape[1]

    @property
    def max_seq_len(self) -> int:
        return self.k.shape[2]

    def reset(self):
        self.lengths.zero_()


def check_context(config, length: int, what: str):
    if length > config.max_position_embeddings:
        raise ValueError(f"{what} = {length} exceeds the model's context of {config.max_position_embeddings} "
                         f"tokens (max_position_embeddings in config.json)")


# ---------------------------------------------------------------------------------------------- sampling
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

    def __call__(self, logits: torch.Tensor) -> torch.Tensor:
        p = self.params
        logits = logits.float()
        if self.seen is not None:
            logits = logits - p.presence_penalty * self.seen
        if p.temperature == 0:
            tokens = logits.argmax(dim=-1)
        else:
            tokens = self._sample(filter_logits(logits / p.temperature, p.top_k, p.top_p, p.min_p))
        if self.seen is not None:
            self.seen[torch.arange(len(tokens), device=tokens.device), tokens] = True
        return tokens

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
        # vocabulary (a full sort of Qwen3's 151,936 ids costs ~9 ms a token on a 2-core CPU).
        survivors = int(torch.isfinite(logits).sum(dim=-1).max())
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


# ---------------------------------------------------------------------------------------------- decode steps
def fast_decoder(model, cache):
    """The fastest way to run ``model.decode_step`` over ``cache``: an object with ``step(tokens) -> logits``,
    or None when the op-by-op ``model.decode_step`` is all there is.

    On the CUDA backend that is a CUDA graph replay (of the backend's own step where it has one); elsewhere
    the backend's own step (``ops.decoder``), e.g. the C++ backend's single call per token."""
    if cache.k.is_cuda and ops.backend_name(cache.k) == "cuda":
        from .cuda_graphs import GraphDecoder
        return GraphDecoder(model, cache)
    return ops.decoder(model, cache)


# ---------------------------------------------------------------------------------------------- batch generation
@torch.no_grad()
def generate(model, input_ids, max_new_tokens: int, temperature: float = 0.0, top_k: int = 0,
             top_p: float = 1.0, min_p: float = 0.0, presence_penalty: float = 0.0, seed: int | None = None,
             stop_token_ids=None, pad_token_id: int | None = None):
    """Continue each prompt by up to ``max_new_tokens`` tokens.

    input_ids: LongTensor [B, T] -> LongTensor [B, T + max_new_tokens]; or a list of token lists of unequal
    lengths -> a list of lists (prompt + generated tokens, ending at the stop token if one was produced).
    stop_token_ids: a row stops after producing one of these (default: the config's eos_token_id); in the
    tensor form finished rows are padded with ``pad_token_id`` (default: the stop token that ended them).
    All prompts are prefilled in one packed pass and decoded together, each row at its own position.
    """
    as_tensor = isinstance(input_ids, torch.Tensor)
    if as_tensor:
        if input_ids.dim() != 2:
            raise ValueError(f"input_ids must be [batch, time], got shape {tuple(input_ids.shape)}")
        prompts = input_ids.tolist()
    else:
        prompts = [list(map(int, p)) for p in input_ids]
    if not prompts or min(len(p) for p in prompts) == 0:
        raise ValueError("generate needs at least one prompt and every prompt needs at least one token")
    if max_new_tokens < 1:
        raise ValueError(f"max_new_tokens must be >= 1, got {max_new_tokens}")
    longest = max(len(p) for p in prompts)
    check_context(model.config, longest + max_new_tokens,
                  f"longest prompt ({longest} tokens) + max_new_tokens ({max_new_tokens})")
    params = SamplingParams(temperature, top_k, top_p, min_p, presence_penalty, seed)
    stops = model.config.eos_token_ids if stop_token_ids is None else list(stop_token_ids)

    batch, device = len(prompts), model.device
    cache = KVCache.for_model(model, batch, longest + max_new_tokens)
    sampler = Sampler(params, batch, model.config.vocab_size, device)
    stop_tensor = torch.tensor(stops, dtype=torch.long, device=device)
    finished = torch.zeros(batch, dtype=torch.bool, device=device)
    pad = torch.full((batch,), -1 if pad_token_id is None else pad_token_id, dtype=torch.long, device=device)

    decoder = ops.decoder(model, cache)                 # the backend's own decode step, if it has one
    logits = model.prefill(prompts, cache)
    generated = []
    for step in range(max_new_tokens):
        tokens = torch.where(finished, pad, sampler(logits))
        generated.append(tokens)
        just_stopped = torch.isin(tokens, stop_tensor) & ~finished
        if pad_token_id is None:
            pad = torch.where(just_stopped, tokens, pad)
        finished |= just_stopped
        if step + 1 == max_new_tokens or bool(finished.all()):
            break
        logits = model.decode_step(tokens, cache) if decoder is None else decoder.step(tokens)
    new = torch.stack(generated, dim=1)                                  # [B, steps]
    if new.shape[1] < max_new_tokens:                                    # every row stopped early
        new = torch.cat([new, pad[:, None].expand(batch, max_new_tokens - new.shape[1])], dim=1)
    if as_tensor:
        return torch.cat([input_ids, new.to(input_ids.device)], dim=1)
    rows = []
    for prompt, row in zip(prompts, new.tolist()):
        end = next((i + 1 for i, t in enumerate(row) if t in stops), len(row))
        rows.append(prompt + row[:end])
    return rows


# ---------------------------------------------------------------------------------------------- incremental use
class Generator:
    """A conversation's running state: the tokens so far, their KV cache, and the next-token logits.

    ``append`` extends the sequence (prefill), ``stream`` samples and yields tokens one by one, ``truncate``
    rolls back. The token list on the host is the source of truth: the cache and the logits are re-synchronised
    from it at every call, so an interruption (Ctrl-C) at any point leaves a consistent state, at worst with
    one token's work to redo. ``batch_size`` > 1 supports ``append`` (one list per row) but not ``stream``;
    batches are generated with ``generate``.

    ``stream`` decodes through the backend's own decode step where there is one (``ops.decoder``: on the C++
    backend the whole step is one call) and, on a GPU whose ops run on the CUDA backend, replays a captured
    CUDA graph of the step (``cuda_graphs.GraphDecoder``; captured at the first token, kept for the
    conversation). A small model's step is hundreds of short ops, and calling them one by one from Python costs
    more than their arithmetic. ``fast_decode=False`` runs ``model.decode_step`` op by op instead.
    """

    def __init__(self, model, max_seq_len: int | None = None, batch_size: int = 1, fast_decode: bool = True):
        self.model = model
        self.max_seq_len = max_seq_len or model.config.max_position_embeddings
        self.cache = KVCache.for_model(model, batch_size, self.max_seq_len)
        self._decoder = fast_decoder(model, self.cache) if fast_decode else None
        self.reset()

    def reset(self):
        """Forget everything."""
        self.tokens = [[] for _ in range(self.cache.batch_size)]
        self._logits, self._logits_at = None, None        # logits after the first `_logits_at` tokens
        self.cache.reset()

    @property
    def length(self):
        """Tokens in the cache (a list per row when batch_size > 1)."""
        counts = [len(t) for t in self.tokens]
        return counts[0] if len(counts) == 1 else counts

    def truncate(self, n: int):
        """Roll back to the first ``n`` tokens (each row)."""
        for row in self.tokens:
            if not 0 <= n <= len(row):
                raise ValueError(f"cannot truncate to {n} tokens: the sequence has {len(row)}")
            del row[n:]
        self._sync()

    def append(self, token_ids):
        """Prefill ``token_ids`` after the cached tokens; returns the next-token logits ([V], or [B, V])."""
        single = self.cache.batch_size == 1
        per_row = [list(token_ids)] if single else [list(t) for t in token_ids]
        if len(per_row) != self.cache.batch_size:
            raise ValueError(f"append got {len(per_row)} rows for batch_size {self.cache.batch_size}")
        self._sync()
        rows = [r for r, ids in enumerate(per_row) if ids]
        if not rows:
            raise ValueError("append got no tokens")
        for r in rows:
            if len(self.tokens[r]) + len(per_row[r]) > self.max_seq_len:
                raise ValueError(f"row {r}: {len(self.tokens[r])} cached + {len(per_row[r])} new tokens exceed "
                                 f"max_seq_len={self.max_seq_len}")
        logits = self.model.prefill([per_row[r] for r in rows], self.cache, rows)
        new_logits = self._logits.clone() if self._logits is not None else torch.zeros(
            self.cache.batch_size, logits.shape[-1], dtype=logits.dtype, device=logits.device)
        new_logits[rows] = logits
        for r in rows:
            self.tokens[r].extend(per_row[r])
        self._logits, self._logits_at = new_logits, self.length
        return new_logits[0] if single else new_logits

    def stream(self, max_new_tokens: int, params: SamplingParams | None = None, stop_token_ids=()):
        """Sample up to ``max_new_tokens`` tokens, yielding each (an int) once it is in the cache.

        Stops after yielding a token of ``stop_token_ids`` (that token is in the cache too, as the chat
        template needs ``<|im_end|>`` in the history). Bad arguments raise here, not at the first ``next``."""
        if self.cache.batch_size != 1:
            raise ValueError("stream needs batch_size 1; use generate() for batches")
        if not self.tokens[0]:
            raise ValueError("stream needs a prompt: call append(token_ids) first")
        if self.length + max_new_tokens > self.max_seq_len:
            raise ValueError(f"{self.length} cached tokens + max_new_tokens={max_new_tokens} exceed "
                             f"max_seq_len={self.max_seq_len}")
        return self._stream(max_new_tokens, params or SamplingParams(), set(stop_token_ids))

    def _stream(self, max_new_tokens: int, params: SamplingParams, stops: set):
        sampler = Sampler(params, 1, self.model.config.vocab_size, self.model.device)
        logits = self._current_logits()
        for _ in range(max_new_tokens):
            token = sampler(logits[None])
            value = int(token)
            logits = self._decode(token)                               # advances cache.lengths at its end
            self.tokens[0].append(value)
            self._logits, self._logits_at = logits[None], self.length
            yield value
            if value in stops:
                return

    def _decode(self, token):
        if self._decoder is None:
            return self.model.decode_step(token, self.cache)[0]
        return self._decoder.step(token)[0].clone()    # a decoder's output buffer is reused by the next step

    # -------------------------------------------------------------- consistency after interruptions
    def _sync(self):
        """Make the cache lengths match the host token lists (undoes a half-finished step)."""
        counts = torch.tensor([len(t) for t in self.tokens], dtype=torch.int32)
        self.cache.lengths.copy_(counts)

    def _current_logits(self):
        self._sync()
        if self._logits_at != self.length:       # stale (after truncate or an interrupted step): redo one token
            last = self.tokens[0][-1]
            del self.tokens[0][-1]
            self._sync()
            self.append([last])
        return self._logits[0]
