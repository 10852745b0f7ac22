"""qwen3mini: Qwen3 from scratch — tokenizer, dense and MoE model, kernels, training stages and chat.

Public API (kept stable):
    model = qwen3mini.load_model(path, device="cpu", dtype=torch.float32)    # quantize="int8": int8 weights
    tok = qwen3mini.load_tokenizer(path)
"""
__version__ = "0.1.0"


def load_model(path, device="cpu", dtype=None, quantize=None):
    """Load an HF-layout Qwen3 / Qwen3-MoE checkpoint directory (or hub repo id) as a ``Qwen3ForCausalLM``;
    ``quantize="int8"`` keeps its projections as int8 weights for CPU inference (``qwen3mini/quantize.py``)."""
    from .checkpoint import load_model as _load_model
    return _load_model(path, device=device, dtype=dtype, quantize=quantize)


def load_tokenizer(path):
    """Load Qwen3's byte-level BPE tokenizer from a directory (tokenizer.json, or vocab.json + merges.txt)."""
    from .tokenizer import load_tokenizer as _load_tokenizer
    return _load_tokenizer(path)
