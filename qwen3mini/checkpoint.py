"""Checkpoint I/O in the Hugging Face layout (docs/qwen3.md §1.1).

A checkpoint directory holds ``config.json`` and either one ``model.safetensors`` or several shards listed in
``model.safetensors.index.json`` (``weight_map``: tensor name -> shard file).

Loading builds the model on the ``meta`` device (shapes only, no memory), then materialises each parameter
exactly once, copied out of safetensors' memory map already in the target dtype and on the target device, one
tensor at a time, so peak memory stays near one copy of the weights.

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
from safetensors.torch import save_file

from .config import Qwen3Config
from .model import Qwen3ForCausalLM
from .quantize import check_quantize, quantize_model

SINGLE_FILE = "model.safetensors"
INDEX_FILE = "model.safetensors.index.json"
_QKV = re.compile(r"^(.*\.self_attn)\.qkv_proj\.weight$")
_GATE_UP = re.compile(r"^(.*\.mlp)\.gate_up_proj\.weight$")
_EXPERTS = re.compile(r"^(.*\.mlp\.experts)\.(gate_up_proj|down_proj)$")


# ---------------------------------------------------------------------------------------------- locating files
# The model infer/chat.py and infer/generate.py load by default: the chat model that post-training
# (train/run_posttrain.sh) makes from the base model beside it, checkpoints/qwen3mini-base.
SHIPPED_CHECKPOINT = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "checkpoints",
                                  "qwen3mini-chat")


def resolve_checkpoint(path) -> str:
    """A local directory, or a hub repo id (``Qwen/Qwen3-0.6B``) fetched with ``huggingface_hub``. A name
    whose first part is a local directory (``checkpoints/qwen3mini-bse``) is a mistyped path, not a repo id."""
    path = os.fspath(path)
    if os.path.isdir(path):
        return path
    if os.path.exists(path):
        raise NotADirectoryError(f"{path} is a file; pass the checkpoint directory that holds config.json")
    if os.path.abspath(path) == SHIPPED_CHECKPOINT:
        raise FileNotFoundError(f"no model at {path}: the shipped model is written there by the training "
                                "scripts (train/). Pass a Hugging Face-layout directory (config.json, "
                                "*.safetensors, tokenizer.json) or a hub id such as Qwen/Qwen3-0.6B")
    parent = os.path.dirname(path)
    if not re.fullmatch(r"[\w.\-]+/[\w.\-]+", path) or os.path.isdir(parent):
        raise FileNotFoundError(f"checkpoint directory {path} does not exist (no such directory"
                                f"{_siblings(parent)})")
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


def _siblings(parent: str) -> str:
    """", PARENT holds: a, b" when the parent directory exists: the name the user probably meant is there."""
    if not parent or not os.path.isdir(parent):
        return ""
    names = sorted(name for name in os.listdir(parent) if os.path.isdir(os.path.join(parent, name)))
    return f"; {parent}/ holds: {_some(names)}" if names else f"; {parent}/ is empty"


def read_generation_config(directory: str) -> dict:
    """The checkpoint's ``generation_config.json`` ({} when there is none); an error names a broken file."""
    path = os.path.join(directory, "generation_config.json")
    if not os.path.isfile(path):
        return {}
    try:
        with open(path, encoding="utf-8") as f:
            config = json.load(f)
    except (ValueError, OSError) as error:
        raise ValueError(f"{path} is not valid JSON ({error})") from None
    if not isinstance(config, dict):
        raise ValueError(f"{path} must hold a JSON object")
    return config


