"""Checkpoint I/O in the Hugging Face layout (spec §1.1).

A checkpoint directory holds ``config.json`` and either one ``model.safetensors`` or several shards listed in
``model.safetensors.index.json`` (``weight_map``: tensor name -> shard file).

Loading builds the model on the ``meta`` device (shapes only, no memory), then materialises each parameter
exactly once from safetensors' memory map, already in the target dtype and on the target device. When the file
dtype equals the target dtype on the CPU the parameter *is* the mapped file (copy-on-write), so peak memory
stays near one copy of the weights.

Tensor names equal the HF keys, except the MoE experts: the checkpoints store each expert separately
(``mlp.experts.{e}.gate_proj/up_proj/down_proj.weight``) and the model stacks them into
``mlp.experts.gate_up_proj`` [E, 2I, H] (gate rows first) and ``mlp.experts.down_proj`` [E, H, I], the layout
transformers 5.x uses in memory (it also accepts those fused names on disk).
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
def _expert_keys(prefix: str, kind: str, num_experts: int) -> list:
    """The per-expert checkpoint keys whose stack is the model parameter ``{prefix}.{kind}``."""
    parts = ("gate_proj", "up_proj") if kind == "gate_up_proj" else ("down_proj",)
    return [f"{prefix}.{e}.{part}.weight" for e in range(num_experts) for part in parts]


def _plan(model: Qwen3ForCausalLM, files: dict, directory: str) -> dict:
    """For each model parameter, the checkpoint key(s) it is read from; errors name what is missing or extra."""
    plan, missing = {}, []
    for name, _ in model.named_parameters():
        match = _EXPERTS.match(name)
        if match and name not in files:              # per-expert keys on disk (the released checkpoints)
            keys = _expert_keys(match.group(1), match.group(2), model.config.num_experts)
        else:                                        # one key, named like the parameter
            keys = [name]
        missing += [key for key in keys if key not in files]
        plan[name] = keys
    if missing:
        raise KeyError(f"checkpoint {directory} is missing tensor(s): {_some(missing)}")
    used = {key for keys in plan.values() for key in keys}
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

    def read(self, key: str, shape, dtype, device) -> torch.Tensor:
        path = self.files[key]
        if path not in self.handles:
            self.handles[path] = safe_open(path, framework="pt", device="cpu")
        stored = self.handles[path].get_slice(key)
        if tuple(stored.get_shape()) != tuple(shape):
            raise ValueError(f"{path}: tensor {key} has shape {tuple(stored.get_shape())}, the config "
                             f"expects {tuple(shape)}")
        if _SAFETENSORS_DTYPES.get(stored.get_dtype()) == dtype and device.type == "cpu":
            return self.handles[path].get_tensor(key)
        with safe_open(path, framework="pt", device="cpu") as private:
            return private.get_tensor(key).to(device=device, dtype=dtype)


_SAFETENSORS_DTYPES = {"F32": torch.float32, "BF16": torch.bfloat16, "F16": torch.float16}


def _materialise(shards, name, keys, shape, dtype, device) -> torch.Tensor:
    if len(keys) == 1:
        return shards.read(keys[0], shape, dtype, device)
    # Stacked experts: fill a [E, rows, cols] buffer one expert (and gate/up half) at a time.
    out = torch.empty(shape, dtype=dtype, device=device)
    parts = len(keys) // shape[0]
    rows = shape[1] // parts
    for i, key in enumerate(keys):
        e, part = divmod(i, parts)
        out[e, part * rows:(part + 1) * rows].copy_(shards.read(key, (rows, shape[2]), dtype, device))
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
        tensor = _materialise(shards, name, plan[name], param.shape, dtype, device)
        module_name, _, attr = name.rpartition(".")
        model.get_submodule(module_name)._parameters[attr] = nn.Parameter(tensor)
    model.model.rotary.to(device)                    # the one buffer, computed at construction on the CPU
    return model.eval()


# ---------------------------------------------------------------------------------------------- saving
def hf_state_dict(model: Qwen3ForCausalLM, dtype=None) -> dict:
    """The model's tensors under the released checkpoints' names (experts unstacked), on the CPU."""
    state = {}
    for name, param in model.named_parameters():
        tensor = param.detach().to("cpu", dtype or param.dtype)
        match = _EXPERTS.match(name)
        if match is None:
            state[name] = tensor
            continue
        keys = _expert_keys(match.group(1), match.group(2), tensor.shape[0])
        parts = len(keys) // tensor.shape[0]
        rows = tensor.shape[1] // parts
        for i, key in enumerate(keys):
            e, part = divmod(i, parts)
            state[key] = tensor[e, part * rows:(part + 1) * rows].clone()
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
