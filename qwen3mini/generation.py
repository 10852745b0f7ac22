"""Inference core: a pre-allocated KV cache, sampling, batched generation and a token stream for the chat.

    done = generate_completions(model, prompt_id_lists, [256, 64], SamplingParams(temperature=0.6, seed=0),
                                stop_token_ids=[151645], thinking_budget=ThinkingBudget(...))
    done[0].tokens, done[0].finish_reason                                  # one Completion per prompt
    out = model.generate(input_ids, max_new_tokens=32)                     # greedy, LongTensor [B, T+32]
    gen = Generator(model, max_seq_len=4096)                               # the chat keeps one of these
    gen.append(prompt_ids)                                                 # prefill (extends the cache)
    for token in gen.stream(512, SamplingParams(temperature=0.6), stop_token_ids=[151645]):
        ...                                                                # each token is already in the cache

Every batch of prompts goes through one loop, ``generate_completions`` (``generate`` and ``model.generate`` wrap
it). The chat's ``Generator`` streams one conversation through the same decode step (``fast_decode_step``) and
``Sampler``, and differs only in putting each token into the cache before handing it out, as a conversation's
history needs. Sampling follows the order of Hugging Face's logits processors: presence penalty, temperature,
top-k, top-p, min-p (settings: docs/qwen3.md §2.4). ``temperature == 0`` is greedy (argmax, first index on ties).
"""
from dataclasses import dataclass

import torch