def tensor_files(directory: str) -> dict:
    """Map every tensor name on disk to the shard file that holds it."""
    index_path = os.path.join(directory, INDEX_FILE)
    single_path = os.path.join(directory, SINGLE_FILE)
    if os.path.isfile(index_path):
        try:
            with open(index_path) as f:
                weight_map = json.load(f).get("weight_map")
        except (ValueError, AttributeError) as error:
            raise ValueError(f"{index_path} is not a JSON object with a weight_map ({error})") from None
        if not weight_map:
            raise ValueError(f"{index_path} has no weight_map")
        for shard in sorted(set(weight_map.values())):
            if not os.path.isfile(os.path.join(directory, shard)):
                raise FileNotFoundError(f"missing shard {os.path.join(directory, shard)} listed in {index_path}")
        return {name: os.path.join(directory, shard) for name, shard in weight_map.items()}
    if os.path.isfile(single_path):
        return {name: single_path for name in read_header(single_path)[1]}
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
    if model.config.tie_word_embeddings:             # tied: a stored lm_head copy is redundant (docs/qwen3.md §1.1)
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
def read_header(path: str):
    """(offset of the data section, {tensor name: entry}) of a safetensors file; an error names a file that
    is not one or that is shorter than its header says."""
    file_size = os.path.getsize(path)
    with open(path, "rb") as f:
        size = int.from_bytes(f.read(8), "little")
        try:
            if not 2 <= size <= file_size - 8:
                raise ValueError(f"header size {size}")
            header = json.loads(f.read(size))
            header.pop("__metadata__", None)
            end = max((entry["data_offsets"][1] for entry in header.values()), default=0)
        except (ValueError, TypeError, KeyError, IndexError, AttributeError) as error:
            raise ValueError(f"{path} is not a readable safetensors file ({error})") from None
    if 8 + size + end > file_size:
        raise ValueError(f"{path} is truncated: {file_size} bytes, its header describes {8 + size + end}")
    return 8 + size, header


class _Shards:
    """Read tensors from safetensors files straight into the parameters' memory.

    A safetensors file is an 8-byte little-endian header size, a JSON header (per tensor: dtype, shape, byte
    range in the data section) and the data. A tensor in the parameter's dtype is read with plain file reads
    into the parameter itself; one that must be converted, or moved to a GPU, passes through a small scratch
    buffer a slab at a time. So loading holds the weights and nothing else: no whole-tensor temporaries, whose
    freed holes the C allocator keeps. Using the file's memory map itself as the parameter, as safetensors
    offers, copies nothing, but CPU decode from those page-cache pages ran slower than from process memory
    (bench/RESULTS.md, "cpu kernels")."""

    SLAB_BYTES = 16 << 20

    def __init__(self, files: dict):
        self.files, self.headers, self.scratch = files, {}, None

    def read_into(self, key: str, out: torch.Tensor):
        """Fill the contiguous tensor ``out`` with tensor ``key``, checked to have ``out``'s shape."""
        path = self.files[key]
        if path not in self.headers:
            self.headers[path] = read_header(path)
        data_start, header = self.headers[path]
        if key not in header:
            raise KeyError(f"{path} does not hold tensor {key} (its index says it does)")
        entry = header[key]
        if tuple(entry["shape"]) != tuple(out.shape):
            raise ValueError(f"{path}: tensor {key} has shape {tuple(entry['shape'])}, the config "
                             f"expects {tuple(out.shape)}")
        if entry["dtype"] not in _FILE_DTYPES:
            raise ValueError(f"{path}: tensor {key} has dtype {entry['dtype']}; supported: {list(_FILE_DTYPES)}")
        stored = _FILE_DTYPES[entry["dtype"]]
        begin, end = entry["data_offsets"]
        size = stored.itemsize
        if end - begin != out.numel() * size:
            raise ValueError(f"{path}: tensor {key} spans {end - begin} bytes, its shape and dtype need "
                             f"{out.numel() * size}")
        flat = out.view(-1)
        direct = out.dtype == stored and out.is_cpu
        slab = len(flat) if direct else self.SLAB_BYTES // size
        with open(path, "rb", buffering=0) as f:
            f.seek(data_start + begin)
            for first in range(0, len(flat), slab):
                target = flat[first:first + slab]
                if direct:
                    self._fill(f, target, path, key)
                else:
                    if self.scratch is None:
                        self.scratch = torch.empty(self.SLAB_BYTES, dtype=torch.uint8)
                    staged = self.scratch[:target.numel() * size].view(stored)
                    self._fill(f, staged, path, key)
                    target.copy_(staged)

    @staticmethod
    def _fill(f, target: torch.Tensor, path: str, key: str):
        raw = memoryview(target.view(torch.uint8).numpy())
        done = 0
        while done < len(raw):                         # one read() returns at most ~2 GB on Linux
            count = f.readinto(raw[done:done + (1 << 30)])
            if not count:
                raise ValueError(f"{path} is truncated: it ends inside tensor {key}")
            done += count


