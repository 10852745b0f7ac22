"""Checkpoint I/O in the Hugging Face layout (spec §1.1).

A checkpoint directory holds ``config.json`` and either one ``model.safetensors`` or several shards listed in
``model.safetensors.index.json`` (``weight_map``: tensor name -> shard file).

Loading builds the model on the ``meta`` device (shapes only, no memory), then materialises each parameter
exactly once from safetensors' memory map, already in the target dtype and on the target device. When the file
dtype equals the target dtype on the CPU the parameter *is* the mapped file (copy-on-write), so peak memory
stays near one copy of the weights.

Tensor names equal the HF keys, except where the model keeps several checkpoint tensors as one matrix, their
rows stacked in this order (the arithmetic is unchanged; fewer, larger matrix products run faster):
  * ``self_attn.qkv_proj.weight`` = ``q_proj``, ``k_proj``, ``v_proj`` (``.weight``);
  * ``mlp.gate_up_proj.weight`` = ``gate_proj``, ``up_proj`` (dense MLP);
  * ``mlp.experts.gate_up_proj`` [E, 2I, H] = per expert e: ``mlp.experts.{e}.gate_proj``, ``up_proj``, and
    ``mlp.experts.down_proj`` [E, H, I] = ``mlp.experts.{e}.down_proj``: the stacked layout transformers 5.x
    uses in memory.
A checkpoint may also hold the fused names themselves (transformers 5.x writes the stacked experts that way).
"""
import dataclasses
import json
import os
import re

import torch
import torch.nn as nn
from safetensors import safe_open
from safetensors.torch import save_file

from .config import Qwen3Config
from .model import Qwen3ForCausalLM

SINGLE_FILE = "model.safetensors"
INDEX_FILE = "model.safetensors.index.json"
_QKV = re.compile(r"^(.*\.self_attn)\.qkv_proj\.weight$")
_GATE_UP = re.compile(r"^(.*\.mlp)\.gate_up_proj\.weight$")
_EXPERTS = re.compile(r"^(.*\.mlp\.experts)\.(gate_up_proj|down_proj)$")


# ---------------------------------------------------------------------------------------------- locating files
def resolve_checkpoint(path) -> str:
    """A local directory, or a hub repo id (``Qwen/Qwen3-0.6B``) fetched with ``huggingface_hub``."""
    path = os.fspath(path)
    if os.path.isdir(path):
        return path
    if os.path.exists(path):
        raise NotADirectoryError(f"{path} is a file; pass the checkpoint directory that holds config.json")
    if not re.fullmatch(r"[\w.\-]+/[\w.\-]+", path):
        raise FileNotFoundError(f"checkpoint directory {path} does not exist")
    how = (f"download it with `huggingface-cli download {path} --local-dir DIR` (or from "
           f"https://huggingface.co/{path}) and pass DIR")
    try:
        from huggingface_hub import snapshot_download
    except ImportError:
        raise FileNotFoundError(f"{path} is not a local directory and huggingface_hub is not installed to "
                                f"fetch it as a repo id: `pip install huggingface_hub`, or {how}") from None
    try:
        return snapshot_download(path, allow_patterns=["*.json", "*.safetensors", "*.txt"])
    except Exception as error:
        raise FileNotFoundError(f"could not fetch repo {path} from the Hugging Face hub ({error}); {how}") from error


def tensor_files(directory: str) -> dict:
    """Map every tensor name on disk to the shard file that holds it."""
    index_path = os.path.join(directory, INDEX_FILE)
    single_path = os.path.join(directory, SINGLE_FILE)
    if os.path.isfile(index_path):
        with open(index_path) as f:
            weight_map = json.load(f).get("weight_map")
        if not weight_map:
            raise ValueError(f"{index_path} has no weight_map")
        for shard in sorted(set(weight_map.values())):
            if not os.path.isfile(os.path.join(directory, shard)):
                raise FileNotFoundError(f"missing shard {os.path.join(directory, shard)} listed in {index_path}")
        return {name: os.path.join(directory, shard) for name, shard in weight_map.items()}
    if os.path.isfile(single_path):
        with safe_open(single_path, framework="pt") as f:
            return {name: single_path for name in f.keys()}
    raise FileNotFoundError(f"no weights in {directory}: expected {SINGLE_FILE} or {INDEX_FILE} "
                            f"(safetensors; .bin checkpoints are not supported)")


