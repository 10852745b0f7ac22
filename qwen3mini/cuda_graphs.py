"""CUDA-graph decode: capture ``model.decode_step`` once per batch size and replay it for every token.

A decode step of a small model is hundreds of tiny kernels (28 layers x ~12 ops); launched one by one from
Python, the launches, not the GPU, set the pace. ``model.decode_step(tokens, cache)`` is written to run without
host synchronisation (positions come from ``cache.lengths`` on the device, the CUDA attention and MoE kernels
size their grids from shapes only), so the whole step can be captured in a CUDA graph and replayed with one
launch. The KV cache is static (allocated once by ``KVCache``), which is what makes the captured addresses
valid for every later step.

    decoder = GraphDecoder(model, cache)          # cache: qwen3mini.generation.KVCache on the GPU
    logits = decoder.step(tokens)                 # tokens LongTensor [n] for cache rows 0..n-1 -> [n, vocab]

    rows = generate_graphed(model, prompts, max_new_tokens=256)   # batched greedy/sampled generation

One graph per batch size ("bucket") is captured on first use and kept: a step over the first n rows of the
cache uses views of those rows, so a batch whose finished rows have been compacted to the end can keep
decoding the live rows with a smaller graph. All graphs share one memory pool.
"""
import torch

from .generation import KVCache, Sampler, SamplingParams, check_context


def _row_view(cache: KVCache, n: int) -> KVCache:
    """A KVCache over rows 0..n-1 of ``cache`` (views: writes land in the shared storage)."""
    view = object.__new__(KVCache)
    view.k, view.v, view.lengths = cache.k[:, :n], cache.v[:, :n], cache.lengths[:n]
    return view


class GraphDecoder:
    """Replays a captured ``model.decode_step`` over the first n rows of a static KV cache."""

    def __init__(self, model, cache: KVCache, warmup_steps: int = 2):
        if not cache.k.is_cuda:
            raise ValueError("GraphDecoder needs the model and its KV cache on a CUDA device")
        self.model, self.cache, self.warmup_steps = model, cache, warmup_steps
        self.pool = torch.cuda.graph_pool_handle()
        self.graphs = {}  # n -> (graph, static tokens [n], static logits [n, vocab])

    @torch.no_grad()
    def _capture(self, n: int):
        view = _row_view(self.cache, n)
        tokens = torch.zeros(n, dtype=torch.long, device=self.cache.k.device)
        saved = self.cache.lengths.clone()
        # Warm-up on a side stream (lazy inits, cuBLAS workspaces) as torch.cuda.graph requires. It writes K/V
        # at each row's next free position (garbage by the cache's contract) and advances the lengths, which
        # are restored below; capture itself records the kernels without running them.
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            for _ in range(self.warmup_steps):
                self.model.decode_step(tokens, view)
                view.lengths.copy_(saved[:n])
        torch.cuda.current_stream().wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph, pool=self.pool):
            logits = self.model.decode_step(tokens, view)
        self.cache.lengths.copy_(saved)
        self.graphs[n] = (graph, tokens, logits)

    def step(self, tokens: torch.Tensor) -> torch.Tensor:
        """Decode one token for each of cache rows 0..len(tokens)-1; returns their logits [n, vocab].

        The returned tensor is the graph's static output: it is overwritten by the next ``step`` of the same
        batch size (clone it to keep it). The caller guarantees no row is full, as for ``decode_step``."""
        n = tokens.shape[0]
        if not 1 <= n <= self.cache.batch_size:
            raise ValueError(f"GraphDecoder.step: {n} tokens for a cache of {self.cache.batch_size} rows")
        if n not in self.graphs:
            self._capture(n)
        graph, static_tokens, logits = self.graphs[n]
        static_tokens.copy_(tokens)
        graph.replay()
        return logits


@torch.no_grad()
def generate_graphed(model, prompts, max_new_tokens: int, params: SamplingParams | None = None,
                     stop_token_ids=None, check_every: int = 32):
    """Batched generation with a graph-captured decode loop; returns a list of token lists (prompt + new).

    Same semantics as ``qwen3mini.generation.generate`` on lists of prompts: all prompts are prefilled in one
    packed pass, then every row decodes at its own position; a row ends after its first stop token. To keep
    the GPU busy the host checks for finished rows only every ``check_every`` steps (finished rows keep
    decoding until then; their extra tokens are dropped)."""
    params = params or SamplingParams(temperature=0.0)
    prompts = [list(map(int, p)) for p in prompts]
    if not prompts or min(map(len, prompts)) == 0:
        raise ValueError("generate_graphed needs at least one prompt and every prompt needs at least one token")
    longest = max(map(len, prompts))
    check_context(model.config, longest + max_new_tokens, "longest prompt + max_new_tokens")
    stops = model.config.eos_token_ids if stop_token_ids is None else list(stop_token_ids)
    batch, device = len(prompts), model.device
    cache = KVCache.for_model(model, batch, longest + max_new_tokens)
    sampler = Sampler(params, batch, model.config.vocab_size, device)
    decoder = GraphDecoder(model, cache)
    stop_tensor = torch.tensor(stops, dtype=torch.long, device=device)
    finished = torch.zeros(batch, dtype=torch.bool, device=device)

    logits = model.prefill(prompts, cache)
    out = torch.empty(batch, max_new_tokens, dtype=torch.long, device=device)
    for step in range(max_new_tokens):
        tokens = sampler(logits)
        out[:, step] = tokens
        finished |= torch.isin(tokens, stop_tensor)
        if step + 1 == max_new_tokens or ((step + 1) % check_every == 0 and bool(finished.all())):
            break
        logits = decoder.step(tokens)
    rows = []
    for prompt, row in zip(prompts, out[:, :step + 1].tolist()):
        end = next((i + 1 for i, t in enumerate(row) if t in stops), len(row))
        rows.append(prompt + row[:end])
    return rows