_FILE_DTYPES = {"F32": torch.float32, "BF16": torch.bfloat16, "F16": torch.float16}


def _materialise(shards, parts, shape, dtype, device) -> torch.Tensor:
    """A parameter of ``shape``: one checkpoint tensor, or several stacked by rows (``_parts``)."""
    out = torch.empty(shape, dtype=dtype, device=device)
    if len(parts) == 1 and parts[0][1] is None:
        shards.read_into(parts[0][0], out)
        return out
    rows_of_out, row = out.view(-1, shape[-1]), 0
    for key, rows in parts:
        shards.read_into(key, rows_of_out[row:row + rows])
        row += rows
    return out


def load_model(path, device="cpu", dtype=None, quantize=None) -> Qwen3ForCausalLM:
    """Load an HF-layout Qwen3 / Qwen3-MoE checkpoint (directory or hub repo id).

    ``dtype`` defaults to the checkpoint's ``torch_dtype``. Parameters are created once, in ``dtype`` on
    ``device``; the result is in eval mode with gradients enabled on the parameters (for fine-tuning).
    ``quantize="int8"``: the projections and the head as int8 weights for inference (``qwen3mini/quantize.py``)."""
    check_quantize(quantize)
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
    if quantize is not None:
        quantize_model(model, quantize)
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

    # Nothing of the previous save goes before the new one is complete: every file is written under a temporary
    # name first, then renamed; the index last (loaders prefer it to the single file); stale files after that.
    old_files = _weight_files(directory)
    names = [SINGLE_FILE] if len(shards) == 1 else \
        [f"model-{i + 1:05d}-of-{len(shards):05d}.safetensors" for i in range(len(shards))]
    for shard, name in zip(shards, names):
        save_file({k: v.contiguous() for k, v in shard.items()}, os.path.join(directory, name + ".tmp"),
                  metadata={"format": "pt"})
    for name in names:
        os.replace(os.path.join(directory, name + ".tmp"), os.path.join(directory, name))
    if len(shards) > 1:
        weight_map = {key: name for shard, name in zip(shards, names) for key in shard}
        total = sum(t.numel() * t.element_size() for t in state.values())
        with open(os.path.join(directory, INDEX_FILE + ".tmp"), "w") as f:
            json.dump({"metadata": {"total_size": total}, "weight_map": weight_map}, f, indent=2)
        os.replace(os.path.join(directory, INDEX_FILE + ".tmp"), os.path.join(directory, INDEX_FILE))
    for stale in old_files - set(names) - ({INDEX_FILE} if len(shards) > 1 else set()):
        os.remove(os.path.join(directory, stale))


def _weight_files(directory: str) -> set:
    """The weight files of a previous save in ``directory``: the single file, the index and its shards."""
    files = {name for name in (SINGLE_FILE, INDEX_FILE) if os.path.isfile(os.path.join(directory, name))}
    if INDEX_FILE in files:
        try:
            with open(os.path.join(directory, INDEX_FILE)) as f:
                files |= {shard for shard in json.load(f).get("weight_map", {}).values()
                          if os.path.isfile(os.path.join(directory, shard))}
        except (ValueError, AttributeError):     # a broken index: replaced, its shards left alone
            pass
    return files