# ---------------------------------------------------------------------------------------------- name mapping
def _parts(name: str, shape, config) -> list:
    """The checkpoint tensors whose rows, stacked in order, make up the model parameter ``name`` of ``shape``:
    a list of (key, number of rows of the parameter viewed as [-1, shape[-1]])."""
    if match := _QKV.match(name):
        heads = (config.num_attention_heads, config.num_key_value_heads, config.num_key_value_heads)
        return [(f"{match.group(1)}.{p}_proj.weight", n * config.head_dim) for p, n in zip("qkv", heads)]
    if match := _GATE_UP.match(name):
        return [(f"{match.group(1)}.{p}.weight", shape[0] // 2) for p in ("gate_proj", "up_proj")]
    if match := _EXPERTS.match(name):
        prefix, kind = match.groups()
        per_expert = ("gate_proj", "up_proj") if kind == "gate_up_proj" else ("down_proj",)
        rows = shape[1] // len(per_expert)
        return [(f"{prefix}.{e}.{p}.weight", rows) for e in range(shape[0]) for p in per_expert]
    return [(name, None)]


def _plan(model: Qwen3ForCausalLM, files: dict, directory: str) -> dict:
    """For each model parameter, the (checkpoint key, rows) parts it is read from (``_parts``), or the
    parameter's own name when the file holds it fused; errors name what is missing or extra."""
    plan, missing = {}, []
    for name, param in model.named_parameters():
        parts = [(name, None)] if name in files else _parts(name, param.shape, model.config)
        missing += [key for key, _ in parts if key not in files]
        plan[name] = parts
    if missing:
        raise KeyError(f"checkpoint {directory} is missing tensor(s): {_some(missing)}")
    used = {key for parts in plan.values() for key, _ in parts}
    if model.config.tie_word_embeddings:             # tied: a stored lm_head copy is redundant (spec §1.1)
        used.add("lm_head.weight")
    unexpected = sorted(set(files) - used)
    if unexpected:
        where = sorted({os.path.basename(files[key]) for key in unexpected})
        raise KeyError(f"checkpoint {directory} has unexpected tensor(s) in {', '.join(where)}: {_some(unexpected)}")
    return plan


def _some(names: list, limit: int = 8) -> str:
    shown = ", ".join(names[:limit])
    return shown + (f" ... ({len(names)} in all)" if len(names) > limit else "")


# ---------------------------------------------------------------------------------------------- loading
class _Shards:
    """Read tensors from safetensors files through their memory maps.

    A tensor that safetensors returns is a view of the file's mapping, and mapped pages stay resident while
    anything references the mapping. So: when a tensor is already in the target dtype on the CPU, the
    parameter *is* that view of one shared mapping per file (no copy at all); when it must be converted or
    moved, it is read through a private mapping that is released as soon as the converted copy exists (so
    loading bf16 weights into fp32, or onto a GPU, never holds the whole file in memory as well)."""

    def __init__(self, files: dict):
        self.files, self.handles = files, {}

    def read(self, key: str, shape, dtype, device, shared: bool = True) -> torch.Tensor:
        """Tensor ``key``, checked to have ``shape``, in ``dtype`` on ``device``. With ``shared`` a tensor that
        needs no conversion is the view of the file's shared mapping; otherwise it is a fresh copy."""
        path = self.files[key]
        if path not in self.handles:
            self.handles[path] = safe_open(path, framework="pt", device="cpu")
        stored = self.handles[path].get_slice(key)
        if tuple(stored.get_shape()) != tuple(shape):
            raise ValueError(f"{path}: tensor {key} has shape {tuple(stored.get_shape())}, the config "
                             f"expects {tuple(shape)}")
        if shared and _SAFETENSORS_DTYPES.get(stored.get_dtype()) == dtype and device.type == "cpu":
            return self.handles[path].get_tensor(key)
        with safe_open(path, framework="pt", device="cpu") as private:
            return private.get_tensor(key).to(device=device, dtype=dtype, copy=True)


_SAFETENSORS_DTYPES = {"F32": torch.float32, "BF16": torch.bfloat16, "F16": torch.float16}


def _materialise(shards, parts, shape, dtype, device) -> torch.Tensor:
    if len(parts) == 1 and parts[0][1] is None:
        return shards.read(parts[0][0], shape, dtype, device)
    # Stacked rows: fill the parameter part by part, each read through a private mapping that is released
    # right after its copy (the shared one would keep every part's pages resident beside the stack).
    out = torch.empty(shape, dtype=dtype, device=device)
    rows_of_out, row = out.view(-1, shape[-1]), 0
    for key, rows in parts:
        rows_of_out[row:row + rows].copy_(shards.read(key, (rows, shape[-1]), dtype, device, shared=False))
        row += rows
    return out


def load_model(path, device="cpu", dtype=None) -> Qwen3ForCausalLM:
    """Load an HF-layout Qwen3 / Qwen3-MoE checkpoint (directory or hub repo id).

    ``dtype`` defaults to the checkpoint's ``torch_dtype``. Parameters are created once, in ``dtype`` on
    ``device``; the result is in eval mode with gradients enabled on the parameters (for fine-tuning)."""
    directory = resolve_checkpoint(path)
    config = Qwen3Config.load(directory)
    dtype = config.dtype if dtype is None else dtype
    device = torch.device(device)
    files = tensor_files(directory)
    with torch.device("meta"):
        model = Qwen3ForCausalLM(config)
    plan = _plan(model, files, directory)
    shards = _Shards(files)
    for name, param in list(model.named_parameters()):
        tensor = _materialise(shards, plan[name], param.shape, dtype, device)
        module_name, _, attr = name.rpartition(".")
        model.get_submodule(module_name)._parameters[attr] = nn.Parameter(tensor)
    model.model.rotary.to(device)                    # the one buffer, computed at construction on the CPU
    return model.eval()


# ---------------------------------------------------------------------------------------------- saving
def split_fused(name: str, tensor: torch.Tensor, config) -> dict:
    """A model parameter (or its gradient) under the released checkpoints' names: stacked matrices split."""
    rows_of_tensor, row, split = tensor.reshape(-1, tensor.shape[-1]), 0, {}
    for key, rows in _parts(name, tensor.shape, config):
        if rows is None:
            return {key: tensor}
        split[key] = rows_of_tensor[row:row + rows]
        row += rows
    return split


def hf_state_dict(model: Qwen3ForCausalLM, dtype=None) -> dict:
    """The model's tensors under the released checkpoints' names, on the CPU (each its own storage)."""
    state = {}
    for name, param in model.named_parameters():
        tensor = param.detach().to("cpu", dtype or param.dtype)
        parts = split_fused(name, tensor, model.config)
        state.update({key: part if part is tensor else part.clone() for key, part in parts.items()})
    return state


def save_model(model: Qwen3ForCausalLM, directory, max_shard_size: int | None = None, dtype=None,
               spelling: str = "original") -> None:
    """Write ``config.json`` and the weights in the HF layout, loadable by ``transformers.from_pretrained``.

    max_shard_size: bytes per shard; when the weights exceed it they are split into
    ``model-0000k-of-0000n.safetensors`` with ``model.safetensors.index.json``. dtype: convert on the way out
    (default: the model's). Files are written under temporary names and renamed, so saving over the checkpoint
    the model was loaded from (whose weights may be memory-mapped) is safe."""
    directory = os.fspath(directory)
    os.makedirs(directory, exist_ok=True)
    state = hf_state_dict(model, dtype)
    dtype_name = str(next(iter(state.values())).dtype).replace("torch.", "")
    config = dataclasses.replace(model.config, torch_dtype=dtype_name)
    config.save(directory, spelling=spelling)

    shards, current, size = [], {}, 0
    for key, tensor in state.items():
        nbytes = tensor.numel() * tensor.element_size()
        if current and max_shard_size is not None and size + nbytes > max_shard_size:
            shards.append(current)
            current, size = {}, 0
        current[key] = tensor
        size += nbytes
    shards.append(current)

    for stale in (SINGLE_FILE, INDEX_FILE):          # a previous save of the other layout would confuse loaders
        if os.path.exists(os.path.join(directory, stale)):
            os.remove(os.path.join(directory, stale))
    if len(shards) == 1:
        _write(shards[0], os.path.join(directory, SINGLE_FILE))
        return
    weight_map = {}
    for i, shard in enumerate(shards):
        filename = f"model-{i + 1:05d}-of-{len(shards):05d}.safetensors"
        _write(shard, os.path.join(directory, filename))
        weight_map.update({key: filename for key in shard})
    total = sum(t.numel() * t.element_size() for t in state.values())
    with open(os.path.join(directory, INDEX_FILE), "w") as f:
        json.dump({"metadata": {"total_size": total}, "weight_map": weight_map}, f, indent=2)


def _write(tensors: dict, path: str) -> None:
    temporary = path + ".tmp"
    save_file({k: v.contiguous() for k, v in tensors.items()}, temporary, metadata={"format": "pt"})
    os.replace(temporary, path)
