"""Shared by the decode-step tests (test_decoders.py on the CPU, test_decoder_cuda.py on the GPU)."""
import torch

from qwen3mini.generation import KVCache


def prefilled_cache(model, lengths, capacity, seed):
    """A KV cache on the model's device whose rows hold random prompts of the given lengths (0: empty row) and
    whose free positions are NaN, so that an unwritten or misplaced slot shows."""
    cache = KVCache.for_model(model, len(lengths), capacity)
    cache.k.fill_(float("nan"))
    cache.v.fill_(float("nan"))
    rows = [r for r, n in enumerate(lengths) if n]
    g = torch.Generator().manual_seed(seed)
    if rows:
        model.prefill([torch.randint(0, model.config.vocab_size, (lengths[r],), generator=g).tolist()
                       for r in rows], cache, rows)
    return cache
