"""CUDA-graph decode: capture the decode step once per batch-size bucket and replay it for every token.

A decode step of a small model is hundreds of tiny kernels (28 layers x ~12 ops); launched one by one from
Python, the launches, not the GPU, set the pace. ``model.decode_step(tokens, cache)`` is written to run without
host synchronisation (positions come from ``cache.lengths`` on the device, the CUDA attention and MoE kernels
size their grids from shapes only), so the whole step can be captured in a CUDA graph and replayed with one
launch. The KV cache is static (allocated once by ``generation.KVCache``), which is what makes the captured
addresses valid for every later step. The step captured is the backend's own where it offers one for that
bucket (``ops.decode_step``: on CUDA, ``ops.cuda.CudaDecodeStep``, 5 kernels a layer instead of ~12, up to 8
rows, and ``ops.cuda.CudaBatchDecodeStep``, 8 a layer, above), else ``model.decode_step``;
``GraphedDecodeStep(..., fused=False)`` or ``QWEN3MINI_FUSED_STEP=0`` capture the op path.

    graphed = GraphedDecodeStep(model, cache)     # cache: qwen3mini.generation.KVCache on the GPU
    logits = graphed.step(tokens)                 # tokens LongTensor [n] for cache rows 0..n-1 -> [n, vocab]
    tokens = graphed.greedy_step(tokens)          # the same step -> its greedy tokens [n] (argmax in the graph)

Graphs are captured per batch-size *bucket* (1, 2, 4, 8, ... capped at the cache's rows) on first use and kept;
a step over n rows replays the graph of the smallest bucket >= n, the rows past n riding along as padding.
All graphs share one memory pool. ``greedy_step`` has graphs of its own, which end in the argmax: the fused step
picks it inside its LM head kernel (``CudaDecodeStep.step(tokens, next_tokens)``), the op path captures
``logits.argmax(-1)``; greedy generation then launches no argmax or copy of the logits between two steps.

``fast_decode_step(model, cache)`` picks it on the CUDA backend; ``generation.py``, the layer above (this
module imports nothing of it), runs every generation loop over what it picks.
"""
import copy

import torch

from . import ops


def _row_view(cache, n: int):
    """The KV cache over rows 0..n-1 of ``cache`` (views: writes land in the shared storage)."""
    view = copy.copy(cache)
    view.k, view.v, view.lengths = cache.k[:, :n], cache.v[:, :n], cache.lengths[:n]
    return view


class GraphedDecodeStep:
    """Replays a captured decode step over the first n rows of a static KV cache (a ``DecodeStep``).

    A step over n rows runs the graph of bucket b >= n: rows n..b-1 of the cache are stepped too, as padding
    (token 0, their K/V written at their next free position, which the cache contract treats as garbage) and
    their lengths are restored afterwards, so they must not be full. ``fused``: capture the backend's fused
    step where it has one (default), or always ``model.decode_step``."""

    def __init__(self, model, cache, warmup_steps: int = 2, fused: bool = True):
        if not cache.k.is_cuda:
            raise ValueError("GraphedDecodeStep needs the model and its KV cache on a CUDA device")
        self.model, self.cache, self.warmup_steps, self.fused = model, cache, warmup_steps, fused
        self.pool = torch.cuda.graph_pool_handle()
        # (bucket, greedy) -> (graph, static tokens [bucket], static output [bucket, vocab] or [bucket], step owner)
        self.graphs = {}

    @property
    def max_rows(self) -> int:
        return self.cache.batch_size

    def step_function(self, view):
        """What is captured for a bucket: the backend's fused step over ``view``, else the op path."""
        fused = ops.decode_step(self.model, view) if self.fused else None
        if fused is not None:
            return fused, fused.step
        return None, lambda tokens: self.model.decode_step(tokens, view)

    def bucket(self, n: int) -> int:
        """The smallest power of two >= n, capped at the cache's row count."""
        return min(1 << (n - 1).bit_length(), self.cache.batch_size)

    @torch.no_grad()
    def _capture(self, n: int, greedy: bool):
        view = _row_view(self.cache, n)
        owner, step = self.step_function(view)
        tokens = torch.zeros(n, dtype=torch.long, device=self.cache.k.device)
        next_tokens = torch.zeros_like(tokens)

        def run():
            if not greedy:
                return step(tokens)
            if owner is not None:  # the fused step: the argmax is picked in its LM head kernel
                step(tokens, next_tokens)
            else:
                next_tokens.copy_(step(tokens).argmax(-1))
            return next_tokens

        saved = self.cache.lengths.clone()
        # Warm-up on a side stream (lazy inits, cuBLAS workspaces) as torch.cuda.graph requires. It writes K/V
        # at each row's next free position (garbage by the cache's contract) and advances the lengths, which
        # are restored below; capture itself records the kernels without running them.
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            for _ in range(self.warmup_steps):
                run()
                view.lengths.copy_(saved[:n])
        torch.cuda.current_stream().wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph, pool=self.pool):
            output = run()
        self.cache.lengths.copy_(saved)
        self.graphs[n, greedy] = (graph, tokens, output, owner)  # the owner keeps the fused step's buffers alive

    def _replay(self, tokens: torch.Tensor, greedy: bool) -> torch.Tensor:
        n = tokens.shape[0]
        if not 1 <= n <= self.cache.batch_size:
            raise ValueError(f"GraphedDecodeStep.{'greedy_step' if greedy else 'step'}: {n} tokens for a cache "
                             f"of {self.cache.batch_size} rows")
        b = self.bucket(n)
        if (b, greedy) not in self.graphs:
            self._capture(b, greedy)
        graph, static_tokens, output, _ = self.graphs[b, greedy]
        static_tokens[:n].copy_(tokens)
        padding = self.cache.lengths[n:b].clone() if b > n else None   # device copies: no host sync
        graph.replay()
        if padding is not None:
            self.cache.lengths[n:b].copy_(padding)
        return output[:n]

    def step(self, tokens: torch.Tensor) -> torch.Tensor:
        """Decode one token for each of cache rows 0..len(tokens)-1; returns their logits [n, vocab].

        The returned tensor is the graph's static output: it is overwritten by the next ``step`` of the same
        batch size (clone it to keep it). The caller guarantees no row is full, as for ``decode_step``."""
        return self._replay(tokens, greedy=False)

    def greedy_step(self, tokens: torch.Tensor) -> torch.Tensor:
        """``step(tokens).argmax(-1)``, the argmax inside the graph: the next token of each row [n] (a static
        buffer too, overwritten by the next ``greedy_step`` of the same batch size)."""
        return self._replay(tokens, greedy=True)


def fast_decode_step(model, cache):
    """The fastest decode step the backend has for ``model`` over ``cache`` (a ``DecodeStep``: ``step(tokens)
    -> logits``), or None when the op-by-op ``model.decode_step`` is all there is: on the CUDA backend the
    graph replay above (of the backend's own step where it has one), elsewhere ``ops.decode_step`` (on the C++
    backend one call a token). A small model's step is hundreds of short ops, and calling them one by one from
    Python costs more than their arithmetic."""
    if cache.k.is_cuda and ops.backend_name(cache.k) == "cuda":
        return GraphedDecodeStep(model, cache)
    return ops.decode_step(model, cache)