from . import ops
from .cuda_graphs import GraphedDecodeStep, fast_decode_step


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
        check_context(model.config, max_seq_len, "KV cache max_seq_len =")
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
    """Refuse ``length`` positions beyond the model's context; ``what`` names them ("sequence length")."""
    if length > config.max_position_embeddings:
        raise ValueError(f"{what} {length} exceeds the model's context of {config.max_position_embeddings} "
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
        tokens = self.pick(logits)
        self.observe(tokens)
        return tokens

    def pick(self, logits: torch.Tensor) -> torch.Tensor:
        """The next token of every row, from its logits [B, V]."""
        p = self.params
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
        # vocabulary (a full sort of Qwen3's 151,936 ids a token would cost more than a small model's step).
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


# ---------------------------------------------------------------------------------------------- batch generation
@dataclass
class ThinkingBudget:
    """A cap on a think block (paper §4.3): once a row has sampled ``max_tokens`` tokens after ``start_id``
    without ``end_id``, its next tokens are ``stop_ids``, forced in place of sampling (e.g. the paper's stop
    text, which ends with ``end_id``). A block opened in the prompt counts from the first generated token."""
    start_id: int
    end_id: int
    max_tokens: int
    stop_ids: list[int]

    def __post_init__(self):
        if self.max_tokens < 0 or not self.stop_ids:
            raise ValueError(f"ThinkingBudget needs max_tokens >= 0 and at least one stop id, got {self}")


@dataclass
class Completion:
    tokens: list[int]              # everything after the prompt: sampled + forced tokens, the stop token included
    generated_tokens: int          # tokens the model sampled (forced ones not counted)
    finish_reason: str             # "stop" (a stop id was produced) or "length" (its max_new_tokens ran out)
    forced_at: int | None = None   # index in `tokens` where the forced stop_ids begin; None if the budget never hit


def _one_per_row(value, rows: int, what: str) -> list:
    """``value`` for every row, or ``value`` itself when it is a list of one entry per row."""
    if not isinstance(value, (list, tuple)):
        return [value] * rows
    if len(value) != rows:
        raise ValueError(f"{what}: {len(value)} entries for {rows} prompts (give one value, or one per prompt)")
    return list(value)


class _Rows:
    """Where each row of a batch stands, on the device (read by the host only every few steps): its tokens so
    far, how many it may still sample, whether it stopped, and its think block against its budget."""

    def __init__(self, prompts, budgets, stops, thinking, steps: int, device):
        rows, long = len(prompts), dict(dtype=torch.long, device=device)
        self.tokens = torch.zeros(rows, steps, **long)
        self.count = torch.zeros(rows, **long)                      # tokens so far (sampled + forced)
        self.left = torch.tensor(budgets, **long)                   # tokens each row may still sample
        self.stop_ids = _padded(stops, device)                      # [rows, S], -1 = none
        self.stopped = torch.zeros(rows, dtype=torch.bool, device=device)
        self.finished = torch.zeros_like(self.stopped)
        self.budgeted = any(t is not None for t in thinking)
        if not self.budgeted:
            return
        def per_row(name, none):                            # rows without a budget: ids no token equals
            return [none if t is None else getattr(t, name) for t in thinking]
        self.start_id, self.end_id, self.max_thought = (torch.tensor(per_row(name, -1), **long)
                                                        for name in ("start_id", "end_id", "max_tokens"))
        self.forced = _padded(per_row("stop_ids", []), device)              # [rows, F]
        self.forced_len = torch.tensor([len(ids) for ids in per_row("stop_ids", [])], **long)
        self.force_next = torch.full((rows,), -1, **long)    # -1: not forced yet; then the index of the next one
        self.forced_at = torch.full((rows,), -1, **long)
        self.thought = torch.zeros(rows, **long)            # tokens sampled inside the open think block
        self.thinking = torch.tensor([t is not None and _opened(p, t) for p, t in zip(prompts, thinking)],
                                     dtype=torch.bool, device=device)

    def add(self, step: int, sampled: torch.Tensor) -> torch.Tensor:
        """Record step ``step``'s token of every row (the sampled one, or the budget's forced one in its place);
        returns the tokens to feed the next decode step."""
        tokens, forced = sampled, torch.zeros_like(self.stopped)
        if self.budgeted:
            start = self.thinking & (self.thought >= self.max_thought) & (self.force_next < 0)
            self.forced_at.masked_fill_(start, step)
            self.force_next.masked_fill_(start, 0)
            forced = (self.force_next >= 0) & (self.force_next < self.forced_len)
            index = self.force_next.clamp(0, self.forced.shape[1] - 1)[:, None]
            tokens = torch.where(forced, self.forced.gather(1, index)[:, 0], sampled)
            self.force_next += forced
            opens = (tokens == self.start_id) & ~self.thinking
            closes = (tokens == self.end_id) & self.thinking
            self.thought = torch.where(opens, 0, self.thought + (self.thinking & ~closes))
            self.thinking = (self.thinking | opens) & ~closes
        active = ~self.finished
        self.tokens[:, step] = tokens
        self.count += active
        self.left -= (active & ~forced).long()
        self.stopped |= active & (tokens[:, None] == self.stop_ids).any(-1)
        self.finished |= self.stopped | (self.left == 0)
        return tokens

    def completions(self) -> list[Completion]:
        counts, stopped = self.count.tolist(), self.stopped.tolist()
        forced_at = self.forced_at.tolist() if self.budgeted else [-1] * len(counts)
        forced_len = self.forced_len.tolist() if self.budgeted else [0] * len(counts)
        out = []
        for row, n, at, k, stop in zip(self.tokens[:, :max(counts)].tolist(), counts, forced_at, forced_len, stopped):
            forced = 0 if at < 0 else min(k, n - at)
            out.append(Completion(row[:n], n - forced, "stop" if stop else "length", None if at < 0 else at))
        return out


def _padded(lists, device) -> torch.Tensor:
    """Lists of ids of unequal lengths as one LongTensor [len(lists), longest] (at least 1 wide), -1-padded."""
    table = torch.full((len(lists), max(1, max(map(len, lists)))), -1, dtype=torch.long)
    for row, ids in enumerate(lists):
        table[row, :len(ids)] = torch.tensor(ids, dtype=torch.long)
    return table.to(device)


def _opened(prompt, budget: ThinkingBudget) -> bool:
    """Does the prompt end inside a think block (a template that opens it for the model)?"""
    last = {token: i for i, token in enumerate(prompt)}
    return last.get(budget.start_id, -1) > last.get(budget.end_id, -1)


@torch.no_grad()
def generate_completions(model, prompts, max_new_tokens, sampling: SamplingParams | None = None,
                         stop_token_ids=None, thinking_budget=None, cuda_graphs: bool = True) -> list[Completion]:
    """Complete every prompt (lists of token ids, unequal lengths) in one batch; one ``Completion`` per prompt.

    max_new_tokens: the tokens a row may sample, one int >= 1 or one per prompt. sampling: None is greedy.
    stop_token_ids: ids for every row, or a list per prompt (default: the config's eos_token_id); a row ends
    after producing one. thinking_budget: a ``ThinkingBudget`` for every row, or one (or None) per prompt; its
    forced tokens do not count against max_new_tokens. cuda_graphs=False: the CUDA backend's steps run eagerly.

    One packed prefill, then every row decodes at its own position with ``fast_decode_step`` (greedy on CUDA:
    the argmax inside the graph). A finished row is *retired* on the device, not removed: its cache length is
    reset to 0 before every step, so it attends to one position instead of its history; its share of the matrix
    products stays, nearly free where decode is bound by reading the weights. (Removing rows, or admitting new
    prompts in their place, would need KV rows copied or paged.) On a GPU the host looks at the rows only every
    16 steps, to stop once all are finished, so the loop does not wait for the device in between.
    """
    prompts = [list(map(int, p)) for p in prompts]
    if not prompts or min(map(len, prompts)) == 0:
        raise ValueError("generation needs at least one prompt and every prompt needs at least one token")
    rows = len(prompts)
    budgets = _one_per_row(max_new_tokens, rows, "max_new_tokens")
    if not all(isinstance(n, int) and n >= 1 for n in budgets):
        raise ValueError(f"max_new_tokens must be an int >= 1 or one such int per prompt, got {max_new_tokens!r}")
    if stop_token_ids is None:
        stop_token_ids = model.config.eos_token_ids
    per_row = any(isinstance(s, (list, tuple)) for s in stop_token_ids)
    stops = [list(map(int, s)) for s in (stop_token_ids if per_row else [stop_token_ids] * rows)]
    if len(stops) != rows:
        raise ValueError(f"stop_token_ids: {len(stops)} lists for {rows} prompts")
    thinking = _one_per_row(thinking_budget, rows, "thinking_budget")
    room = [len(p) + n + (0 if t is None else len(t.stop_ids)) for p, n, t in zip(prompts, budgets, thinking)]
    worst = max(range(rows), key=room.__getitem__)
    forced = "" if room[worst] == len(prompts[worst]) + budgets[worst] else " + the thinking budget's stop_ids"
    check_context(model.config, room[worst], f"{'longest prompt' if len(set(budgets)) == 1 else f'prompt {worst}'} "
                                             f"({len(prompts[worst])} tokens) + max_new_tokens "
                                             f"({budgets[worst]}){forced} =")

    params = sampling or SamplingParams(temperature=0.0)
    device = model.device
    cache = KVCache.for_model(model, rows, max(room))
    sampler = Sampler(params, rows, model.config.vocab_size, device)
    state = _Rows(prompts, budgets, stops, thinking, max(n - len(p) for n, p in zip(room, prompts)), device)
    fast = fast_decode_step(model, cache) if cuda_graphs else ops.decode_step(model, cache)
    greedy_in_step = isinstance(fast, GraphedDecodeStep) and params.greedy
    check_every = 16 if device.type == "cuda" else 1
    tokens = state.add(0, sampler.pick(model.prefill(prompts, cache)))
    sampler.observe(tokens)
    for step in range(1, state.tokens.shape[1]):
        if step % check_every == 0 and bool(state.finished.all()):
            break
        cache.lengths.masked_fill_(state.finished, 0)          # retire finished rows: one position of attention
        if greedy_in_step:
            sampled = fast.greedy_step(tokens)
        else:
            sampled = sampler.pick(model.decode_step(tokens, cache) if fast is None else fast.step(tokens))
        tokens = state.add(step, sampled)
        sampler.observe(tokens)
    return state.completions()


@torch.no_grad()
def generate(model, input_ids, max_new_tokens, temperature: float = 0.0, top_k: int = 0,
             top_p: float = 1.0, min_p: float = 0.0, presence_penalty: float = 0.0, seed: int | None = None,
             stop_token_ids=None, pad_token_id: int | None = None):
    """Continue each prompt by up to ``max_new_tokens`` tokens (one int, or one per prompt).

    input_ids: LongTensor [B, T] -> LongTensor [B, T + max_new_tokens]; or a list of token lists of unequal
    lengths -> a list of lists (prompt + generated tokens, ending at the stop token if one was produced).
    stop_token_ids: a row stops after producing one of these (default: the config's eos_token_id); in the
    tensor form finished rows are padded with ``pad_token_id`` (default: the stop token that ended them).
    A wrapper of ``generate_completions``, which does the work.
    """
    as_tensor = isinstance(input_ids, torch.Tensor)
    if as_tensor and input_ids.dim() != 2:
        raise ValueError(f"input_ids must be [batch, time], got shape {tuple(input_ids.shape)}")
    prompts = input_ids.tolist() if as_tensor else [list(map(int, p)) for p in input_ids]
    params = SamplingParams(temperature, top_k, top_p, min_p, presence_penalty, seed)
    completions = generate_completions(model, prompts, max_new_tokens, params, stop_token_ids)
    if not as_tensor:
        return [prompt + c.tokens for prompt, c in zip(prompts, completions)]
    width = max(_one_per_row(max_new_tokens, len(prompts), "max_new_tokens"))
    new = [c.tokens + [c.tokens[-1] if pad_token_id is None else pad_token_id] * (width - len(c.tokens))
           for c in completions]
    return torch.cat([input_ids, torch.tensor(new, dtype=input_ids.dtype, device=input_ids.device)], dim=1)


# ---------------------------------------------------------------------------------------------- incremental use
class Generator:
    """A conversation's running state: the tokens so far, their KV cache, and the next-token logits.

    ``append`` extends the sequence (prefill), ``stream`` samples and yields tokens one by one, ``truncate``
    rolls back. The token list on the host is the source of truth: the cache and the logits are re-synchronised
    from it at every call, so an interruption (Ctrl-C) at any point leaves a consistent state, at worst with
    one token's work to redo. ``batch_size`` > 1 supports ``append`` (one list per row) but not ``stream``;
    batches are generated with ``generate_completions``.

    ``stream`` decodes through ``fast_decode_step`` (on a GPU a CUDA graph, captured at the first token and kept
    for the conversation); ``fast_decode=False`` runs ``model.decode_step`` op by op instead."""

    def __init__(self, model, max_seq_len: int | None = None, batch_size: int = 1, fast_decode: bool = True):
        self.model = model
        self.max_seq_len = max_seq_len or model.config.max_position_embeddings
        self.cache = KVCache.for_model(model, batch_size, self.max_seq_len)
        self._step = fast_decode_step(model, self.cache) if fast_decode else None
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
        if self._step is None:
            return self.model.decode_step(token, self.cache)[0]
        return self._step.step(token)[0].clone()       # a DecodeStep's output buffer is reused by the next step

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
