"""Resumable training checkpoints: ``out_dir/ckpt/step-N`` plus a ``latest`` pointer.

(The model alone, in the Hugging Face layout, is ``qwen3mini/checkpoint.py``'s job.) A checkpoint holds
what a killed run needs to continue to the same losses: ``state.pt`` (model, optimizer and the trainer's
own state; full tensors, gathered from FSDP shards) and ``rank-R.pt`` per process (its RNG states and data
positions). It is written into a temporary folder first; the rename and the ``latest`` pointer make it
visible at once, so a kill at any moment leaves the previous checkpoint intact.
"""
import os
import random
import shutil

import numpy as np
import torch

from .distributed import DistInfo, barrier, unwrap

LATEST = "latest"


def save_checkpoint(root: str, step: int, model, optimizer, info: DistInfo, state: dict, rank_state: dict):
    """Write checkpoint ``step`` under ``root``: ``state`` (rank 0) and ``rank_state`` of every rank, beside
    the model and optimizer; then point ``latest`` at it and remove the older ones. Collective."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_state_dict
    final = os.path.join(root, f"step-{step:07d}")
    tmp = final + ".tmp"
    if info.is_main:
        shutil.rmtree(tmp, ignore_errors=True)
        os.makedirs(tmp)
    barrier()
    model_state, optim_state = get_state_dict(
        model, optimizer, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
    torch.save({"rng": _rng_state(), **rank_state}, os.path.join(tmp, f"rank-{info.rank}.pt"))
    if info.is_main:
        torch.save({"model": model_state, "optimizer": optim_state, "step": step, "world_size": info.world_size,
                    **state}, os.path.join(tmp, "state.pt"))
    barrier()
    if info.is_main:
        if os.path.exists(final):               # a run started over reaches a step saved before: swap it
            shutil.rmtree(final + ".old", ignore_errors=True)
            os.replace(final, final + ".old")
        os.replace(tmp, final)
        write_atomic(os.path.join(root, LATEST), os.path.basename(final))
        for old in os.listdir(root):            # keep only the newest checkpoint
            if old.startswith("step-") and old != os.path.basename(final):
                shutil.rmtree(os.path.join(root, old), ignore_errors=True)
    barrier()


def load_checkpoint(root: str, model, optimizer, info: DistInfo):
    """Restore the model, optimizer and RNG states of the newest checkpoint under ``root``.

    Returns (folder, state, rank_state) as ``save_checkpoint`` was given them, or None without a checkpoint.
    Raises ValueError with one line naming the file at fault when the checkpoint cannot be used.
    """
    from torch.distributed.checkpoint.state_dict import StateDictOptions, set_state_dict
    pointer = os.path.join(root, LATEST)
    if not os.path.exists(pointer):
        return None
    start_over = f"remove {root} or pass --resume false to start over"
    with open(pointer) as f:
        folder = os.path.join(root, f.read().strip())
    if not os.path.isdir(folder):
        raise ValueError(f"{pointer} names {folder}, which does not exist; {start_over}")
    state = _load(os.path.join(folder, "state.pt"), start_over)
    if state.get("world_size") != info.world_size:
        raise ValueError(f"{folder}: saved with {state.get('world_size')} processes, resuming with "
                         f"{info.world_size}; the data positions would not line up")
    _check_shapes(folder, state["model"], unwrap(model), start_over)
    set_state_dict(model, optimizer, model_state_dict=state["model"], optim_state_dict=state["optimizer"],
                   options=StateDictOptions(full_state_dict=True))
    rank_state = _load(os.path.join(folder, f"rank-{info.rank}.pt"), start_over)
    _set_rng_state(rank_state.pop("rng"))
    return folder, state, rank_state


def _load(path: str, start_over: str) -> dict:
    if not os.path.isfile(path):
        raise ValueError(f"{path} is missing; {start_over}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as error:                  # truncated or not a torch file: the loaders raise many kinds
        raise ValueError(f"{path} is not a readable checkpoint file ({type(error).__name__}); {start_over}")
    if not isinstance(state, dict) or ("rng" not in state and "model" not in state):
        raise ValueError(f"{path} is not a checkpoint file of this trainer; {start_over}")
    return state


def _check_shapes(folder: str, saved: dict, model, start_over: str):
    """The saved model must be the one being trained: same parameter names and shapes."""
    current = {name: tuple(t.shape) for name, t in model.state_dict().items()}
    shapes = {name: tuple(t.shape) for name, t in saved.items()}
    if shapes == current:
        return
    differs = sorted(set(shapes) ^ set(current)) or sorted(n for n in current if shapes[n] != current[n])
    name = differs[0]
    raise ValueError(f"{folder} holds a different model than the settings describe ({name}: saved "
                     f"{shapes.get(name, 'absent')}, now {current.get(name, 'absent')}); use another --out_dir "
                     f"or {start_over}")


def write_atomic(path: str, text: str):
    """Replace ``path`` by ``text`` through a temporary file: a kill leaves the old or the new content."""
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _rng_state() -> dict:
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict):
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
